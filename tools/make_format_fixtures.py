"""Make ``tests/fixtures/formats/``: the bundled PLINK example converted by PLINK 2 and bcftools
to every genotype format the scan reads, a dosage VCF and its PLINK 2 import, a BIMBAM copy, and
GEMMA's scan of its own BXD BIMBAM example.

Needs ``plink2``, ``bcftools`` and ``gemma`` (Debian: ``apt-get install plink2 bcftools gemma``)
and ``../shared/data/bxd``.  Run from the repository root: ``python tools/make_format_fixtures.py``.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "formats"
EXAMPLE = ROOT / "mm4lmm_jax" / "datasets" / "data" / "gwas" / "example"
BXD = ROOT.parent / "shared" / "data" / "bxd"


def run(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def dosage_vcf(src: Path, dst: Path, markers: int, seed: int = 1) -> None:
    """The first ``markers`` records of a GT VCF with a DS field: the count plus uniform noise in
    [-0.3, 0.3], clipped to [0, 2], 3 decimals; missing GT -> missing DS."""
    rng = np.random.default_rng(seed)
    kept = 0
    with gzip.open(src, "rt") as fin, gzip.open(dst, "wt") as fout:
        for line in fin:
            if line.startswith("##FORMAT"):
                fout.write(line)
                fout.write('##FORMAT=<ID=DS,Number=A,Type=Float,Description="ALT dosage">\n')
                continue
            if line.startswith("#"):
                fout.write(line)
                continue
            if kept == markers:
                break
            f = line.rstrip("\n").split("\t")
            cells = []
            for gt in f[9:]:
                if gt.startswith("."):
                    cells.append(gt + ":.")
                else:
                    d = min(2.0, max(0.0, int(gt[0]) + int(gt[2]) + rng.uniform(-0.3, 0.3)))
                    cells.append(f"{gt}:{d:.3f}")
            f[8] = "GT:DS"
            fout.write("\t".join(f[:9] + cells) + "\n")
            kept += 1


def bimbam(prefix: Path, dst: Path) -> None:
    """A BIMBAM mean-genotype copy of a PLINK 1 file set (A1 counted, ``NA`` missing)."""
    from mm4lmm_jax.gwas import open_plink
    from mm4lmm_jax.gwas._io import as_float

    src = open_plink(prefix)
    g = as_float(src.read_counts(np.arange(src.n), 0, src.m))
    with gzip.open(dst, "wt") as fh:
        for j, row in src.snps.iterrows():
            values = ", ".join("NA" if np.isnan(v) else f"{v:g}" for v in g[:, j])
            fh.write(f"{row.snp}, {row.a1}, {row.a2}, {values}\n")
    with open(dst.with_name("ex.bimbam.anno.txt"), "w") as fh:
        for row in src.snps.itertuples():
            fh.write(f"{row.snp} {row.pos} {row.chr}\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        run("plink2", "--bfile", str(EXAMPLE), "--make-pgen", "--out", "ex", cwd=t)
        run("plink2", "--bfile", str(EXAMPLE), "--export", "vcf", "bgz", "id-paste=iid", "--out", "ex", cwd=t)
        run("plink2", "--bfile", str(EXAMPLE), "--export", "bgen-1.2", "bits=8", "--out", "ex", cwd=t)
        run("bcftools", "view", "-Ob", "-o", "ex.bcf", "ex.vcf.gz", cwd=t)
        # 60 markers at 16 bits: BGEN 1.2 (zlib: decoded by our reader) and 1.3 (zstd: by cbgen)
        (t / "first60.txt").write_text(
            "".join(line.split()[1] + "\n" for line in open(f"{EXAMPLE}.bim").readlines()[:60])
        )
        run("plink2", "--bfile", str(EXAMPLE), "--extract", "first60.txt", "--export", "bgen-1.2", "bits=16",
            "--out", "ex16", cwd=t)  # fmt: skip
        run("plink2", "--bfile", str(EXAMPLE), "--extract", "first60.txt", "--export", "bgen-1.3", "bits=16",
            "--out", "ex13", cwd=t)  # fmt: skip
        dosage_vcf(t / "ex.vcf.gz", t / "ds.vcf.gz", markers=100)
        run("plink2", "--vcf", "ds.vcf.gz", "dosage=DS", "--make-pgen", "--out", "ds", cwd=t)
        names = ["ex.pgen", "ex.pvar", "ex.psam", "ex.vcf.gz", "ex.bgen", "ex.sample", "ex.bcf", "ds.vcf.gz", "ds.pgen",
                 "ds.pvar", "ds.psam", "ex16.bgen", "ex16.sample", "ex13.bgen", "ex13.sample"]  # fmt: skip
        for name in names:
            shutil.copyfile(t / name, OUT / name)
        bimbam(EXAMPLE, OUT / "ex.bimbam.txt.gz")
        # GEMMA on its own BIMBAM example: centred kinship, then the -lmm 1 scan with sex
        run("gemma", "-g", str(BXD / "BXD_geno.txt.gz"), "-p", str(BXD / "BXD_pheno.txt"), "-gk", "1",
            "-maf", "0", "-miss", "1", "-o", "kin", "-outdir", ".", cwd=t)  # fmt: skip
        lines = (BXD / "BXD_covariates2.txt").read_text().split("\n")
        (t / "c.txt").write_text("".join(f"1\t{line.split()[0]}\n" for line in lines if line.strip()))
        run("gemma", "-g", str(BXD / "BXD_geno.txt.gz"), "-p", str(BXD / "BXD_pheno.txt"), "-a",
            str(BXD / "BXD_snps.txt"), "-k", "kin.cXX.txt", "-c", "c.txt", "-lmm", "1", "-maf", "0", "-miss", "1",
            "-r2", "1", "-o", "bb", "-outdir", ".", cwd=t)  # fmt: skip
        with open(t / "bb.assoc.txt", "rb") as fin, gzip.open(OUT / "bxd_bimbam.gemma.assoc.txt.gz", "wb") as fout:
            shutil.copyfileobj(fin, fout)
        shutil.copyfile(BXD / "BXD_geno.txt.gz", OUT / "BXD_geno.txt.gz")
        shutil.copyfile(BXD / "BXD_snps.txt", OUT / "BXD_snps.txt")


if __name__ == "__main__":
    main()
