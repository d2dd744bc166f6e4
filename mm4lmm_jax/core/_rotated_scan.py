"""Exact two-component fits of many models ``[C | X_m]`` (several marker columns each) on
rotated data: the engine of G x E, set and Kenward-Roger scans with one kinship (pure JAX).

With ``K = U diag(d) U'`` and every column rotated by ``U'``, ``V = s_e diag(delta d + 1)``;
profiling ``s_e`` and the fixed effects leaves the log-likelihood a function of
``t = log delta`` alone, computed from the ``k x k`` weighted cross-product matrix
``M(t) = A' W(t) A`` of ``A = [C | X_m | y]`` (``k = c + p1 + 1``; ``W = diag(1 / (delta d + 1))``)
as in :mod:`._profile_scan` (which serves the one-column case faster).  Each model: the
log-likelihood and its two ``t``-derivatives at the nodes of a grid shared by every model
(``M`` and its derivatives there are matrix products over the individuals, the weights being
the same for all models), the optimum of the quintic Hermite interpolant in the best cell
(within about 1e-6 of the exact one), then Newton steps with exact first and second
derivatives (Taylor-mode through an unrolled Cholesky of ``M``), damped, bounded to
``[log 1e-5, log 1e5]`` as GEMMA, until a step is below ``sqrt(tol)`` (taken: the optimum is
then within about ``tol``) -- one or two exact evaluations per model.  The estimates at the optimum
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

from ._gls import weighted_cross
from ._iterate import Status
from ._profile_scan import DELTA_BOUNDS, cell_optimum, profile_loglik, weight_orders

#: largest node spacing in ``log delta``: the quintic Hermite interpolant's optimum is then
#: within about 1e-6 of the exact one, so Newton needs one step and one check.
GRID_SPACING = 0.6
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


def _assemble(shared, xs, xx):
    """``M`` (..., k, k) of ``A = [C | X | y]`` from its blocks: ``shared`` (..., c + 1, c + 1)
    of ``[C | y]``, ``xs`` (..., p1, c + 1) and ``xx`` (..., p1, p1)."""
    c1, p1 = shared.shape[-1], xx.shape[-1]
    c, k = c1 - 1, c1 + p1
    top = jnp.concatenate([shared[..., :c, :c], jnp.swapaxes(xs[..., :c], -1, -2), shared[..., :c, c:]], -1)
    mid = jnp.concatenate([xs[..., :c], xx, xs[..., c:]], -1)
    bottom = jnp.concatenate([shared[..., c:, :c], jnp.swapaxes(xs[..., c:], -1, -2), shared[..., c:, c:]], -1)
    out = jnp.concatenate([top, mid, bottom], -2)
    assert out.shape[-2:] == (k, k)
    return out


def _cross_per_model(ws, c_rot, x_rot, y_rot):
    """``M`` for per-model weights ``ws`` (O, m, n) (a weight and its ``t``-derivatives):
    (O, m, k, k)."""
    return _assemble(*weighted_cross(ws, jnp.concatenate([c_rot, y_rot[:, None]], axis=1), x_rot))


def _cross_on_grid(ws, c_rot, x_rot, y_rot):
    """``M`` for weights shared by every model, ``ws`` (O, G, n) at the grid's nodes:
    (m, O, G, k, k).  Every per-model block is a matrix product over the individuals
    (``X_j`` against the weighted ``[C | y]``, ``X_i X_j`` against the weights)."""
    orders, num, n = ws.shape
    m, _, p1 = x_rot.shape
    s = jnp.concatenate([c_rot, y_rot[:, None]], axis=1)
    c1 = s.shape[1]
    shared = jnp.einsum("ogn,ni,nj->ogij", ws, s, s)
    ws_s = (ws[..., None] * s[None, None]).reshape(orders * num, n, c1)
    xs = jnp.einsum("mnj,qni->mqji", x_rot, ws_s).reshape(m, orders, num, p1, c1)
    prods = (x_rot[..., :, None] * x_rot[..., None, :]).reshape(m, n, p1 * p1)
    xx = (jnp.swapaxes(prods, 1, 2) @ ws.reshape(orders * num, n).T).reshape(m, p1, p1, orders, num)
    xx = jnp.moveaxis(xx, (3, 4), (1, 2))
    return _assemble(jnp.broadcast_to(shared, (m, *shared.shape)), xs, xx)


def _orders_of(mats, ws, lw, n: int, method: str):
    """Log-likelihood and its two ``t``-derivatives from ``M`` and the weights with their
    derivatives (order axis first: ``mats`` (3, ..., k, k), ``ws`` (3, ..., n), ``lw`` (..., n))."""
    k = mats.shape[-1]
    tri = _tril(mats)
    slw = jnp.stack([jnp.sum(lw, -1), jnp.sum(ws[0], -1) - n, jnp.sum(ws[1], -1)])
    f = partial(_loglik, k=k, n=n, method=method)
    ll, (d1, d2) = jet.jet(f, (tri[0], slw[0]), ((tri[1], tri[2]), (slw[1], slw[2])))
    return ll, d1, d2


def _value_and_derivatives(t, c_rot, x_rot, y_rot, d, method: str):
    """Log-likelihood and its first two ``t``-derivatives at per-model ``t`` (m,)."""
    ws, lw = weight_orders(t, d)  # (3, m, n), (m, n)
    return _orders_of(_cross_per_model(ws, c_rot, x_rot, y_rot), ws, lw, d.shape[0], method)


def _grid_orders(grid, c_rot, x_rot, y_rot, d, method: str):
    """Log-likelihood of every model and its first two ``t``-derivatives at every node, each
    (m, G): the weights of a node are shared by every model (:func:`_cross_on_grid`)."""
    ws, lw = weight_orders(grid, d)  # (3, G, n), (G, n)
    mats = jnp.moveaxis(_cross_on_grid(ws, c_rot, x_rot, y_rot), 1, 0)  # (3, m, G, k, k)
    m = x_rot.shape[0]
    ws_b = jnp.broadcast_to(ws[:, None], (3, m, *ws.shape[1:]))
    return _orders_of(mats, ws_b, jnp.broadcast_to(lw, (m, *lw.shape)), d.shape[0], method)


def grid_size_for(bounds: tuple[float, float], spacing: float = GRID_SPACING) -> int:
    """Nodes of a grid over ``log(bounds)`` at most ``spacing`` apart."""
    return int(np.ceil((np.log(bounds[1]) - np.log(bounds[0])) / spacing)) + 1


@partial(jax.jit, static_argnames=("method", "grid_size", "max_iter", "bounds"))
def rotated_fits(d, c_rot, x_rot, y_rot, *, method: str = "reml", grid_size: int | None = None,
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
    m = x_rot.shape[0]
    low, high = float(np.log(bounds[0])), float(np.log(bounds[1]))
    grid_size = grid_size or grid_size_for(bounds)
    grid = jnp.linspace(low, high, grid_size)
    h = (high - low) / (grid_size - 1)
    ll, d1, d2 = _grid_orders(grid, c_rot, x_rot, y_rot, d, method)
    t0, _ = cell_optimum(ll, d1, d2, grid, h)
    max_step = 2.0 * h

    def body(state):
        # one evaluation per iteration: a point that lowers the likelihood below the last
        # accepted one is replaced by the midpoint (backtracking); else a Newton step from it
        t, t_prev, ll_prev, done, it = state
        ll, d1, d2 = _value_and_derivatives(t, c_rot, x_rot, y_rot, d, method)
        worse = ~(ll >= ll_prev - 1e-12 * jnp.abs(ll_prev)) & jnp.isfinite(ll_prev)
        step = jnp.where(d2 < 0, -d1 / d2, jnp.sign(d1) * max_step)
        step = jnp.clip(step, -max_step, max_step)
        ahead = jnp.clip(t + step, low, high)
        at_bound = ((t <= low) & (d1 < 0)) | ((t >= high) & (d1 > 0))
        # a Newton step below sqrt(tol) leaves the optimum within about step^2 < tol of its end:
        # taken, and the model stops (the estimates are evaluated there, exactly)
        small = jnp.abs(ahead - t) < jnp.sqrt(tol)
        finished = ~worse & (at_bound | small | ~jnp.isfinite(ll))
        new = jnp.where(worse, 0.5 * (t + t_prev), jnp.where(finished & ~small, t, ahead))
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
    return _estimates(t, c_rot, x_rot, y_rot, d, method, done, it)


def _estimates(t, c_rot, x_rot, y_rot, d, method: str, done, n_iter) -> RotatedFits:
    """Every estimate of the models ``[C | X_m]`` at ``t = log delta`` (m,)."""
    n = d.shape[0]
    p = c_rot.shape[1] + x_rot.shape[2]
    w = 1.0 / (jnp.exp(t)[:, None] * d[None] + 1.0)
    mat = _cross_per_model(w[None], c_rot, x_rot, y_rot)[0]
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


__all__ = ["EXACT_BOUNDS", "GRID_SPACING", "RotatedFits", "grid_size_for", "rotated_fits"]
