"""Two-component marker scan on the profiled likelihood: a shared grid by GEMM, then Newton (pure JAX).

Model for one marker ``g`` and one trait ``y`` (``n`` individuals, ``c`` covariates ``C``)::

    y = C a + g b + u + e,   u ~ N(0, s_g K),   e ~ N(0, s_e I).

With ``K = U diag(d) U'`` and everything rotated by ``U'``, ``V = s_e diag(delta d + 1)``
(``delta = s_g / s_e``).  Profiling ``s_e`` and the fixed effects out leaves a function of
``t = log(delta)`` alone; with weights ``w_i = 1 / (delta d_i + 1)``, ``X = [C | g]``
(``p = c + 1`` columns) and ``ypy = y' P y`` at ``s_e = 1``, the full log-likelihoods
(2 pi included, as in :mod:`mm4lmm_jax.core._likelihood`) are

* ReML: ``l(t) = -1/2 [(n - p)(log(2 pi ypy / (n - p)) + 1) - sum log w + log|X' W X|]``
* ML:   ``l(t) = -1/2 [n (log(2 pi ypy / n) + 1) - sum log w]``

and ``s_e = ypy / (n - p)`` (ReML) or ``ypy / n`` (ML).  Every quantity comes from the
``(p + 1) x (p + 1)`` weighted cross-product matrix of ``A = [C | g | y]``: its Cholesky
pivots give ``log|X'WX|`` and ``ypy``; its last row gives the marker's effect.

The optimum is found in two stages, both batched over a block of markers and over traits:

1. **Grid**: on one log-spaced grid of ``delta`` shared by every marker the weights are the
   same for all markers, so every per-marker cross-product on the grid is a matrix product
   (``G_rot @ (W * C)'``, ...): a few GEMMs at BLAS speed.  Each marker starts from its best
   grid point.
2. **Newton** on ``t`` with exact derivatives (weights ``w``, ``dw/dt``, ``d2w/dt2``), damped
   (a step that lowers the likelihood is halved), bounded to the grid's range, until the step
   is below ``tol``.  The result is the exact ReML (ML) optimum of every marker model, the same
   optimum MM4LMM's MM iterations approach (``delta`` is bounded to ``[1e-5, 1e5]`` as in GEMMA).

Small matrices are factorised by an unrolled Cholesky on batched entries: no per-marker
LAPACK call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import jet

from ._iterate import Status, iterate, status_of
from ._kenward_roger import kr_test, rotated_kr_ingredients
from ._likelihood import LOG_2PI

#: GEMMA's bounds on the variance ratio ``delta = s_g / s_e``.
DELTA_BOUNDS = (1e-5, 1e5)


class ScanData(NamedTuple):
    """Quantities shared by every marker of a scan (rotated by the kinship's eigenvectors).

    Fields: ``d`` (n,) kinship eigenvalues (clipped at 0); ``c_rot`` (c, n) rotated
    covariates, one row each; ``y_rot`` (n,) the rotated trait (map over traits for several).
    """

    d: jnp.ndarray
    c_rot: jnp.ndarray
    y_rot: jnp.ndarray


class ScanOutput(NamedTuple):
    """Per marker, shapes (b,).

    Fields
    ------
    log_delta : ``log(s_g / s_e)`` at the optimum.   loglik : full log-likelihood there.
    beta, se : the marker's effect and its standard error (``s_e`` as estimated).
    wald : Wald statistic ``(beta / se)^2``.   sigma2_e : residual variance ``s_e``.
    n_iter : Newton iterations.   status : :class:`~.iterate.Status` code: ``OK`` (the step
    fell below ``tol``, or the optimum is at a bound with the slope pointing out),
    ``MAX_STEPS``, or ``NONFINITE`` (a non-finite value met, e.g. a marker collinear with the
    covariates).
    """

    log_delta: jnp.ndarray
    loglik: jnp.ndarray
    beta: jnp.ndarray
    se: jnp.ndarray
    wald: jnp.ndarray
    sigma2_e: jnp.ndarray
    n_iter: jnp.ndarray
    status: jnp.ndarray

    @property
    def converged(self):
        return self.status == Status.OK


def unrolled_cholesky(m: list[list[jnp.ndarray]]) -> list[list[jnp.ndarray]]:
    """Lower Cholesky factor of a small symmetric matrix given as nested lists of batched
    entries (``m[i][j]`` any common shape, ``i >= j`` read); returns ``L`` the same way.
    A non-positive pivot gives NaN (never an exception inside ``jit``)."""
    k = len(m)
    low: list[list[jnp.ndarray]] = [[None] * k for _ in range(k)]  # type: ignore[list-item]
    for j in range(k):
        pivot = m[j][j] - sum((low[j][i] ** 2 for i in range(j)), start=jnp.zeros_like(m[j][j]))
        root = jnp.sqrt(jnp.where(pivot > 0, pivot, jnp.nan))
        low[j][j] = root
        for r in range(j + 1, k):
            acc = m[r][j] - sum((low[r][i] * low[j][i] for i in range(j)), start=jnp.zeros_like(m[r][j]))
            low[r][j] = acc / root
    return low


def profile_loglik(cross: list[list[jnp.ndarray]], sum_log_w, n: int, method: str):
    """Profiled log-likelihood from the cross-products of ``A = [C | g | y]`` (or ``[C | y]``)
    at one ``delta``.  Returns ``(loglik, L)`` with ``L`` the unrolled Cholesky factor."""
    low = unrolled_cholesky(cross)
    k = len(cross)
    p = k - 1
    ypy = low[p][p] ** 2
    if method == "reml":
        logdet = 2.0 * sum((jnp.log(low[j][j]) for j in range(p)), start=jnp.zeros_like(ypy))
        df = n - p
        ll = -0.5 * (df * (LOG_2PI + jnp.log(ypy / df) + 1.0) - sum_log_w + logdet)
    elif method == "ml":
        ll = -0.5 * (n * (LOG_2PI + jnp.log(ypy / n) + 1.0) - sum_log_w)
    else:
        raise ValueError(f"method must be 'reml' or 'ml', got {method!r}")
    return ll, low


def _shared_rows(c_rot, y_rot):
    """Row products of the columns that do not involve the marker, then a row of ones:
    ``(npairs + 1, n)``."""
    c = c_rot.shape[0]
    rows = [c_rot[i] * c_rot[j] for i in range(c) for j in range(i + 1)]
    rows += [c_rot[i] * y_rot for i in range(c)]
    rows += [y_rot * y_rot, jnp.ones_like(y_rot)]
    return jnp.stack(rows)


def _assemble(e, c: int):
    """Nested-list cross-product matrix of ``[C | g | y]`` and ``sum log w`` from an entry
    vector ``e[..., E]`` laid out as: marker-free pairs (order of :func:`_shared_rows`),
    ``sum w``, ``g'WC_i`` (c), ``g'Wg``, ``g'Wy``, ``sum log w``."""
    k = c + 2
    m: list[list] = [[None] * k for _ in range(k)]
    idx = 0
    for i in range(c):
        for j in range(i + 1):
            m[i][j] = e[..., idx]
            idx += 1
    for i in range(c):
        m[k - 1][i] = e[..., idx]
        idx += 1
    m[k - 1][k - 1] = e[..., idx]
    idx += 2  # skip sum w
    for i in range(c):
        m[c][i] = e[..., idx + i]
    m[c][c] = e[..., idx + c]
    m[k - 1][c] = e[..., idx + c + 1]
    return m, e[..., -1]


def weight_orders(log_delta, d):
    """``(w, dw/dt, d2w/dt2)`` stacked on a new leading axis, and ``log w``; ``t = log delta``.

    With ``a = delta d`` and ``w = 1 / (a + 1)``: ``dw/dt = w^2 - w``,
    ``d2w/dt2 = dw/dt + 2 (1 - w)^2 w``; ``d log w/dt = w - 1``, ``d2 log w/dt2 = dw/dt``.
    """
    a = jnp.exp(log_delta)[..., None] * d.reshape((1,) * jnp.ndim(log_delta) + d.shape)
    w = 1.0 / (a + 1.0)
    w1 = w * w - w
    w2 = w1 + 2.0 * (1.0 - w) ** 2 * w
    return jnp.stack([w, w1, w2]), -jnp.log1p(a)


def _log_w_orders(sum_log_w, shared_ones, n: int):
    """``sum log w`` and its two derivatives from ``sum w`` (orders 0, 1) on the last axis."""
    return jnp.stack([sum_log_w, shared_ones[0] - n, shared_ones[1]])


class GridBasis(NamedTuple):
    """What the grid stage shares across markers (built once per trait by :func:`grid_basis`).

    Fields: ``grid`` (G,) nodes in ``t = log delta``; ``wcy`` (n, 3 G (c + 1)) the weights of
    the three orders times each covariate and the trait; ``w`` (n, 3 G) the weights;
    ``marker_free`` (3, G, npairs + 2) the entries that do not involve the marker.
    """

    grid: jnp.ndarray
    wcy: jnp.ndarray
    w: jnp.ndarray
    marker_free: jnp.ndarray


def grid_basis(data: ScanData, grid) -> GridBasis:
    """Weights on the grid and the marker-free entries, for :func:`grid_sums`."""
    n = data.d.shape[0]
    ws, lw = weight_orders(grid, data.d)  # (3, G, n), (G, n)
    cy = jnp.concatenate([data.c_rot, data.y_rot[None]])  # (c + 1, n)
    shared = ws @ _shared_rows(data.c_rot, data.y_rot).T  # (3, G, npairs + 1)
    slw = _log_w_orders(jnp.sum(lw, axis=-1), shared[..., -1], n)  # (3, G)
    return GridBasis(
        grid=grid,
        wcy=(ws[:, :, None, :] * cy[None, None]).reshape(-1, n).T,
        w=ws.reshape(-1, n).T,
        marker_free=jnp.concatenate([shared, slw[..., None]], axis=-1),
    )


def grid_sums(g_rot, basis: GridBasis):
    """Every entry and its first two ``t``-derivatives at the grid's nodes: (b, G, 3, E).

    The per-marker sums are two GEMMs shared by all markers: ``g_rot @ wcy`` and
    ``(g_rot**2) @ w``, in ``g_rot``'s precision (the entries that do not involve the marker
    keep the basis's).
    """
    b = g_rot.shape[0]
    num_g = basis.grid.shape[0]
    mf = basis.marker_free
    dtype = g_rot.dtype
    prods = (g_rot @ basis.wcy.astype(dtype)).astype(mf.dtype).reshape(b, 3, num_g, -1)  # (b, 3, G, c + 1)
    gg = ((g_rot * g_rot) @ basis.w.astype(dtype)).astype(mf.dtype).reshape(b, 3, num_g, 1)
    e = jnp.concatenate(
        [
            jnp.broadcast_to(mf[None, ..., :-1], (b, 3, num_g, mf.shape[-1] - 1)),
            prods[..., :-1],
            gg,
            prods[..., -1:],
            jnp.broadcast_to(mf[None, ..., -1:], (b, 3, num_g, 1)),
        ],
        axis=-1,
    )
    return jnp.swapaxes(e, 1, 2)


#: Markers per pass of :func:`exact_sums`: the weights of a larger block leave the cache
#: (measured at n = 2,000: 64 -> 0.25 s, 1,024 -> 1.18 s per 20,000 markers, two orders).
EXACT_CHUNK = 64


def exact_sums(log_delta, g_rot, data: ScanData, orders: int = 3):
    """Every entry (and its first ``orders - 1`` derivatives in ``t``) at per-marker
    ``log_delta`` (b,): (b, orders, E), in the precision of ``data`` (``g_rot`` may be
    narrower: it is widened chunk by chunk).  Blocks larger than :data:`EXACT_CHUNK` are done
    in chunks of that size (``lax.map``)."""
    b, n = g_rot.shape
    if b > EXACT_CHUNK and b % EXACT_CHUNK == 0:
        parts = jax.lax.map(
            lambda a: _exact_sums(a[0], a[1], data, orders),
            (log_delta.reshape(-1, EXACT_CHUNK), g_rot.reshape(-1, EXACT_CHUNK, n)),
        )
        return parts.reshape(b, *parts.shape[2:])
    return _exact_sums(log_delta, g_rot, data, orders)


def _exact_sums(log_delta, g_rot, data: ScanData, orders: int):
    g_rot = g_rot.astype(data.d.dtype)  # a float32 block is widened chunk by chunk
    b, n = g_rot.shape
    c = data.c_rot.shape[0]
    ws, lw = weight_orders(log_delta, data.d)  # (3, b, n)
    ws = ws[:orders]
    wg = ws * g_rot[None]
    gg = jnp.sum(wg * g_rot[None], axis=-1)[..., None]  # (o, b, 1)
    cy = jnp.concatenate([data.c_rot, data.y_rot[None]])
    gcy = (wg.reshape(orders * b, n) @ cy.T).reshape(orders, b, c + 1)
    shared = (ws.reshape(orders * b, n) @ _shared_rows(data.c_rot, data.y_rot).T).reshape(orders, b, -1)
    ones = jnp.concatenate([shared[..., -1], jnp.zeros((3 - orders, b), shared.dtype)])
    slw = _log_w_orders(jnp.sum(lw, axis=-1), ones, n)[:orders, :, None]
    e = jnp.concatenate([shared, gcy[..., :c], gg, gcy[..., c:], slw], axis=-1)
    return jnp.swapaxes(e, 0, 1)


def _loglik_of(e, n: int, c: int, method: str):
    cross, slw = _assemble(e, c)
    return profile_loglik(cross, slw, n, method)


def _derivatives(e3, n: int, c: int, method: str):
    """Value, first and second ``t``-derivative of the log-likelihood from entries with
    their derivatives ``e3`` (..., 3, E) (Taylor-mode propagation, :mod:`jax.experimental.jet`)."""
    ll, (d1, d2) = jet.jet(
        lambda e: _loglik_of(e, n, c, method)[0], (e3[..., 0, :],), ((e3[..., 1, :], e3[..., 2, :]),)
    )
    return ll, d1, d2


def _quintic_hermite(ends, s):
    """Quintic Hermite interpolant on ``[0, 1]``: ``ends = (f0, f0', f0'', f1, f1', f1'')``
    with derivatives already scaled to ``s`` units; each (...,), as ``s``."""
    f0, g0, c0, f1, g1, c1 = ends
    s2, s3 = s * s, s * s * s
    s4, s5 = s3 * s, s3 * s2
    return (
        f0 * (1 - 10 * s3 + 15 * s4 - 6 * s5)
        + g0 * (s - 6 * s3 + 8 * s4 - 3 * s5)
        + c0 * 0.5 * (s2 - 3 * s3 + 3 * s4 - s5)
        + c1 * 0.5 * (s3 - 2 * s4 + s5)
        + g1 * (-4 * s3 + 7 * s4 - 3 * s5)
        + f1 * (10 * s3 - 15 * s4 + 6 * s5)
    )


class _NewtonState(NamedTuple):
    t: jnp.ndarray
    t_acc: jnp.ndarray
    ll_acc: jnp.ndarray
    done: jnp.ndarray
    n_iter: jnp.ndarray
    est: tuple  # (loglik, beta, se, sigma2_e) at ``t`` once done


def _estimates(e, n: int, c: int, method: str):
    """``(loglik, beta, se, sigma2_e)`` of the marker (last column of ``X``) from entries ``e``."""
    return _estimates_from(*_loglik_of(e, n, c, method), n, method)


def _estimates_from(ll, low, n: int, method: str):
    p = len(low) - 1
    ypy = low[p][p] ** 2
    sigma2_e = ypy / (n - p if method == "reml" else n)
    beta = low[p][p - 1] / low[p - 1][p - 1]
    se = jnp.sqrt(sigma2_e) / low[p - 1][p - 1]
    return ll, beta, se, sigma2_e


def _newton_step(d1, d2, max_step):
    step = jnp.where(d2 < 0, -d1 / jnp.where(d2 < 0, d2, -1.0), jnp.sign(d1) * max_step)
    return jnp.clip(step, -max_step, max_step)


@dataclass(frozen=True)
class BlockNewton:
    """Damped Newton ascent on ``t = log delta`` with exact sums for a block of markers (b,),
    as a solver of :mod:`._iterate`: a marker whose step lowers the likelihood is halved back;
    it stops when its step is below ``tol`` (or it sits at a bound with the slope pointing
    out), and keeps the estimates of that last, exactly evaluated point.  The block stops when
    every marker has, or after ``max_iter`` steps."""

    g_rot: jnp.ndarray
    data: ScanData
    method: str
    bounds_t: tuple
    max_step: float
    tol: jnp.ndarray
    max_iter: int

    def init(self, x0) -> _NewtonState:
        t0, done0, est0 = x0
        return _NewtonState(t0, t0, jnp.full_like(t0, -jnp.inf), done0, jnp.zeros(t0.shape, jnp.int32), tuple(est0))

    def step(self, s: _NewtonState, n) -> _NewtonState:
        lower, upper = self.bounds_t
        n_obs = self.g_rot.shape[1]
        c = self.data.c_rot.shape[0]
        e3 = exact_sums(s.t, self.g_rot, self.data)
        ll, d1, d2 = _derivatives(e3, n_obs, c, self.method)
        est = _estimates(e3[:, 0], n_obs, c, self.method)
        worse = ll < s.ll_acc - 1e-12 * jnp.abs(s.ll_acc)
        step = _newton_step(d1, d2, self.max_step)
        t_next = jnp.where(worse, 0.5 * (s.t + s.t_acc), jnp.clip(s.t + step, lower, upper))
        at_bound = ((s.t <= lower) & (d1 <= 0)) | ((s.t >= upper) & (d1 >= 0))
        done_now = (~worse & ((jnp.abs(step) < self.tol) | at_bound)) | ~jnp.isfinite(ll)
        active = ~s.done
        return _NewtonState(
            t=jnp.where(active & ~done_now, t_next, s.t),
            t_acc=jnp.where(active & ~worse, s.t, s.t_acc),
            ll_acc=jnp.where(active & ~worse, ll, s.ll_acc),
            done=s.done | done_now,
            n_iter=s.n_iter + active.astype(jnp.int32),
            est=tuple(jnp.where(active, a, b) for a, b in zip(est, s.est)),
        )

    def terminate(self, s: _NewtonState, n):
        return (n >= self.max_iter) | jnp.all(s.done)

    def finish(self, s: _NewtonState, n):
        return (s.t, s.n_iter, s.done, s.est), status_of(s.done, jnp.isfinite(s.est[0]))


def newton(t0, done0, est0, g_rot, data: ScanData, method: str, bounds_t, max_step: float, tol, max_iter):
    """:class:`BlockNewton` from ``t0`` (b,) for the markers not ``done0`` (the loop body does
    not run at all when every marker is already done).  Returns ``(t, n_iter, done,
    (loglik, beta, se, sigma2_e))``."""
    solver = BlockNewton(g_rot, data, method, bounds_t, max_step, tol, max_iter)
    return iterate(solver, (t0, done0, tuple(est0))).value


def _polish(t, done, est, g_rot, data: ScanData, method, bounds_t, max_step, tol, max_iter):
    """Exact Newton for the markers not ``done``, gathered into batches of ``b // 8`` (at
    least 1) so the others cost nothing; rounds repeat while some are left."""
    b = t.shape[0]
    size = max(1, b // 8)
    if size > EXACT_CHUNK:
        size -= size % EXACT_CHUNK

    def cond(carry):
        return jnp.any(~carry[1]) & (carry[4] < b)

    def body(carry):
        t, done, n_iter, est, rounds = carry
        (idx,) = jnp.nonzero(~done, size=size, fill_value=b)
        valid = idx < b
        safe = jnp.where(valid, idx, 0)
        sub_t, sub_n, sub_done, sub_est = newton(
            t[safe],
            ~valid,
            tuple(e[safe] for e in est),
            g_rot[safe],
            data,
            method,
            bounds_t,
            max_step,
            tol,
            max_iter,
        )
        target = jnp.where(valid, idx, b)  # out of range: dropped by the scatter
        put = lambda a, v: a.at[target].set(v, mode="drop")  # noqa: E731
        # a marker that did not converge within max_iter is still marked as handled
        return (
            put(t, sub_t),
            put(done, jnp.ones_like(sub_done)),
            put(n_iter, sub_n),
            tuple(put(a, v) for a, v in zip(est, sub_est)),
            rounds + size,
        )

    n_iter = jnp.zeros(b, jnp.int32)
    converged = done
    carry = (t, done, n_iter, tuple(est), jnp.int32(0))
    t, _, n_iter, est, _ = jax.lax.while_loop(cond, body, carry)
    return t, n_iter, converged | (n_iter > 0) & (n_iter < max_iter), est


def cell_optimum(ll, d1, d2, grid, h, iters: int = 30):
    """Maximum of the quintic Hermite interpolant of the log-likelihood in the grid cell that
    holds each marker's best node (``ll``, ``d1``, ``d2`` (b, G): exact value and ``t``-derivatives
    at the nodes).  Safeguarded Newton on the polynomial (bisection when a step leaves the
    bracket).  Measured: within 2e-6 of the optimum in ``log delta`` at 41 nodes over
    ``[1e-5, 1e5]`` (n = 1,000).  Returns ``t`` (b,) and the interpolant's curvature there."""
    num = grid.shape[0]
    ll = jnp.where(jnp.isfinite(ll), ll, -jnp.inf)
    k = jnp.argmax(ll, axis=-1)

    def at(a, i):
        return jnp.take_along_axis(a, i[:, None], axis=-1)[:, 0]

    d1k = at(d1, k)
    left = jnp.clip(jnp.where(d1k > 0, k, k - 1), 0, num - 2)
    pinned_low = (k == 0) & (d1k <= 0)
    pinned_high = (k == num - 1) & (d1k >= 0)
    right = left + 1
    ends = (
        at(ll, left),
        h * at(d1, left),
        h * h * at(d2, left),
        at(ll, right),
        h * at(d1, right),
        h * h * at(d2, right),
    )
    ends = tuple(jnp.where(jnp.isfinite(e), e, 0.0) for e in ends)

    def body(_, carry):
        s, lo, hi = carry
        _, (d1s, d2s) = jet.jet(lambda v: _quintic_hermite(ends, v), (s,), ((jnp.ones_like(s), jnp.zeros_like(s)),))
        lo = jnp.where(d1s > 0, s, lo)
        hi = jnp.where(d1s > 0, hi, s)
        cand = s - d1s / jnp.where(d2s < 0, d2s, -1.0)
        ok = (d2s < 0) & (cand > lo) & (cand < hi) & jnp.isfinite(cand)
        return jnp.where(ok, cand, 0.5 * (lo + hi)), lo, hi

    b = k.shape[0]
    zeros, ones = jnp.zeros(b, grid.dtype), jnp.ones(b, grid.dtype)
    s, _, _ = jax.lax.fori_loop(0, iters, body, (0.5 * ones, zeros, ones))
    s = jnp.where(pinned_low, 0.0, jnp.where(pinned_high, 1.0, s))
    _, (_, curv) = jet.jet(lambda v: _quintic_hermite(ends, v), (s,), ((jnp.ones_like(s), jnp.zeros_like(s)),))
    return grid[left] + s * h, curv / (h * h)


def refine(g_rot, e_grid, data: ScanData, grid, *, method: str, tol: float, max_iter: int) -> ScanOutput:
    """From the grid entries ``e_grid`` (b, G, 3, E) of a block of markers ``g_rot`` (b, n) to
    their optima: Hermite-interpolated optimum, exact check, Newton polish where needed."""
    n = g_rot.shape[1]
    c = data.c_rot.shape[0]
    lower, upper = grid[0], grid[-1]
    h = grid[1] - grid[0]
    ll_nodes, d1_nodes, d2_nodes = _derivatives(e_grid, n, c, method)
    t_hat, curvature = cell_optimum(ll_nodes, d1_nodes, d2_nodes, grid, h)

    # exact value and slope at the interpolated optimum; one Newton step with the
    # interpolant's curvature, the entries carried to its end to first order (error O(step^2))
    e2 = exact_sums(t_hat, g_rot, data, orders=2)
    ll0, d1 = jax.jvp(lambda e: _loglik_of(e, n, c, method)[0], (e2[:, 0],), (e2[:, 1],))
    step = jnp.clip(-d1 / jnp.where(curvature < 0, curvature, -1.0), -h, h)
    t_new = jnp.clip(t_hat + step, lower, upper)
    at_bound = ((t_hat <= lower) & (d1 <= 0)) | ((t_hat >= upper) & (d1 >= 0))
    t_new = jnp.where(at_bound, t_hat, t_new)
    moved = t_new - t_hat
    est = _estimates(e2[:, 0] + moved[:, None] * e2[:, 1], n, c, method)
    # the log-likelihood to second order (its slope vanishes at the optimum)
    est = (ll0 + moved * d1 + 0.5 * moved**2 * curvature, *est[1:])
    done = ((jnp.abs(t_new - t_hat) < tol) & (curvature < 0)) | at_bound | ~jnp.isfinite(est[0])
    t_hat = t_new
    t_hat, n_iter, done, (ll, beta, se, sigma2_e) = _polish(
        t_hat, done, est, g_rot, data, method, (lower, upper), h, tol, max_iter
    )
    finite = jnp.isfinite(ll) & jnp.isfinite(beta) & jnp.isfinite(se)
    return ScanOutput(t_hat, ll, beta, se, (beta / se) ** 2, sigma2_e, n_iter, status_of(done & finite, finite))


def _marker_kr(log_delta, sigma2_e, beta, g_rot, data: ScanData):
    g_rot = g_rot.astype(data.d.dtype)
    b = g_rot.shape[0]
    c = data.c_rot.shape[0]
    sigma2 = jnp.stack([jnp.exp(log_delta) * sigma2_e, jnp.broadcast_to(sigma2_e, (b,))], axis=1)
    ing = rotated_kr_ingredients(data.c_rot.T, g_rot[:, :, None], data.d, sigma2)
    contrast = jnp.zeros((1, c + 1), beta.dtype).at[0, c].set(1.0)
    full_beta = jnp.zeros((b, c + 1), beta.dtype).at[:, c].set(beta)
    test = jax.vmap(lambda bt, ing_i: kr_test(bt, ing_i, contrast))(full_beta, ing)
    return test.f, test.ddf


def marker_kr(out: ScanOutput, g_rot, data: ScanData):
    """Kenward-Roger F statistic and denominator df (b,) of each marker's effect at its fit
    ``out`` (:func:`scan_markers`, ReML), the model ``[C | g]``: the closed-form two-component
    ingredients (:func:`~._kenward_roger.rotated_kr_ingredients`) from the block's rotated columns,
    by :data:`EXACT_CHUNK` markers (``g_rot`` widened chunk by chunk).  The p-value is
    ``P(F(1, ddf) > f)``."""
    b, n = g_rot.shape
    args = (out.log_delta, out.sigma2_e, out.beta)
    if b > EXACT_CHUNK and b % EXACT_CHUNK == 0:
        parts = jax.lax.map(
            lambda a: _marker_kr(a[0], a[1], a[2], a[3], data),
            (*(v.reshape(-1, EXACT_CHUNK) for v in args), g_rot.reshape(-1, EXACT_CHUNK, n)),
        )
        return tuple(v.reshape(b) for v in parts)
    return _marker_kr(*args, g_rot, data)


def make_grid(grid_size: int = 41, bounds: tuple[float, float] = DELTA_BOUNDS, dtype=jnp.float64):
    """Equally spaced nodes in ``log delta`` over ``bounds``."""
    return jnp.linspace(math.log(bounds[0]), math.log(bounds[1]), grid_size, dtype=dtype)


def scan_markers(
    g_rot,
    data: ScanData,
    *,
    method: str = "reml",
    grid_size: int = 31,
    tol: float = 1e-4,
    max_iter: int = 30,
    bounds: tuple[float, float] = DELTA_BOUNDS,
) -> ScanOutput:
    """Exact per-marker fit of the two-component model for a block of rotated markers.

    ``g_rot`` (b, n): markers rotated by the kinship's eigenvectors (float64, or float32 from
    a single-precision rotation).  Returns a :class:`ScanOutput` of (b,) arrays.
    The grid stage's two GEMMs run in ``g_rot``'s precision: float32 halves their cost, and
    the grid only places each marker in its cell (its rounding changes the grid
    log-likelihoods by about 1e-6 of the part the marker explains).  The exact stage that
    gives the estimates runs in ``data``'s precision (float64), widening ``g_rot`` chunk by
    chunk (no widened copy of the block).  Stages: entries and their ``t``-derivatives on a
    shared grid (GEMMs); the log-likelihood's exact value and two derivatives at the nodes; the
    optimum of its quintic Hermite interpolant in the best cell;
    one exact evaluation there (value and slope) and a Newton step from it, the estimates
    carried to its end to first order; markers whose step exceeds ``tol`` (in ``log delta``)
    are polished by exact damped Newton iterations.  With ``tol = 1e-4`` the optimum is
    located to about ``1e-7`` in ``log delta`` (the step's second-order error plus its
    product with the interpolant's curvature error); the markers to polish are gathered, so
    the others do not wait for them.  ``method``, ``grid_size``, ``max_iter`` and ``bounds``
    are static.
    """
    grid = make_grid(grid_size, bounds, data.d.dtype)
    e_grid = grid_sums(g_rot, grid_basis(data, grid))
    return refine(g_rot, e_grid, data, grid, method=method, tol=tol, max_iter=max_iter)


@partial(jax.jit, static_argnames=("method", "grid_size", "max_iter", "bounds"))
def null_fit(
    data: ScanData,
    *,
    method: str = "reml",
    grid_size: int = 41,
    tol: float = 1e-8,
    max_iter: int = 100,
    bounds: tuple[float, float] = DELTA_BOUNDS,
) -> ScanOutput:
    """Fit of the covariates-only model (one row), the last covariate in the marker's place:
    exact evaluations at the grid's nodes, then :func:`newton` from the best one."""
    if data.c_rot.shape[0] < 1:
        raise ValueError("the null model needs at least one covariate (the intercept)")
    n = data.d.shape[0]
    reduced = ScanData(data.d, data.c_rot[:-1], data.y_rot)
    c = reduced.c_rot.shape[0]
    x = data.c_rot[-1:]
    grid = make_grid(grid_size, bounds, x.dtype)
    e = exact_sums(grid, jnp.broadcast_to(x, (grid_size, n)), reduced, orders=1)
    ll = _loglik_of(e[:, 0], n, c, method)[0]
    t0 = grid[jnp.argmax(jnp.where(jnp.isfinite(ll), ll, -jnp.inf))][None]
    nan = jnp.full((1,), jnp.nan, x.dtype)
    h = (math.log(bounds[1]) - math.log(bounds[0])) / (grid_size - 1)
    t, n_iter, done, (ll, beta, se, sigma2_e) = newton(
        t0, jnp.zeros(1, bool), (nan, nan, nan, nan), x, reduced, method, (grid[0], grid[-1]), h, tol, max_iter
    )
    finite = jnp.isfinite(ll) & jnp.isfinite(beta) & jnp.isfinite(se)
    return ScanOutput(t, ll, beta, se, (beta / se) ** 2, sigma2_e, n_iter, status_of(done & finite, finite))


__all__ = [
    "weight_orders",
    "cell_optimum",
    "DELTA_BOUNDS",
    "EXACT_CHUNK",
    "GridBasis",
    "BlockNewton",
    "ScanData",
    "ScanOutput",
    "exact_sums",
    "grid_basis",
    "grid_sums",
    "make_grid",
    "marker_kr",
    "newton",
    "null_fit",
    "profile_loglik",
    "refine",
    "scan_markers",
    "unrolled_cholesky",
]
