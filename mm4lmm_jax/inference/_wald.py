"""Wald chi-square tests of linear hypotheses ``L beta = 0`` (pure JAX, batchable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaincc


def chi2_sf(stat, df):
    """Upper tail of the chi-square distribution with ``df`` degrees of freedom."""
    return gammaincc(0.5 * df, 0.5 * stat)


_chi2_sf_jit = jax.jit(chi2_sf)


_BLOCK = 1024


def chi2_sf_array(stat, df) -> np.ndarray:
    """:func:`chi2_sf` for NumPy arrays of any length, evaluated in padded blocks of fixed
    size so that every call reuses one compiled program."""
    stat = np.asarray(stat, dtype=float)
    flat = stat.ravel()
    dfs = np.broadcast_to(np.asarray(df, dtype=float), stat.shape).ravel()
    pad = (-flat.size) % _BLOCK
    flat = np.pad(flat, (0, pad)).reshape(-1, _BLOCK)
    dfs = np.pad(dfs, (0, pad), constant_values=1.0).reshape(-1, _BLOCK)
    out = np.concatenate([np.asarray(_chi2_sf_jit(a, b)) for a, b in zip(flat, dfs)])
    return out[: stat.size].reshape(stat.shape)


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


__all__ = [
    "chi2_sf",
    "chi2_sf_array",
    "wald_test",
]
