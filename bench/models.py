"""Scans beyond one kinship against the one-kinship scan and GEMMA ``-gxe``, in one run.

Usage: ``python bench/models.py [n] [m]`` (default n = 2000, m = 20000).
Simulated PLINK data (``simulate_plink``), the standardised GRM ``K1`` in memory and a second
kinship ``K2 = Z Z'`` of 100 random groups (a family or environment structure).  In-process
``gwas()`` calls, programs warm (each timed after one run on the same shapes):

* ``one``: the one-kinship scan (float32 rotation, the product's default) on all m markers;
* ``two kinships``: ``kinship=[K1, K2]`` on all m markers: three variance components
  re-estimated per marker (``K2`` is factored as ``Z Z'``, so the low-rank engine
  :class:`~mm4lmm_jax.core._lowrank_scan.LowRankScan` runs: rotation by ``K1``'s eigenvectors,
  Woodbury in ``Z``, Newton on the Chebyshev interpolant);
* ``G x E``: ``gxe="age"`` with one kinship on all m, against GEMMA 0.98.5 ``-gxe -lmm 1`` on
  the same data (same kinship, covariates, environment), with the largest |delta log10 p|;
* ``KR``: ``test="kr"`` with one kinship on all m markers (the KR test inside the one-kinship
  scan's block program).

Ratios are of times on the same markers; the one-kinship scan's time includes its
eigendecomposition, as a user meets it.
"""

from __future__ import annotations

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

from mm4lmm_jax.datasets._simulate import simulate_plink
from mm4lmm_jax.gwas import gwas, kinship_matrix


def _timed(fn, repeat: int = 1):
    fn()  # warm: compilation and caches
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _gemma_gxe(root: Path, k1: np.ndarray) -> tuple[float, pd.DataFrame] | None:
    if shutil.which("gemma") is None:
        return None
    covar = pd.read_csv(root / "sim.covar.tsv", sep="\t")
    pheno = pd.read_csv(root / "sim.pheno.tsv", sep="\t")
    fam = pd.read_csv(root / "sim.fam", sep=r"\s+", header=None)
    fam[5] = pheno["trait1"].fillna(-9).to_numpy()  # GEMMA reads the phenotype from the .fam
    fam.to_csv(root / "sim.fam", sep=" ", header=False, index=False)
    np.savetxt(root / "k1.txt", k1, fmt="%.10g")
    np.savetxt(root / "gxe_covar.txt", np.column_stack([np.ones(len(covar)), covar.sex]), fmt="%.6g")
    np.savetxt(root / "env.txt", covar.age.to_numpy()[:, None], fmt="%.6g")
    cmd = ["gemma", "-bfile", "sim", "-k", "k1.txt", "-c", "gxe_covar.txt", "-gxe", "env.txt", "-lmm", "1",
           "-maf", "0", "-miss", "1", "-r2", "1", "-o", "gxe"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return time.perf_counter() - start, pd.read_csv(root / "output" / "gxe.assoc.txt", sep="\t")


def main(n: int = 2000, m: int = 20000) -> None:
    warnings.simplefilter("ignore")
    root = Path(tempfile.mkdtemp(prefix="bench_models_"))
    sim = simulate_plink(root, n=n, m=m, n_chrom=2, seed=1, kinship=False)
    k1 = kinship_matrix(sim.prefix).matrix
    groups = np.random.default_rng(0).integers(0, 100, n)
    k2 = (groups[:, None] == groups[None, :]).astype(float)

    def scan(**kw):
        return lambda: gwas(sim.pheno, sim.prefix, covariates=sim.covar, pheno_names=["trait1"], progress=False, **kw)

    rows = []
    t_one, _ = _timed(scan(kinship=k1), 2)
    rows.append(("one kinship (float32, default)", m, t_one, "1.00x"))
    t_two, two = _timed(scan(kinship=[k1, k2]), 2)
    rows.append(("two kinships (3 components, exact)", m, t_two, f"{t_two / t_one:.2f}x of one"))
    t_kr, kr = _timed(scan(kinship=k1, test="kr"))
    rows.append(("one kinship + Kenward-Roger", m, t_kr, f"{t_kr / t_one:.2f}x of one"))
    t_gxe, gxe = _timed(scan(kinship=k1, gxe="age"))
    rows.append(("G x E (age), one kinship", m, t_gxe, f"{t_gxe / t_one:.2f}x of one"))
    gemma = _gemma_gxe(root, k1)
    if gemma is not None:
        t_gemma, table = gemma
        ok = gxe.status.eq("ok").to_numpy() & table.p_wald.notna().to_numpy()
        diff = np.max(np.abs(np.log10(gxe.p_wald.to_numpy()[ok]) - np.log10(table.p_wald.to_numpy()[ok])))
        rows.append(("GEMMA -gxe -lmm 1", m, t_gemma, f"ours {t_gemma / t_gxe:.1f}x faster; max |dlog10 p| {diff:.1e}"))
    print(f"n = {n}, m = {m}; {platform.processor() or platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} cores")  # fmt: skip
    print(f"{'scan':40s} {'markers':>8s} {'time (s)':>9s} {'markers/s':>10s}  ratio")
    for name, count, t, ratio in rows:
        print(f"{name:40s} {count:8d} {t:9.2f} {count / t:10.0f}  {ratio}")
    print("status ok:", {"two": float(two.status.eq("ok").mean()), "kr": float(kr.status.eq("ok").mean()),
                         "gxe": float(gxe.status.eq("ok").mean())})  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
