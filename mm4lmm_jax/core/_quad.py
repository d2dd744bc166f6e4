"""Generalised quadratic forms ``A' V(sigma2)^-1 A`` and ``log |V(sigma2)|`` (pure JAX).

Every inference quantity (log-likelihoods, information matrices, Kenward-Roger
ingredients) is a function of the variance components through two numbers' worth of
algebra: with ``A = [X | y]`` (n, p+1),

* ``M(sigma2) = A' V^-1 A`` (p+1, p+1): ``X'V^-1X``, ``X'V^-1y`` and ``y'V^-1y``;
* ``log |V(sigma2)|``.

The functions below compute ``(M, log|V|)`` for each covariance structure, cheaply where
the structure allows it.  They are smooth in ``sigma2``: :mod:`._information` and
:mod:`._kenward_roger` take their derivatives with :func:`jax.jacfwd` / :func:`jax.hessian`.

* :func:`rotated_quad` -- two components after joint diagonalisation: O(n p^2).
* :func:`henderson_quad` -- ``V = s_e R + sum_k s_k Z_k G_k Z_k'`` through the Woodbury
  identity: O(q^3 + q p^2) per evaluation once the cross-products are known.
* :func:`pushthrough_quad` -- the same ``V`` (whitened) without ``G^-1`` or ``1 / s_k``: smooth at
  zero components (derivatives at the boundary).
* :func:`dense_quad` -- any ``V = sum_k s_k V_k``: O(n^3).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import lu_factor, lu_solve, solve_triangular

from ._gls import chol_logdet


def rotated_quad(sigma2, a_rot, d, logdet_k2=0.0):
    """``(M, log|V|)`` for ``V = s1 K1 + s2 K2`` with ``T K1 T' = diag(d)``, ``T K2 T' = I``.

    ``sigma2`` (2,); ``a_rot`` (n, p+1) ``= T [X | y]``; ``d`` (n,); ``logdet_k2`` ``log|K2|``.
    """
    v = sigma2[0] * d + sigma2[1]
    m = (a_rot / v[:, None]).T @ a_rot
    return 0.5 * (m + m.T), jnp.sum(jnp.log(v)) + logdet_k2


def dense_quad(sigma2, a, covs):
    """``(M, log|V|)`` for dense ``V = sum_k sigma2[k] covs[k]``; ``a`` (n, p+1), ``covs`` (K, n, n)."""
    v = jnp.tensordot(sigma2, covs, axes=1)
    chol = jnp.linalg.cholesky(0.5 * (v + v.T))
    w = solve_triangular(chol, a, lower=True)
    return w.T @ w, chol_logdet(chol)


def henderson_quad(sigma2, ara, arz, zrz, g_inv, block, logdet_g, q_k, logdet_r, n_obs):
    """``(M, log|V|)`` for ``V = s_e R + Z G(s) Z'``, ``G(s) = blockdiag(s_k G_k)``.

    Parameters
    ----------
    sigma2 : (K,) random components first, the residual ``s_e`` last.
    ara : (p+1, p+1) ``A' R^-1 A``.  arz : (p+1, q) ``A' R^-1 Z``.  zrz : (q, q) ``Z' R^-1 Z``.
    g_inv : (q, q) block-diagonal ``G_k^-1``.  block : (q,) component index of each column.
    logdet_g : (K-1,) ``log|G_k|``.  q_k : (K-1,) block sizes.  logdet_r : ``log|R|``.
    n_obs : number of observations.

    With ``C = Z'R^-1Z + s_e G(s)^-1``: ``A'V^-1A = (A'R^-1A - A'R^-1Z C^-1 Z'R^-1A) / s_e`` and
    ``log|V| = (n - q) log s_e + log|R| + log|G(s)| + log|C|``.
    """
    s_e = sigma2[-1]
    c = zrz + g_inv * (s_e / sigma2[:-1][block])[:, None]
    chol = jnp.linalg.cholesky(0.5 * (c + c.T))
    w = solve_triangular(chol, arz.T, lower=True)
    m = (ara - w.T @ w) / s_e
    q = zrz.shape[0]
    logdet_gs = jnp.sum(logdet_g + q_k * jnp.log(sigma2[:-1]))
    logdet_v = (n_obs - q) * jnp.log(s_e) + logdet_r + logdet_gs + chol_logdet(chol)
    return 0.5 * (m + m.T), logdet_v


def pushthrough_quad(sigma2, aa, az, zz, g, n_obs, logdet_r=0.0):
    """``(M, log|V|)`` for a whitened ``V = s_e I + Z G Z'`` by the push-through Woodbury identity.

    ``aa`` (c, c) ``A'A``; ``az`` (c, q) ``A'Z``; ``zz`` (q, q) ``Z'Z``; ``g`` (q, q) ``G`` built
    from ``sigma2`` (e.g. ``blockdiag(s_k G_k)``); ``n_obs``; ``logdet_r`` ``log|R|`` of the
    whitening.  With ``C = s_e I + Z'Z G``: ``M = (A'A - A'Z G C^-1 Z'A) / s_e``,
    ``log|V| = (n - q) log s_e + log|R| + log|C|``.  No ``G^-1``, no ``1 / s_k``: smooth down to
    zero random components.  O(q^3).
    """
    s_e = sigma2[-1]
    q = zz.shape[0]
    lu = lu_factor(s_e * jnp.eye(q, dtype=zz.dtype) + zz @ g)
    m = (aa - az @ g @ lu_solve(lu, az.T)) / s_e
    logdet_c = jnp.sum(jnp.log(jnp.abs(jnp.diagonal(lu[0]))))
    return 0.5 * (m + m.T), (n_obs - q) * jnp.log(s_e) + logdet_r + logdet_c


__all__ = ["dense_quad", "henderson_quad", "pushthrough_quad", "rotated_quad"]
