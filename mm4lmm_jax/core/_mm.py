"""One Min-Max (MM) update of the variance components, for each fitting path (pure JAX).

The MM update of Hunter & Lange (2004), as used by MM4LMM, is, for every component ``k``::

    sigma2_k  <-  sigma2_k * sqrt( (P y)' V_k (P y) / tr(P V_k) )      (ReML)

with ``V^-1`` in place of ``P`` in the trace for ML.  Every step function returns
``(loglik, ...)`` where ``loglik`` is the log-likelihood *at the point evaluated*, in
MM4LMM's convention (ReML without its ``2 pi`` constant), used by the solver's monotone
safeguard and stopping rule.

Paths
-----
* :func:`step_profiled_reml` -- two components, ReML, after joint diagonalisation; the
  parameter is the ratio ``delta = s1 / s2`` and ``s2`` is profiled out (MM4LMM's
  ``MM_Reml2Mat``).  Cost per step: O(n p^2).
* :func:`step_rotated_ml` -- two components, ML, after joint diagonalisation.
* :func:`step_dense` -- any number of components, ReML or ML, dense ``n x n`` algebra.
* :func:`step_henderson` -- ReML with Henderson's mixed-model equations: the loop works
  only on cross-products of size ``p + q`` (``q = sum of random-effect sizes``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from ._gls import chol_logdet, gls_dense, gls_diag
from ._likelihood import LOG_2PI

# ----------------------------------------------------------------------------- rotated


def profiled_sigma2(delta, y_rot, x_rot, d):
    """Profiled ReML quantities at ratio ``delta``.

    Returns ``(sigma2 (2,), gls, A, logdet_v)`` with ``A = y' P y`` computed for the
    unit-scale covariance ``delta * d + 1`` and ``s2 = A / (n - p)``.
    """
    v = delta * d + 1.0
    w = 1.0 / v
    g = gls_diag(y_rot, x_rot, w)
    n, p = x_rot.shape
    a = jnp.dot(g.resid, g.py)
    s2 = a / (n - p)
    return jnp.stack([delta * s2, s2]), g, a, jnp.sum(jnp.log(v))


def profiled_reml_loglik(delta, y_rot, x_rot, d):
    """MM4LMM-convention ReML log-likelihood at ``delta`` with ``s2`` profiled out."""
    sigma2, g, a, logdet_v = profiled_sigma2(delta, y_rot, x_rot, d)
    n, p = x_rot.shape
    return -0.5 * ((n - p) * jnp.log(sigma2[1]) + g.logdet_xwx + logdet_v + (n - p))


def step_profiled_reml(delta, y_rot, x_rot, d):
    """MM update of the ratio ``delta = s1 / s2`` (two components, ReML, profiled).

    Returns ``(loglik, sigma2_at_delta (2,), delta_next)``.  The update solves the
    quadratic surrogate in closed form (MM4LMM's ``MM_Reml2Mat``).
    """
    v = delta * d + 1.0
    w = 1.0 / v
    g = gls_diag(y_rot, x_rot, w)
    n, p = x_rot.shape
    a = jnp.dot(g.resid, g.py)
    b = jnp.dot(g.py * d, g.py)
    xw = x_rot * w[:, None]
    c = jnp.dot(d, w) - jnp.sum(g.xwx_inv * (xw.T @ (xw * d[:, None])))
    bc = b * c * delta**2
    ab = a - b * delta
    disc = bc**2 + 4.0 * (n - p) * ab * bc
    delta_next = (-bc + jnp.sqrt(disc)) / (2.0 * ab * c)
    s2 = a / (n - p)
    loglik = -0.5 * ((n - p) * jnp.log(s2) + g.logdet_xwx + jnp.sum(jnp.log(v)) + (n - p))
    return loglik, jnp.stack([delta * s2, s2]), delta_next


def step_rotated_ml(sigma2, y_rot, x_rot, d):
    """MM update of ``(s1, s2)`` for two components, ML, after joint diagonalisation.

    Returns ``(loglik, sigma2_next)``; ``loglik`` is the full ML log-likelihood.
    """
    v = sigma2[0] * d + sigma2[1]
    w = 1.0 / v
    g = gls_diag(y_rot, x_rot, w)
    n = y_rot.shape[0]
    loglik = -0.5 * (n * LOG_2PI + jnp.sum(jnp.log(v)) + jnp.dot(g.resid, g.py))
    num = jnp.stack([jnp.dot(g.py * d, g.py), jnp.dot(g.py, g.py)])
    tr = jnp.stack([jnp.dot(d, w), jnp.sum(w)])
    return loglik, sigma2 * jnp.sqrt(num / tr)


# ------------------------------------------------------------------------------- dense


def step_dense(sigma2, y, x, covs, method: str = "reml"):
    """MM update for ``K`` components with dense ``V = sum_k sigma2_k V_k``.

    Parameters: ``sigma2`` (K,), ``y`` (n,), ``x`` (n, p), ``covs`` (K, n, n),
    ``method`` static.  Returns ``(loglik, sigma2_next)``.
    """
    v = jnp.tensordot(sigma2, covs, axes=1)
    g = gls_dense(y, x, v)
    n = y.shape[0]
    quad = jnp.dot(g.resid, g.py)
    num = jnp.einsum("i,kij,j->k", g.py, covs, g.py)
    if method == "reml":
        loglik = -0.5 * (g.logdet_xvx + g.logdet_v + quad)
        tr = jnp.einsum("ij,kij->k", g.p_mat, covs)
    else:
        loglik = -0.5 * (n * LOG_2PI + g.logdet_v + quad)
        tr = jnp.einsum("ij,kij->k", g.v_inv, covs)
    return loglik, sigma2 * jnp.sqrt(num / tr)


# --------------------------------------------------------------------------- Henderson


class HendersonSystem(NamedTuple):
    """Cross-products for Henderson's mixed-model equations of one model.

    Random components ``k < K-1`` enter as ``Z_k u_k``, ``u_k ~ N(0, s_k G_k)``; the last
    component is the residual ``e ~ N(0, s_e R)``.  ``Z = [Z_1 .. Z_{K-1}]`` (n, q).

    Fields
    ------
    xrx (p, p), xrz (p, q), xry (p,): ``X' R^-1 [X, Z, y]``.
    zrz (q, q), zry (q,), yry (): ``Z' R^-1 Z``, ``Z' R^-1 y``, ``y' R^-1 y``.
    g_inv (q, q): block-diagonal ``G_k^-1``.  block (q,) int: component of each column.
    logdet_g (K-1,): ``log |G_k|``.  q_k (K-1,): block sizes.  logdet_r (): ``log |R|``.
    n_obs (): number of observations (float).
    """

    xrx: jnp.ndarray
    xrz: jnp.ndarray
    xry: jnp.ndarray
    zrz: jnp.ndarray
    zry: jnp.ndarray
    yry: jnp.ndarray
    g_inv: jnp.ndarray
    block: jnp.ndarray
    logdet_g: jnp.ndarray
    q_k: jnp.ndarray
    logdet_r: jnp.ndarray
    n_obs: jnp.ndarray


class HendersonSolution(NamedTuple):
    """MME solution at ``sigma2``: ``beta`` (p,), ``u`` (q,), ``c_inv`` (p+q, p+q) the
    inverse of the MME matrix (``s_e`` scale), ``logdet_c``, ``ere`` = ``e' R^-1 e``,
    ``yre`` = ``y' R^-1 e`` with ``e = y - X beta - Z u``."""

    beta: jnp.ndarray
    u: jnp.ndarray
    c_inv: jnp.ndarray
    logdet_c: jnp.ndarray
    ere: jnp.ndarray
    yre: jnp.ndarray


def henderson_solve(sigma2, hs: HendersonSystem) -> HendersonSolution:
    """Solve the MME ``[[X'R^-1X, X'R^-1Z], [Z'R^-1X, Z'R^-1Z + s_e G^-1]] b = [X'R^-1y; Z'R^-1y]``."""
    p = hs.xrx.shape[0]
    s_e = sigma2[-1]
    scale = s_e / sigma2[:-1][hs.block]
    top = jnp.concatenate([hs.xrx, hs.xrz], axis=1)
    bottom = jnp.concatenate([hs.xrz.T, hs.zrz + hs.g_inv * scale[:, None]], axis=1)
    c = jnp.concatenate([top, bottom], axis=0)
    c = 0.5 * (c + c.T)
    chol = jnp.linalg.cholesky(c)
    rhs = jnp.concatenate([hs.xry, hs.zry])
    sol = cho_solve((chol, True), rhs)
    c_inv = cho_solve((chol, True), jnp.eye(c.shape[0], dtype=c.dtype))
    beta, u = sol[:p], sol[p:]
    # e' R^-1 e = y'R^-1 y - 2 b' rhs + b' H b, where H is the MME matrix without G^-1.
    hb = jnp.concatenate([hs.xrx @ beta + hs.xrz @ u, hs.xrz.T @ beta + hs.zrz @ u])
    yre = hs.yry - jnp.dot(sol, rhs)
    ere = hs.yry - 2.0 * jnp.dot(sol, rhs) + jnp.dot(sol, hb)
    return HendersonSolution(beta, u, c_inv, chol_logdet(chol), ere, yre)


def henderson_loglik(sigma2, sol: HendersonSolution, hs: HendersonSystem):
    """MM4LMM-convention ReML log-likelihood from an MME solution."""
    p = hs.xrx.shape[0]
    q = hs.zrz.shape[0]
    s_e = sigma2[-1]
    logdet_g = jnp.sum(hs.logdet_g + hs.q_k * jnp.log(sigma2[:-1]))
    return -0.5 * (sol.logdet_c + hs.logdet_r + logdet_g + (hs.n_obs - p - q) * jnp.log(s_e) + sol.yre / s_e)


def step_henderson(sigma2, hs: HendersonSystem):
    """MM update (ReML) through Henderson's equations.  Returns ``(loglik, sigma2_next)``."""
    p = hs.xrx.shape[0]
    n_rand = sigma2.shape[0] - 1
    sol = henderson_solve(sigma2, hs)
    loglik = henderson_loglik(sigma2, sol, hs)
    onehot = (hs.block[None, :] == jnp.arange(n_rand)[:, None]).astype(sigma2.dtype)  # (K-1, q)
    # u_k' G_k^-1 u_k and tr(G_k^-1 C^kk), block by block through the one-hot mask.
    ginv_u = hs.g_inv @ sol.u
    ugu = onehot @ (sol.u * ginv_u)
    tr_gc = onehot @ jnp.sum(hs.g_inv * sol.c_inv[p:, p:], axis=1)
    return loglik, henderson_update(sigma2, hs.q_k, hs.n_obs, p, ugu, tr_gc, sol.ere)


def henderson_update(sigma2, q_k, n_obs, p: int, ugu, tr_gc, ere):
    """The MM update from MME quantities: ``ugu`` (K-1,) ``u_k' G_k^-1 u_k``, ``tr_gc``
    (K-1,) ``tr(G_k^-1 C^kk)`` (``C`` the MME matrix scaled by ``s_e``), ``ere`` ``e'R^-1e``."""
    s_e = sigma2[-1]
    s_k = sigma2[:-1]
    tr_pv = (q_k - (s_e / s_k) * tr_gc) / s_k  # tr(P V_k), random components
    num = ugu / s_k**2  # (P y)' V_k (P y)
    tr_pr = (n_obs - p - jnp.sum(s_k * tr_pv)) / s_e
    num_e = ere / s_e**2
    ratio = jnp.concatenate([num / tr_pv, jnp.atleast_1d(num_e / tr_pr)])
    return sigma2 * jnp.sqrt(ratio)


__all__ = [
    "HendersonSolution",
    "HendersonSystem",
    "henderson_loglik",
    "henderson_solve",
    "henderson_update",
    "profiled_reml_loglik",
    "profiled_sigma2",
    "step_dense",
    "step_henderson",
    "step_profiled_reml",
    "step_rotated_ml",
]
