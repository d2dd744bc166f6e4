"""Genotype readers against the PLINK 1 ``.bed`` reader on the same markers, in one run.

Usage: ``python bench/readers.py [n] [m]`` (default n = 2000, m = 20000).  Needs ``plink2`` and
``bcftools`` (Debian packages) to convert the simulated ``.bed`` to PLINK 2 ``.pgen``, BGEN 1.2
(8-bit, as UK Biobank's), VCF (bgzip) and BCF, and writes a BIMBAM copy itself.

For each format: the time of one pass over every marker in scan blocks of 2,048 (what a scan
reads), markers per second and the ratio to the ``.bed``; and the in-process ``gwas()`` scan
(float32 default, the same in-memory kinship, warm programs) against the ``.bed`` scan, with the
largest difference in log10 p (hard calls: the numbers must be equal).
"""

from __future__ import annotations

import gzip
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mm4lmm_jax as mj
from mm4lmm_jax.datasets._simulate import simulate_plink
from mm4lmm_jax.gwas import kinship_matrix, open_bgen, open_bimbam, open_pfile, open_plink, open_vcf
from mm4lmm_jax.gwas._io import as_float

BLOCK = 2048


def _convert(root: Path) -> None:
    def run(*cmd):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)

    if not (root / "sim.pgen").exists():
        run("plink2", "--bfile", "sim", "--make-pgen", "--out", "sim")
    if not (root / "sim.bgen").exists():
        run("plink2", "--bfile", "sim", "--export", "bgen-1.2", "bits=8", "--out", "sim")
    if not (root / "sim.vcf.gz").exists():
        run("plink2", "--bfile", "sim", "--export", "vcf", "bgz", "--out", "sim")
    if not (root / "sim.bcf").exists():
        run("bcftools", "view", "-Ob", "-o", "sim.bcf", "sim.vcf.gz")
    if not (root / "sim.bimbam.txt.gz").exists():
        src = open_plink(root / "sim")
        with gzip.open(root / "sim.bimbam.txt.gz", "wt", compresslevel=1) as fh:
            for start in range(0, src.m, BLOCK):
                g = as_float(src.read_counts(np.arange(src.n), start, min(start + BLOCK, src.m)))
                for j in range(g.shape[1]):
                    row = src.snps.iloc[start + j]
                    values = ",".join("NA" if np.isnan(v) else f"{v:g}" for v in g[:, j])
                    fh.write(f"{row.snp},{row.a1},{row.a2},{values}\n")


def _sources(root: Path) -> dict:
    fam = pd.read_csv(root / "sim.fam", sep=r"\s+", header=None, dtype=str)
    ids = pd.DataFrame({"FID": fam[0], "IID": fam[1]})
    return {
        ".bed": lambda: open_plink(root / "sim"),
        ".pgen": lambda: open_pfile(root / "sim"),
        "BGEN 8-bit": lambda: open_bgen(root / "sim.bgen", root / "sim.sample", ref="last"),
        "VCF.gz (GT)": lambda: open_vcf(root / "sim.vcf.gz", id_delim="_"),
        "BCF (GT)": lambda: open_vcf(root / "sim.bcf", id_delim="_"),
        "BIMBAM.gz": lambda: open_bimbam(root / "sim.bimbam.txt.gz", ids),
    }


def _read_pass(src) -> float:
    rows = np.arange(src.n)
    t0 = time.perf_counter()
    for start in range(0, src.m, BLOCK):
        src.read_counts(rows, start, min(start + BLOCK, src.m))
    return time.perf_counter() - t0


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 2000
    m = int(args[1]) if len(args) > 1 else 20000
    for tool in ("plink2", "bcftools"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (apt-get install {tool})")
    root = Path(tempfile.gettempdir()) / f"mm4lmm_bench_formats_{n}_{m}"
    if not (root / "sim.bed").exists():
        simulate_plink(root, n=n, m=m, n_chrom=10, n_causal=10, seed=2, kinship=False)
    _convert(root)
    print(f"n = {n}, m = {m}; {platform.processor() or platform.machine()}, python {platform.python_version()}")
    kin = kinship_matrix(str(root / "sim")).matrix
    pheno = pd.read_csv(root / "sim.pheno.tsv", sep="\t")[["FID", "IID", "trait1"]]
    warnings.simplefilter("ignore")

    def scan(src):
        t0 = time.perf_counter()
        res = mj.gwas(pheno, src, kinship=kin, progress=False)
        return time.perf_counter() - t0, res

    scan(open_plink(root / "sim"))  # compile (the programs serve every format: same shapes)
    rows = []
    ref = None
    for name, opener in _sources(root).items():
        t0 = time.perf_counter()
        src = opener()
        opened = time.perf_counter() - t0
        read = min(_read_pass(src) for _ in range(2))
        seconds, res = min((scan(opener()) for _ in range(2)), key=lambda r: r[0])
        if ref is None:
            ref = (read, seconds, res)
        dlog = float(np.max(np.abs(np.log10(res.p_wald) - np.log10(ref[2].p_wald))))
        rows.append((name, opened, read, m / read, read / ref[0], seconds, seconds / ref[1], dlog))
        print(f"  {name}: open {opened:.2f} s, read {read:.2f} s, scan {seconds:.2f} s", flush=True)
    print("\n| format | open | read pass | markers/s | read / .bed | gwas() scan | scan / .bed | max dlog10 p |")
    print("|---|---|---|---|---|---|---|---|")
    for name, opened, read, rate, rr, sec, sr, dlog in rows:
        print(f"| {name} | {opened:.2f} s | {read:.2f} s | {rate:,.0f} | {rr:.2f}× | {sec:.2f} s | **{sr:.2f}×** | "
              f"{dlog:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
