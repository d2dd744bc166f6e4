"""Henderson's mixed-model equations with the first random block eliminated in closed form
(pure JAX) -- the fast MM step for marker scans with three or more components.

Set-up (once per data set, :func:`reduced_shared`): every random block is whitened,
``W_k = Z_k L_k`` with ``G_k = L_k L_k'``, so that its prior precision is ``I / s_k``; the
first block is rotated by the eigenvectors of ``W_1'W_1`` so that its part of the MME
matrix is diagonal, ``Lambda_1 + (s_e / s_1) I``.  Per MM step the first block is then
eliminated exactly (a diagonal solve) and only the Schur complement ``T`` over the fixed
effects and the remaining random blocks -- size ``p + q - q_1`` instead of ``p + q`` --
is factorised.  The iterates are those of :func:`..mm.step_henderson` (same MM update,
same log-likelihood); only the linear algebra differs.

The residual covariance must be the identity here (whiten the data by ``R^-1/2`` first).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from ._gls import chol_logdet
from ._mm import henderson_update


class ReducedShared(NamedTuple):
    """Marker-independent parts (see the module docstring).

    w1 (n, q1) whitened, rotated first block; wr (n, qr) the other whitened blocks;
    lam1 (q1,) eigenvalues of ``W_1'W_1``; b (q1, qr) ``W_1'W_r``; wrwr (qr, qr);
    w1y (q1,), wry (qr,), yy (); block_r (qr,) int component of each ``W_r`` column
    (1 .. K-2); logdet_g (K-1,) ``log|G_k|``; q_k (K-1,); logdet_r (); n_obs ().
    """

    w1: jnp.ndarray
    wr: jnp.ndarray
    lam1: jnp.ndarray
    b: jnp.ndarray
    wrwr: jnp.ndarray
    w1y: jnp.ndarray
    wry: jnp.ndarray
    yy: jnp.ndarray
    block_r: jnp.ndarray
    logdet_g: jnp.ndarray
    q_k: jnp.ndarray
    logdet_r: jnp.ndarray
    n_obs: jnp.ndarray


class ReducedSystem(NamedTuple):
    """One model: ``xx`` (p, p), ``f1`` (q1, p) ``W_1'X``, ``xwr`` (p, qr), ``xy`` (p,),
    and the :class:`ReducedShared` parts."""

    xx: jnp.ndarray
    f1: jnp.ndarray
    xwr: jnp.ndarray
    xy: jnp.ndarray
    shared: ReducedShared


class ReducedSolution(NamedTuple):
    """MME solution: ``beta`` (p,); ``v_sq`` (K-1,) ``||v_k||^2`` of the whitened random
    effects; ``tr`` (K-1,) ``tr([C^-1]_kk)``; ``logdet_c``; ``yre`` ``y'e``; ``ere`` ``e'e``;
    ``t_inv_xx`` (p, p) the fixed-effect block of ``C^-1``."""

    beta: jnp.ndarray
    v_sq: jnp.ndarray
    tr: jnp.ndarray
    logdet_c: jnp.ndarray
    yre: jnp.ndarray
    ere: jnp.ndarray
    t_inv_xx: jnp.ndarray


def reduced_shared(y, z_list, g_list, logdet_r=0.0) -> ReducedShared:
    """Set up from the (residual-whitened) ``y`` (n,), ``Z_k`` (n, q_k) and ``G_k`` (q_k, q_k)."""
    ws, logdets = [], []
    for z, g in zip(z_list, g_list):
        chol = jnp.linalg.cholesky(0.5 * (g + g.T))
        ws.append(z @ chol)
        logdets.append(chol_logdet(chol))
    lam1, q1 = jnp.linalg.eigh(ws[0].T @ ws[0])
    w1 = ws[0] @ q1
    wr = jnp.concatenate(ws[1:], axis=1)
    block_r = jnp.concatenate([jnp.full((w.shape[1],), k + 1, dtype=jnp.int32) for k, w in enumerate(ws[1:])])
    return ReducedShared(
        w1=w1,
        wr=wr,
        lam1=jnp.maximum(lam1, 0.0),
        b=w1.T @ wr,
        wrwr=wr.T @ wr,
        w1y=w1.T @ y,
        wry=wr.T @ y,
        yy=jnp.dot(y, y),
        block_r=block_r,
        logdet_g=jnp.stack(logdets),
        q_k=jnp.asarray([w.shape[1] for w in ws], dtype=y.dtype),
        logdet_r=jnp.asarray(logdet_r, dtype=y.dtype),
        n_obs=jnp.asarray(y.shape[0], dtype=y.dtype),
    )


def reduced_system(x, y, shared: ReducedShared) -> ReducedSystem:
    """Per-model cross-products for the (residual-whitened) design ``x`` (n, p)."""
    return ReducedSystem(x.T @ x, shared.w1.T @ x, x.T @ shared.wr, x.T @ y, shared)


def reduced_solve(sigma2, rs: ReducedSystem) -> ReducedSolution:
    """Solve the MME at ``sigma2`` (K,) by eliminating the first random block."""
    sh = rs.shared
    p = rs.xx.shape[0]
    n_rand = sigma2.shape[0] - 1
    s_e = sigma2[-1]
    rho = s_e / sigma2[:-1]
    w = 1.0 / (sh.lam1 + rho[0])
    u = jnp.concatenate([rs.f1, sh.b], axis=1)  # (q1, p + qr)
    uw = u * w[:, None]
    f1w = rs.f1 * w[:, None]
    # U' D^-1 U block by block: the (qr, qr) block only involves the shared B
    bwb = jnp.einsum("ia,i,ib->ab", sh.b, w, sh.b)
    top = jnp.concatenate([rs.xx - rs.f1.T @ f1w, rs.xwr - f1w.T @ sh.b], axis=1)
    bottom = jnp.concatenate([(rs.xwr - f1w.T @ sh.b).T, sh.wrwr + jnp.diag(rho[sh.block_r]) - bwb], axis=1)
    t = jnp.concatenate([top, bottom], axis=0)
    t = 0.5 * (t + t.T)
    rhs = jnp.concatenate([rs.xy, sh.wry]) - uw.T @ sh.w1y
    chol = jnp.linalg.cholesky(t)
    sol = cho_solve((chol, True), rhs)
    t_inv = cho_solve((chol, True), jnp.eye(t.shape[0], dtype=t.dtype))
    beta, vr = sol[:p], sol[p:]
    v1 = w * (sh.w1y - u @ sol)
    # tr([C^-1]_11) = sum(w) + sum_i w_i^2 u_i' T^-1 u_i; the other blocks: diagonal of T^-1
    tr1 = jnp.sum(w) + jnp.sum(w * w * jnp.sum((u @ t_inv) * u, axis=1))
    onehot = (sh.block_r[None, :] == jnp.arange(1, n_rand)[:, None]).astype(sigma2.dtype)  # (K-2, qr)
    tr = jnp.concatenate([jnp.atleast_1d(tr1), onehot @ jnp.diagonal(t_inv)[p:]])
    v_sq = jnp.concatenate([jnp.atleast_1d(jnp.dot(v1, v1)), onehot @ (vr * vr)])
    yre = sh.yy - jnp.dot(beta, rs.xy) - jnp.dot(v1, sh.w1y) - jnp.dot(vr, sh.wry)
    ere = yre - jnp.dot(rho, v_sq)
    logdet_c = jnp.sum(jnp.log(sh.lam1 + rho[0])) + chol_logdet(chol)
    return ReducedSolution(beta, v_sq, tr, logdet_c, yre, ere, t_inv[:p, :p])


def reduced_loglik(sigma2, sol: ReducedSolution, rs: ReducedSystem):
    """MM4LMM-convention ReML log-likelihood (as :func:`..mm.henderson_loglik`)."""
    sh = rs.shared
    p = rs.xx.shape[0]
    q = jnp.sum(sh.q_k)
    s_e = sigma2[-1]
    logdet_gs = jnp.sum(sh.logdet_g + sh.q_k * jnp.log(sigma2[:-1]))
    # whitened MME: log|C_w| = log|C| + sum log|G_k|, so logdet_g is already inside logdet_c
    return -0.5 * (
        sol.logdet_c
        + sh.logdet_r
        + logdet_gs
        - jnp.sum(sh.logdet_g)
        + (sh.n_obs - p - q) * jnp.log(s_e)
        + sol.yre / s_e
    )


def step_reduced(sigma2, rs: ReducedSystem):
    """MM update (ReML), identical to :func:`..mm.step_henderson`.  Returns ``(loglik, next)``."""
    sh = rs.shared
    p = rs.xx.shape[0]
    sol = reduced_solve(sigma2, rs)
    loglik = reduced_loglik(sigma2, sol, rs)
    return loglik, henderson_update(sigma2, sh.q_k, sh.n_obs, p, sol.v_sq, sol.tr, sol.ere)


__all__ = [
    "ReducedShared",
    "ReducedSolution",
    "ReducedSystem",
    "reduced_loglik",
    "reduced_shared",
    "reduced_solve",
    "reduced_system",
    "step_reduced",
]
