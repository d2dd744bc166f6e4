"""Simulated GWAS data sets written as PLINK 1 files, for examples, tests and benchmarks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SimulatedPlink:
    """Paths of a simulated data set: ``prefix`` (.bed/.bim/.fam, phenotype in the .fam),
    ``pheno`` (``FID IID trait1 trait2``), ``covar`` (``FID IID age sex``), ``kinship``
    (GEMMA-format centred relatedness ``(g - mean)(g - mean)' / m``), and ``causal``
    (indices of the causal markers)."""

    prefix: str
    pheno: str
    covar: str
    kinship: str
    causal: np.ndarray


def simulate_plink(
    directory: str | os.PathLike,
    n: int = 500,
    m: int = 2000,
    n_chrom: int = 4,
    n_causal: int = 5,
    h2: float = 0.5,
    missing: float = 0.01,
    seed: int = 0,
    name: str = "sim",
) -> SimulatedPlink:
    """Write a data set of ``n`` individuals in families (related), ``m`` markers on
    ``n_chrom`` chromosomes (``missing`` of the genotypes missing), two traits with
    ``n_causal`` causal markers and a polygenic part (heritability about ``h2``), two
    covariates, a few missing phenotypes; plus a GEMMA-format kinship file."""
    from bed_reader import to_bed

    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_fam = max(2, n // 10)
    freq = rng.uniform(0.05, 0.5, size=m)
    founders = rng.binomial(2, freq, size=(n_fam, m)).astype(float)
    fam = rng.integers(0, n_fam, size=n)
    # relatives share half their genotypes with their family's founder
    own = rng.binomial(2, freq, size=(n, m)).astype(float)
    share = rng.random((n, m)) < 0.5
    geno = np.where(share, founders[fam], own)
    w = (geno - geno.mean(0)) / np.maximum(geno.std(0), 1e-12)
    causal = np.sort(rng.choice(m, size=n_causal, replace=False))
    poly = w @ rng.normal(0, np.sqrt(h2 / m), size=m)
    age = rng.normal(40, 10, size=n)
    sex = rng.integers(0, 2, size=n).astype(float)
    traits = []
    for k in range(2):
        effect = w[:, causal] @ rng.normal(0, 0.25, size=n_causal) if k == 0 else 0.0
        noise = rng.normal(0, np.sqrt(1 - h2), size=n)
        traits.append(1.0 + 0.02 * age + 0.3 * sex + poly * (1 if k == 0 else 0.7) + effect + noise)
    traits = np.column_stack(traits)
    traits[rng.random(traits.shape) < 0.02] = np.nan
    geno_obs = np.where(rng.random(geno.shape) < missing, np.nan, geno)

    chrom = np.repeat(np.arange(1, n_chrom + 1), int(np.ceil(m / n_chrom)))[:m]
    pos = np.concatenate([np.arange(1, (chrom == c).sum() + 1) * 1000 for c in range(1, n_chrom + 1)])
    fid = np.array([f"F{f}" for f in fam])
    iid = np.array([f"I{i + 1}" for i in range(n)])
    prefix = directory / name
    to_bed(
        str(prefix) + ".bed",
        geno_obs,
        properties={
            "fid": fid,
            "iid": iid,
            "pheno": np.nan_to_num(traits[:, 0], nan=-9),
            "chromosome": chrom.astype(str),
            "sid": np.array([f"rs{j + 1}" for j in range(m)]),
            "bp_position": pos,
            "allele_1": rng.choice(list("AC"), size=m),
            "allele_2": rng.choice(list("GT"), size=m),
        },
        num_threads=1,
    )
    pd.DataFrame({"FID": fid, "IID": iid, "trait1": traits[:, 0], "trait2": traits[:, 1]}).to_csv(
        directory / f"{name}.pheno.tsv", sep="\t", index=False, na_rep="NA"
    )
    pd.DataFrame({"FID": fid, "IID": iid, "age": np.round(age, 2), "sex": sex}).to_csv(
        directory / f"{name}.covar.tsv", sep="\t", index=False
    )
    filled = np.where(np.isnan(geno_obs), np.nanmean(geno_obs, axis=0), geno_obs)
    centred = filled - filled.mean(axis=0)
    np.savetxt(directory / f"{name}.cXX.txt", centred @ centred.T / m, fmt="%.10g", delimiter="\t")
    return SimulatedPlink(
        str(prefix),
        str(directory / f"{name}.pheno.tsv"),
        str(directory / f"{name}.covar.tsv"),
        str(directory / f"{name}.cXX.txt"),
        causal,
    )
