"""Exact two-component fits of many models ``[C | X_m]`` (several marker columns each) on
rotated data: the engine of G x E, set and Kenward-Roger scans with one kinship (pure JAX).

With ``K = U diag(d) U'`` and every column rotated by ``U'``, ``V = s_e diag(delta d + 1)``;
profiling ``s_e`` and the fixed effects leaves the log-likelihood a function of
``t = log delta`` alone, computed from the ``k x k`` weighted cross-product matrix
``M(t) = A' W(t) A`` of ``A = [C | X_m | y]`` (``k = c + p1 + 1``; ``W = diag(1 / (delta d + 1))``)
as in :mod:`._profile_scan` (which serves the one-column case faster).  Each model: the best
node of a grid in ``t`` (one batched product per node), then Newton steps with exact first and
second derivatives (Taylor-mode through an unrolled Cholesky of ``M``), damped, bounded to
``[log 1e-5, log 1e5]`` as GEMMA, until the step is below ``tol``.  The estimates at the optimum
(``beta``, ``(X' V^-1 X)^-1``, ``s_g``, ``s_e``, log-likelihood) are those of the structure
``TwoComponent`` of the same model.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import jet

from ._iterate import Status
from ._profile_scan import DELTA_BOUNDS, profile_loglik, weight_orders

GRID_SIZE = 31
#: ``delta`` range of fits that stand for unbounded ones (``mmest``): at ``delta = 1e-12``,
#: ``V`` differs from the boundary fit's (``s_g = 0``) by a relative ``1e-12 max(d)`` at most;
#: above ``1e5`` (an error variance 1e-5 of the kinship's) the profiled likelihood loses its
#: digits to cancellation in ``y' P y`` (measured: spurious maxima at ``1e9`` under ML).
EXACT_BOUNDS = (1e-12, 1e5)
TOL = 1e-10
MAX_ITER = 60


class RotatedFits(NamedTuple):
    """Per model (leading axis m): ``log_delta``; ``sigma2`` (m, 2) ``(s_g, s_e)``; ``beta``
    (m, p); ``var_beta`` (m, p, p); ``loglik`` (full, 2 pi included); ``n_iter``; ``status``."""

    log_delta: jnp.ndarray
    sigma2: jnp.ndarray
    beta: jnp.ndarray
    var_beta: jnp.ndarray
    loglik: jnp.ndarray
    n_iter: jnp.ndarray
    status: jnp.ndarray


def _loglik(m_flat, slw, k: int, n: int, method: str):
    """Profiled log-likelihood (:func:`._profile_scan.profile_loglik`) from the lower triangle of
    ``M`` (..., k(k+1)/2) and ``sum log w``."""
    rows, cols = np.tril_indices(k)
    cross = [[None] * k for _ in range(k)]
    for idx, (i, j) in enumerate(zip(rows, cols)):
        cross[i][j] = m_flat[..., idx]
    return profile_loglik(cross, slw, n, method)[0]


def _tril(mat):
    k = mat.shape[-1]
    rows, cols = jnp.tril_indices(k)
    return mat[..., rows, cols]


def _value_and_derivatives(t, a, d, method: str):
    """Log-likelihood and its first two ``t``-derivatives at per-model ``t`` (m,); ``a`` (m, n, k)."""
    n, k = a.shape[1], a.shape[2]
    ws, lw = weight_orders(t, d)  # (3, m, n), (m, n)
    mats = jnp.einsum("mnk,omn,mnl->omkl", a, ws, a)  # (3, m, k, k)
    tri = _tril(mats)
    slw = jnp.stack([jnp.sum(lw, -1), jnp.sum(ws[0], -1) - n, jnp.sum(ws[1], -1)])
    f = partial(_loglik, k=k, n=n, method=method)
    ll, (d1, d2) = jet.jet(f, (tri[0], slw[0]), ((tri[1], tri[2]), (slw[1], slw[2])))
    return ll, d1, d2


def _grid_values(grid, a, d, method: str):
    """Log-likelihood of every model at every node: (m, G)."""
    n, k = a.shape[1], a.shape[2]
    w = 1.0 / (jnp.exp(grid)[:, None] * d[None] + 1.0)  # (G, n)
    mats = jnp.einsum("mnk,gn,mnl->mgkl", a, w, a)
    slw = jnp.sum(jnp.log(w), -1)  # (G,)
    return _loglik(_tril(mats), slw[None], k, n, method)


@partial(jax.jit, static_argnames=("method", "grid_size", "max_iter", "bounds"))
def rotated_fits(d, c_rot, x_rot, y_rot, *, method: str = "reml", grid_size: int = GRID_SIZE,
                 tol: float = TOL, max_iter: int = MAX_ITER,
                 bounds: tuple[float, float] = DELTA_BOUNDS) -> RotatedFits:  # fmt: skip
    """Exact fits of the models ``[C | X_m]``.

    Parameters
    ----------
    d : (n,) kinship eigenvalues (>= 0).  c_rot : (n, c) rotated shared columns.
    x_rot : (m, n, p1) rotated marker columns of each model.  y_rot : (n,) rotated response.
    method : ``"reml"`` or ``"ml"``.
    bounds : the range of ``delta = s_g / s_e`` searched (GEMMA's ``[1e-5, 1e5]`` by default;
        :data:`EXACT_BOUNDS` where the optimum must be that of an unbounded fit).
    """
    m, n, p1 = x_rot.shape
    c = c_rot.shape[1]
    a = jnp.concatenate(
        [jnp.broadcast_to(c_rot, (m, n, c)), x_rot, jnp.broadcast_to(y_rot[:, None], (m, n, 1))], axis=2
    )
    low, high = float(np.log(bounds[0])), float(np.log(bounds[1]))
    grid = jnp.linspace(low, high, grid_size)
    values = _grid_values(grid, a, d, method)
    values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
    t0 = grid[jnp.argmax(values, axis=1)]
    max_step = 2.0 * (high - low) / (grid_size - 1)

    def body(state):
        # one evaluation per iteration: a point that lowers the likelihood below the last
        # accepted one is replaced by the midpoint (backtracking); else a Newton step from it
        t, t_prev, ll_prev, done, it = state
        ll, d1, d2 = _value_and_derivatives(t, a, d, method)
        worse = ~(ll >= ll_prev - 1e-12 * jnp.abs(ll_prev)) & jnp.isfinite(ll_prev)
        step = jnp.where(d2 < 0, -d1 / d2, jnp.sign(d1) * max_step)
        step = jnp.clip(step, -max_step, max_step)
        ahead = jnp.clip(t + step, low, high)
        at_bound = ((t <= low) & (d1 < 0)) | ((t >= high) & (d1 > 0))
        finished = ~worse & (at_bound | (jnp.abs(ahead - t) < tol) | ~jnp.isfinite(ll))
        new = jnp.where(worse, 0.5 * (t + t_prev), jnp.where(finished, t, ahead))
        keep = done | finished
        return (
            jnp.where(done, t, new),
            jnp.where(done | worse, t_prev, t),
            jnp.where(done | worse, ll_prev, ll),
            keep,
            it + jnp.where(done, 0, 1),
        )

    def cond(state):
        return (state[4].max() < max_iter) & ~jnp.all(state[3])

    init = (t0, t0, jnp.full(m, -jnp.inf), jnp.zeros(m, bool), jnp.zeros(m, jnp.int32))
    t, _, _, done, it = jax.lax.while_loop(cond, body, init)
    return _estimates(t, a, d, c + p1, method, done, it)


def _estimates(t, a, d, p: int, method: str, done, n_iter) -> RotatedFits:
    """Every estimate of the models ``a = [X | y]`` (m, n, p + 1) at ``t = log delta`` (m,)."""
    n = a.shape[1]
    w = 1.0 / (jnp.exp(t)[:, None] * d[None] + 1.0)
    mat = jnp.einsum("mnk,mn,mnl->mkl", a, w, a)
    xwx, xwy, ywy = mat[:, :p, :p], mat[:, :p, p], mat[:, p, p]
    inv = jnp.linalg.inv(xwx)
    beta = jnp.einsum("mij,mj->mi", inv, xwy)
    ypy = ywy - jnp.einsum("mi,mi->m", xwy, beta)
    s_e = ypy / ((n - p) if method == "reml" else n)
    ll = _loglik(_tril(mat), jnp.sum(jnp.log(w), -1), p + 1, n, method)
    s_g = jnp.exp(t) * s_e
    finite = jnp.isfinite(ll) & jnp.all(jnp.isfinite(beta), axis=1) & (s_e > 0)
    status = jnp.where(~finite, Status.NONFINITE, jnp.where(done, Status.OK, Status.MAX_STEPS)).astype(jnp.int32)
    return RotatedFits(t, jnp.stack([s_g, s_e], axis=1), beta, s_e[:, None, None] * inv, ll, n_iter, status)


__all__ = ["EXACT_BOUNDS", "RotatedFits", "rotated_fits"]
