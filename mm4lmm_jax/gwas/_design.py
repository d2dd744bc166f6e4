"""The fixed part of a GWAS model, made scale-free before any low-precision work.

Covariates are replaced by an orthonormal basis of the space they span with the intercept
(the tests of a marker depend on that space only), traits are centred and scaled, and the
checks of rank and collinearity are made on standardised columns, so the results do not
change with an affine recoding of a covariate (a date such as 20230603, an offset of 1e9, a
scale of 1e12) or with the scale of a trait.  What the reparameterisation changes in the
reported log-likelihoods and variances is undone exactly (:class:`~.block.Units`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import InputError

#: Covariates whose variance inflation factor (after standardisation) exceeds this are an
#: error: ``R^2 > 1 - 1e-6`` with the other covariates.  PLINK 2's ``--glm`` refuses from 50 on
#: (``--vif``); we refuse only where the covariates are collinear to working precision.
MAX_VIF = 1e6


class Design(NamedTuple):
    """``x`` (n, c): the intercept then an orthonormal basis (scaled to mean square 1) of the
    centred covariates; ``names`` the covariates as given (intercept first);
    ``basis`` (n, c - 1) the same basis with unit norm; ``log_det_t`` ``log|det T|`` for
    ``x = [1, covariates] T`` (a ReML log-likelihood in the user's parameterisation is the
    one of ``x`` plus this)."""

    x: np.ndarray
    names: list[str]
    basis: np.ndarray
    log_det_t: float


def _check_finite(values: np.ndarray, names: list[str], ids, what: str) -> None:
    """:class:`InputError` naming the column and the individual of the first non-finite value."""
    for j, name in enumerate(names):
        bad = ~np.isfinite(values[:, j])
        if bad.any():
            raise InputError(
                f"{what} {name!r}: non-finite value {values[bad, j][0]} for individual "
                f"{str(ids[np.argmax(bad)])!r} (use NA for a missing value)"
            )


def covariate_design(cov: np.ndarray, names: list[str], ids, max_vif: float = MAX_VIF) -> Design:
    """The standardised design of covariates ``cov`` (n, k) observed on every row (``ids``
    name the rows in messages).  Raises :class:`InputError` naming the column for a
    non-finite value, a constant column, or columns collinear beyond ``max_vif``."""
    n, k = cov.shape
    _check_finite(cov, names, ids, "covariate")
    centre = cov.mean(axis=0) if n else np.zeros(k)
    z = cov - centre
    scale = np.sqrt(np.mean(z * z, axis=0)) if n else np.zeros(k)
    for j, name in enumerate(names):
        if not scale[j] > 1e-13 * max(abs(centre[j]), np.finfo(float).tiny):
            raise InputError(
                f"covariate {name!r} is constant over the {n} analysed individuals: it is collinear with the "
                "intercept, which is always added; remove it"
            )
    if k == 0:
        return Design(np.ones((n, 1)), ["intercept"], np.zeros((n, 0)), 0.0)
    z = z / scale
    p, sv, vt = np.linalg.svd(z, full_matrices=False)
    with np.errstate(divide="ignore"):
        vif = n * np.einsum("ij,i->j", vt**2, 1.0 / np.maximum(sv, 1e-300) ** 2)
    if not np.all(vif <= max_vif):
        worst = [names[j] for j in np.argsort(-vif) if not vif[j] <= max_vif]
        raise InputError(
            f"covariates {worst} are collinear with each other and the intercept (variance inflation factor "
            f"{float(np.max(vif)):.3g} > {max_vif:g}): remove or combine them"
        )
    x = np.column_stack([np.ones(n), math.sqrt(n) * p])
    # log|X'X| of [1, cov] = log n + 2 sum log scale + log|Z'Z|; of x: (k + 1) log n
    log_xx = math.log(n) + 2.0 * float(np.sum(np.log(scale))) + 2.0 * float(np.sum(np.log(sv)))
    return Design(x, ["intercept", *names], p, 0.5 * ((k + 1) * math.log(n) - log_xx))


class Traits(NamedTuple):
    """Standardised traits ``y`` (n, t) (mean 0, mean square 1) and each one's ``centre`` and
    ``scale`` (t,)."""

    y: np.ndarray
    centre: np.ndarray
    scale: np.ndarray


def standardised_traits(y: np.ndarray, names: list[str], ids, design: Design) -> Traits:
    """Centre and scale each column of ``y`` (n, t); :class:`InputError` for a non-finite
    value, a constant trait, or one the covariates determine exactly."""
    _check_finite(y, names, ids, "trait")
    centre = y.mean(axis=0)
    z = y - centre
    # a scale first taken by the largest deviation: no overflow for |y| near 1e308
    big = np.max(np.abs(z), axis=0) if len(y) else np.zeros(y.shape[1])
    big = np.where(big > 0, big, 1.0)
    scale = big * np.sqrt(np.mean((z / big) ** 2, axis=0))
    for j, name in enumerate(names):
        if not scale[j] > 1e-13 * max(abs(centre[j]), np.finfo(float).tiny):
            raise InputError(f"trait {name!r} is constant over its {len(y)} analysed individuals: nothing to test")
        if scale[j] >= 1e154:  # its square, the variance, would overflow
            raise InputError(
                f"trait {name!r}: values of order {scale[j]:.3g}, whose variance overflows double precision; "
                "rescale the trait (e.g. to other units)"
            )
    z = z / scale
    if design.basis.shape[1]:
        resid = z - design.basis @ (design.basis.T @ z)
        left = np.mean(resid * resid, axis=0)
        for j, name in enumerate(names):
            if left[j] < 1e-12:
                raise InputError(f"trait {name!r} is a linear function of the covariates: nothing is left to test")
    return Traits(z, centre, scale)


__all__ = [
    "Design",
    "MAX_VIF",
    "Traits",
    "covariate_design",
    "standardised_traits",
]
