"""MM4LMM's two example data sets, shipped with the package.

* :func:`load_qtl_detection_example` -- ``QTLDetectionExample``: 259 individuals, one
  phenotype, 10 markers (0/1/2), the additive kinship.
* :func:`load_variance_component_example` -- ``VarianceComponentExample``: 432 maize hybrids
  (Dent x Flint) in two trials, a trait, the two parental kinships, 20 character markers,
  and the incidence matrices mapping hybrids to their parents.
* :func:`gwas_example` -- a small simulated PLINK data set (300 related individuals, 400
  markers on 2 chromosomes, two traits, two covariates) for :func:`mm4lmm_jax.gwas`.
* :func:`~mm4lmm_jax.datasets._simulate.simulate_plink` -- simulate and write larger ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GwasExample:
    """Paths of the bundled PLINK example: ``prefix`` (.bed/.bim/.fam), ``pheno``
    (``FID IID trait1 trait2``), ``covar`` (``FID IID age sex``)."""

    prefix: str
    pheno: str
    covar: str


def gwas_example() -> GwasExample:
    """The bundled simulated PLINK data set (made by ``simulate_plink(n=300, m=400, seed=11)``;
    ``tests/fixtures/gwas_gemma`` holds GEMMA's results on it)."""
    root = resources.files(__package__).joinpath("data", "gwas")
    with resources.as_file(root) as path:
        return GwasExample(str(path / "example"), str(path / "example.pheno.tsv"), str(path / "example.covar.tsv"))


def _load(name: str):
    with resources.files(__package__).joinpath("data", name).open("rb") as fh:
        data = np.load(fh, allow_pickle=False)
        return {k: data[k] for k in data.files}


def incidence(codes, levels) -> pd.DataFrame:
    """(n, q) 0/1 incidence matrix: row ``i`` has a 1 in the column of ``codes[i]``."""
    codes = np.asarray(codes).astype(str)
    levels = [str(v) for v in levels]
    pos = {v: j for j, v in enumerate(levels)}
    missing = sorted(set(codes) - set(pos))
    if missing:
        raise ValueError(f"codes {missing[:5]} are not among the levels")
    z = np.zeros((codes.size, len(levels)))
    z[np.arange(codes.size), [pos[c] for c in codes]] = 1.0
    return pd.DataFrame(z, columns=levels)


@dataclass(frozen=True)
class QTLDetectionExample:
    """``pheno`` (259,) Series by individual; ``geno`` (259, 10) DataFrame of markers;
    ``kinship`` (259, 259) DataFrame."""

    pheno: pd.Series
    geno: pd.DataFrame
    kinship: pd.DataFrame


@dataclass(frozen=True)
class VarianceComponentExample:
    """``data`` (432 rows: Trial, CodeHybrid, CodeDent, CodeFlint, Trait);
    ``kinship_flint`` (122 x 122) and ``kinship_dent`` (116 x 116) DataFrames by line;
    ``markers`` (432, 20) character markers ("10"/"11"); ``z_flint``/``z_dent`` the
    (432, q) incidence matrices, columns in kinship order."""

    data: pd.DataFrame
    kinship_flint: pd.DataFrame
    kinship_dent: pd.DataFrame
    markers: pd.DataFrame
    z_flint: pd.DataFrame
    z_dent: pd.DataFrame


def load_qtl_detection_example() -> QTLDetectionExample:
    """MM4LMM's ``QTLDetectionExample``."""
    d = _load("qtl_detection_example.npz")
    ind = [str(s) for s in d["ind_names"]]
    return QTLDetectionExample(
        pheno=pd.Series(d["pheno"], index=ind, name="Pheno"),
        geno=pd.DataFrame(d["geno"], index=ind, columns=[str(s) for s in d["marker_names"]]),
        kinship=pd.DataFrame(d["kinship"], index=ind, columns=ind),
    )


def load_variance_component_example() -> VarianceComponentExample:
    """MM4LMM's ``VarianceComponentExample``."""
    d = _load("variance_component_example.npz")
    cols = ["Trial", "CodeHybrid", "CodeDent", "CodeFlint", "Trait"]
    data = pd.DataFrame({c: d[f"data_{c}"] for c in cols})
    data["Trial"] = data["Trial"].astype(str)
    flint = [str(s) for s in d["flint_names"]]
    dent = [str(s) for s in d["dent_names"]]
    markers = pd.DataFrame(d["markers"].astype(object), columns=[f"X{j + 1}" for j in range(d["markers"].shape[1])])
    return VarianceComponentExample(
        data=data,
        kinship_flint=pd.DataFrame(d["kinship_flint"], index=flint, columns=flint),
        kinship_dent=pd.DataFrame(d["kinship_dent"], index=dent, columns=dent),
        markers=markers,
        z_flint=incidence(data["CodeFlint"], flint),
        z_dent=incidence(data["CodeDent"], dent),
    )


from ._simulate import SimulatedPlink, simulate_plink  # noqa: E402

__all__ = [
    "GwasExample",
    "QTLDetectionExample",
    "SimulatedPlink",
    "VarianceComponentExample",
    "incidence",
    "load_qtl_detection_example",
    "gwas_example",
    "load_variance_component_example",
    "simulate_plink",
]
