"""Make tests/fixtures/gwas_gemma: a small simulated PLINK data set and GEMMA 0.98.5's
``-lmm 1`` results on it (``apt-get install gemma``).  Run from the repository root:
``python tools/make_gemma_fixture.py``."""

from __future__ import annotations

import shutil
import subprocess
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
    print("written", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
