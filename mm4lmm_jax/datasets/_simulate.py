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
    kinship: bool = True,
    block: int = 4096,
) -> SimulatedPlink:
    """Write a data set of ``n`` individuals in families (related), ``m`` markers on
    ``n_chrom`` chromosomes (``missing`` of the genotypes missing), two traits with
    ``n_causal`` causal markers and a polygenic part (heritability about ``h2``), two
    covariates, a few missing phenotypes; plus (``kinship=True``) a GEMMA-format centred
    kinship.  Markers are generated and written in blocks: memory does not grow with ``m``."""
    from bed_reader import create_bed

    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_fam = max(2, n // 10)
    fam = rng.integers(0, n_fam, size=n)
    causal = np.sort(rng.choice(m, size=min(n_causal, m), replace=False))
    causal_effect = rng.normal(0, 0.25, size=causal.size)
    chrom = np.repeat(np.arange(1, n_chrom + 1), int(np.ceil(m / n_chrom)))[:m]
    pos = np.concatenate([np.arange(1, (chrom == c).sum() + 1) * 1000 for c in range(1, n_chrom + 1)])
    fid = np.array([f"F{f}" for f in fam])
    iid = np.array([f"I{i + 1}" for i in range(n)])
    prefix = directory / name
    props = {
        "fid": fid,
        "iid": iid,
        "chromosome": chrom.astype(str),
        "sid": np.array([f"rs{j + 1}" for j in range(m)]),
        "bp_position": pos,
        "allele_1": rng.choice(list("AC"), size=m),
        "allele_2": rng.choice(list("GT"), size=m),
    }
    poly = np.zeros(n)
    effect = np.zeros(n)
    kin = np.zeros((n, n)) if kinship else None
    with create_bed(str(prefix) + ".bed", iid_count=n, sid_count=m, properties=props, num_threads=1) as bed:
        for start in range(0, m, block):
            stop = min(start + block, m)
            b = stop - start
            freq = rng.uniform(0.05, 0.5, size=b)
            founders = rng.binomial(2, freq, size=(n_fam, b)).astype(float)
            own = rng.binomial(2, freq, size=(n, b)).astype(float)
            # relatives share half their genotypes with their family's founder
            geno = np.where(rng.random((n, b)) < 0.5, founders[fam], own)
            w = (geno - geno.mean(0)) / np.maximum(geno.std(0), 1e-12)
            poly += w @ rng.normal(0, np.sqrt(h2 / m), size=b)
            in_block = (causal >= start) & (causal < stop)
            effect += w[:, causal[in_block] - start] @ causal_effect[in_block]
            observed = np.where(rng.random(geno.shape) < missing, np.nan, geno)
            if kin is not None:
                filled = np.where(np.isnan(observed), np.nanmean(observed, axis=0), observed)
                centred = filled - filled.mean(axis=0)
                kin += centred @ centred.T
            for j in range(b):
                bed.write(observed[:, j])
    age = rng.normal(40, 10, size=n)
    sex = rng.integers(0, 2, size=n).astype(float)
    base = 1.0 + 0.02 * age + 0.3 * sex
    traits = np.column_stack(
        [
            base + poly + effect + rng.normal(0, np.sqrt(1 - h2), size=n),
            base + 0.7 * poly + rng.normal(0, np.sqrt(1 - h2), size=n),
        ]
    )
    traits[rng.random(traits.shape) < 0.02] = np.nan
    pd.DataFrame({0: fid, 1: iid, 2: 0, 3: 0, 4: 0, 5: np.nan_to_num(traits[:, 0], nan=-9)}).to_csv(
        str(prefix) + ".fam", sep=" ", header=False, index=False
    )
    pd.DataFrame({"FID": fid, "IID": iid, "trait1": traits[:, 0], "trait2": traits[:, 1]}).to_csv(
        directory / f"{name}.pheno.tsv", sep="\t", index=False, na_rep="NA"
    )
    pd.DataFrame({"FID": fid, "IID": iid, "age": np.round(age, 2), "sex": sex}).to_csv(
        directory / f"{name}.covar.tsv", sep="\t", index=False
    )
    kin_path = ""
    if kin is not None:
        kin_path = str(directory / f"{name}.cXX.txt")
        np.savetxt(kin_path, kin / m, fmt="%.10g", delimiter="\t")
    return SimulatedPlink(str(prefix), str(directory / f"{name}.pheno.tsv"), str(directory / f"{name}.covar.tsv"),
                          kin_path, causal)  # fmt: skip


__all__ = [
    "SimulatedPlink",
    "simulate_plink",
]
