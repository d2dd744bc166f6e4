"""Wald chi-square tests of linear hypotheses ``L beta = 0`` (pure JAX, batchable)."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammaincc


def chi2_sf(stat, df):
    """Upper tail of the chi-square distribution with ``df`` degrees of freedom."""
    return gammaincc(0.5 * df, 0.5 * stat)


def wald_test(beta, var_beta, contrast):
    """Wald statistic ``(L b)' (L V L')^-1 (L b)``, its df (rows of ``L``) and p-value.

    ``beta`` (p,), ``var_beta`` (p, p), ``contrast`` (r, p) of full row rank.
    Returns ``(stat, df, pval)``.
    """
    contrast = jnp.atleast_2d(contrast)
    lb = contrast @ beta
    lvl = contrast @ var_beta @ contrast.T
    stat = lb @ jnp.linalg.solve(lvl, lb)
    df = contrast.shape[0]
    return stat, df, chi2_sf(stat, df)
