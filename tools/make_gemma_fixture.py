"""Make tests/fixtures/gwas_gemma: a small simulated PLINK data set and GEMMA 0.98.5's
``-lmm 1`` results on it, and its G x E scan (``-gxe`` on age with sex as covariate, ``-lmm 4``)
(``apt-get install gemma``).  Run from the repository root: ``python tools/make_gemma_fixture.py``
(``--gxe``: only the G x E output, on the data already there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mm4lmm_jax.datasets._simulate import simulate_plink

OUT = Path("tests/fixtures/gwas_gemma")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sim = simulate_plink(OUT, n=300, m=400, n_chrom=2, n_causal=3, seed=11, name="small")
    covar = pd.read_csv(sim.covar, sep="\t")
    # GEMMA's -c is the whole design: the intercept column is given explicitly
    np.savetxt(OUT / "small.gemma_covar.txt", np.column_stack([np.ones(len(covar)), covar.age, covar.sex]), fmt="%.6g")
    cmd = [
        "gemma", "-bfile", sim.prefix, "-k", sim.kinship, "-c", str(OUT / "small.gemma_covar.txt"),
        "-lmm", "1", "-maf", "0", "-miss", "1", "-r2", "1", "-o", "small", "-outdir", str(OUT / "gemma"),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    shutil.copy(OUT / "gemma" / "small.assoc.txt", OUT / "small.gemma.assoc.txt")
    shutil.rmtree(OUT / "gemma")
    gxe()
    print("written", sorted(p.name for p in OUT.iterdir()))


def gxe() -> None:
    """GEMMA's G x E scan: covariates intercept + sex, environment age (GEMMA adds the
    environment's main effect itself), Wald, LRT and score tests of marker x age."""
    covar = pd.read_csv(OUT / "small.covar.tsv", sep="\t")
    np.savetxt(OUT / "small.gemma_gxe_covar.txt", np.column_stack([np.ones(len(covar)), covar.sex]), fmt="%.6g")
    np.savetxt(OUT / "small.gemma_env.txt", covar.age.to_numpy()[:, None], fmt="%.6g")
    cmd = [
        "gemma", "-bfile", str(OUT / "small"), "-k", str(OUT / "small.cXX.txt"), "-c",
        str(OUT / "small.gemma_gxe_covar.txt"), "-gxe", str(OUT / "small.gemma_env.txt"), "-lmm", "4", "-maf", "0",
        "-miss", "1", "-r2", "1", "-o", "gxe", "-outdir", str(OUT / "gemma"),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    shutil.copy(OUT / "gemma" / "gxe.assoc.txt", OUT / "small.gemma_gxe.assoc.txt")
    shutil.rmtree(OUT / "gemma")


if __name__ == "__main__":
    gxe() if "--gxe" in sys.argv[1:] else main()
