"""Generalised least squares pieces shared by every fitting path (pure JAX).

All functions take float64 arrays and are safe under ``jit``/``vmap``/``grad``.
Small ``p x p`` systems are solved by Cholesky; a non-positive-definite system
yields NaN, which the solver turns into a status (never an exception inside jit).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.linalg import cho_solve


class GLSFit(NamedTuple):
    """Weighted least squares with a diagonal covariance ``V = diag(1 / w)``.

    Fields
    ------
    beta : (p,) GLS estimate ``(X' W X)^-1 X' W y``.
    xwx_inv : (p, p) ``(X' W X)^-1``.
    logdet_xwx : scalar ``log |X' W X|``.
    resid : (n,) ``y - X beta``.
    py : (n,) ``W (y - X beta)``, i.e. ``P y`` for ``P = W - W X (X'WX)^-1 X' W``.
    """

    beta: jnp.ndarray
    xwx_inv: jnp.ndarray
    logdet_xwx: jnp.ndarray
    resid: jnp.ndarray
    py: jnp.ndarray


def chol_logdet(chol: jnp.ndarray) -> jnp.ndarray:
    """``log |A|`` from the lower Cholesky factor of ``A``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def sym_inverse(a: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Inverse and log-determinant of a symmetric positive-definite matrix."""
    a = 0.5 * (a + a.T)
    chol = jnp.linalg.cholesky(a)
    inv = cho_solve((chol, True), jnp.eye(a.shape[0], dtype=a.dtype))
    return 0.5 * (inv + inv.T), chol_logdet(chol)


def gls_diag(y: jnp.ndarray, x: jnp.ndarray, w: jnp.ndarray) -> GLSFit:
    """GLS with diagonal precision ``w`` (n,), design ``x`` (n, p), response ``y`` (n,)."""
    xw = x * w[:, None]
    xwx_inv, logdet = sym_inverse(x.T @ xw)
    beta = xwx_inv @ (xw.T @ y)
    resid = y - x @ beta
    return GLSFit(beta, xwx_inv, logdet, resid, w * resid)


class DenseGLS(NamedTuple):
    """GLS with a dense covariance ``V`` (n, n).

    Fields
    ------
    beta : (p,); xvx_inv : (p, p) ``(X' V^-1 X)^-1``; logdet_v, logdet_xvx : scalars;
    v_inv : (n, n); p_mat : (n, n) ``P = V^-1 - V^-1 X (X'V^-1X)^-1 X' V^-1``;
    py : (n,) ``P y = V^-1 (y - X beta)``; resid : (n,).
    """

    beta: jnp.ndarray
    xvx_inv: jnp.ndarray
    logdet_v: jnp.ndarray
    logdet_xvx: jnp.ndarray
    v_inv: jnp.ndarray
    p_mat: jnp.ndarray
    py: jnp.ndarray
    resid: jnp.ndarray


def gls_dense(y: jnp.ndarray, x: jnp.ndarray, v: jnp.ndarray) -> DenseGLS:
    """GLS with dense covariance ``v`` (n, n): the quantities every dense MM step needs."""
    v_inv, logdet_v = sym_inverse(v)
    vx = v_inv @ x
    xvx_inv, logdet_xvx = sym_inverse(x.T @ vx)
    beta = xvx_inv @ (vx.T @ y)
    resid = y - x @ beta
    py = v_inv @ resid
    p_mat = v_inv - vx @ xvx_inv @ vx.T
    return DenseGLS(beta, xvx_inv, logdet_v, logdet_xvx, v_inv, p_mat, py, resid)


def weighted_cross(ws, s, x):
    """Blocks of ``[S | X_m]' diag(w) [S | X_m]`` for per-model weights ``ws`` (O, m, n) (e.g. a
    weight and its derivatives), shared columns ``s`` (n, c) and per-model columns ``x``
    (m, n, p1): ``(S'WS (O, m, c, c), X'WS (O, m, p1, c), X'WX (O, m, p1, p1))``.  The blocks
    with shared columns are matrix products against them (no per-model copy of ``S``)."""
    orders, m, n = ws.shape
    c = s.shape[1]
    pairs = (s[:, :, None] * s[:, None, :]).reshape(n, c * c)
    ss = (ws.reshape(orders * m, n) @ pairs).reshape(orders, m, c, c)
    p1 = x.shape[2]
    wx = ws[..., None] * x[None]  # (O, m, n, p1)
    xs = (jnp.swapaxes(wx, -1, -2).reshape(orders * m * p1, n) @ s).reshape(orders, m, p1, c)
    # X'WX pair by pair: a fused product and sum (XLA's CPU batched dot is several times slower)
    cols = [[jnp.sum(wx[..., i] * x[None, :, :, j], axis=-1) for j in range(p1)] for i in range(p1)]
    xx = jnp.stack([jnp.stack(row, axis=-1) for row in cols], axis=-2) if p1 else jnp.zeros((orders, m, 0, 0), ws.dtype)
    return ss, xs, xx


__all__ = [
    "DenseGLS",
    "GLSFit",
    "chol_logdet",
    "gls_dense",
    "gls_diag",
    "sym_inverse",
    "weighted_cross",
]
