"""Exact scans of three-component models with one low-rank component (the two-kinship engine).

Model: ``V = s_1 K + s_2 Z Z' + s_e I`` with ``K`` any kinship (n, n) and ``Z`` (n, R) of small
rank (a second kinship of low rank, iid group effects, hybrids' ``Z_p K_p Z_p'``); every model
``[C | X_m]`` has its own exact optimum in ``psi = (s_1 / s_e, s_2 / s_e)``.

With ``K = U diag(d) U'`` and every column rotated by ``U'`` once, ``V / s_e = D + psi_2 Zt Zt'``
(``D = psi_1 d + 1``, ``Zt = U'Z``).  At fixed ``psi_1``, with ``Zt'D^-1 Zt = Q diag(theta) Q'``,
Woodbury gives

    ``a'V^-1 b = a'D^-1 b - sum_r h_r w_ar w_br``,  ``h_r = psi_2 / (1 + psi_2 theta_r)``,
    ``w = Q'Zt'D^-1 a``,  ``log|V| = log|D| + sum_r log(1 + psi_2 theta_r)``.

Every entry of ``A'V^-1A`` (``A = [C | X_m | y]``) and ``log|V|`` is evaluated on a grid of
nodes ``(s_j, u_l)``, ``s = log(psi_1 + c0)``, ``u = log(psi_2 + c2)`` (``c0 = 1 / max d``,
``c2 = 1 / max theta``), shared by every model: per model, GEMMs over the individuals (``L_j X``,
``L_j = Q_j'Zt'D_j^-1``) then over the low-rank dimension.  Between nodes they are interpolated
by Chebyshev polynomials in both coordinates on a box of half-width :data:`HALF_WIDTH` around the
null optimum: in ``s`` and ``u`` those functions are analytic in the strip ``|Im| < pi`` (every
singularity lies at ``psi_1 + c0 <= 0`` or ``psi_2 + c2 <= 0``), so :data:`N_NODES` nodes
interpolate them to about 1e-12 relative.  Newton's method on ``(s, u)`` (exact derivatives of the
interpolant) then finds each model's optimum with ``O(J L k^2)`` work per step.  A model whose
optimum lies on an edge of the box that is not a bound of ``psi`` is refitted in a box three times
as wide (twice the nodes), then if need be by the exact algebra (:func:`exact_parts`: one
``R x R`` Cholesky per step), as the null model is.  Ratios are bounded to ``PSI_BOUNDS``
(``[1e-8, 1e8]``) as in the general Newton path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from ._fit import FitOutput
from ._iterate import Status, status_of
from ._newton_scan import PSI_BOUNDS, maximise, profiled, profiled_derivatives, profiled_value

#: Chebyshev nodes per coordinate of the box
N_NODES = 10
#: half-width of the box in ``s`` and ``u`` around the null optimum (a factor ``e^0.3 = 1.35``
#: on ``psi_1 + c0`` and on ``psi_2 + c2``); optima beyond it are refitted
HALF_WIDTH = 0.3
#: exact refits per compiled batch
FALLBACK_BATCH = 8
#: models per compiled Newton call (padded)
DEFAULT_CHUNK = 512
#: models rotated per GEMM
SLAB = 4096
TOL = 1e-10


class Rotated(NamedTuple):
    """The data rotated by the kinship's eigenvectors: ``d`` (n,) its eigenvalues (>= 0),
    ``zt`` (n, R) ``U'Z``, ``u`` (n, n) the eigenvectors."""

    d: np.ndarray
    zt: np.ndarray
    u: np.ndarray


def rotate_components(kinship: np.ndarray, z: np.ndarray) -> Rotated:
    """Eigendecomposition of ``kinship`` (n, n) and ``U'z`` (z (n, R))."""
    d, u = np.linalg.eigh(np.asarray(kinship, float))
    return Rotated(np.clip(d, 0.0, None), u.T @ np.asarray(z, float), u)


# ---------------------------------------------------------------- exact evaluation
def exact_parts(psi, d, zt, a):
    """``S = A'V^-1A`` (k, k) and ``log|V|`` at ``psi`` (2,) for rotated columns ``a`` (n, k),
    ``V = diag(psi_1 d + 1) + psi_2 zt zt'``: one ``R x R`` Cholesky of ``I + psi_2 zt'D^-1 zt``."""
    w = 1.0 / (psi[0] * d + 1.0)
    zw = zt * w[:, None]
    b = jnp.eye(zt.shape[1], dtype=zt.dtype) + psi[1] * (zt.T @ zw)
    chol = jnp.linalg.cholesky(b)
    v = solve_triangular(chol, zw.T @ a, lower=True)
    s = a.T @ (a * w[:, None]) - psi[1] * (v.T @ v)
    ld = -jnp.sum(jnp.log(w)) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return s, ld


def _exact_value(t, d, zt, a, n: int, method: str):
    return profiled_value(*exact_parts(jnp.exp(t), d, zt, a), n, method)


def exact_fit(t0, d, zt, a, *, n: int, method: str, skip=False):
    """The exact optimum of one model (columns ``a = [X | y]`` rotated) from ``t0 = log psi``
    (bounded to ``PSI_BOUNDS``): ``(FitOutput, t)``."""
    sol = maximise(
        lambda t: _exact_value(t, d, zt, a, n, method),
        t0,
        lower=PSI_BOUNDS[0],
        upper=PSI_BOUNDS[1],
        tol=TOL,
        max_iter=100,
        skip=skip,
    )
    est = profiled(*exact_parts(jnp.exp(sol.value), d, zt, a), n, method)
    return _to_fit(est, jnp.exp(sol.value), sol.status, sol.n_steps), sol.value


def _to_fit(est, psi, status, n_steps) -> FitOutput:
    """FitOutput with ``sigma2 = (psi_1 s_e, psi_2 s_e, s_e)`` (the engine's order)."""
    sigma2 = jnp.concatenate([psi * est.s2, est.s2[None]])
    var_beta = est.s2 * est.cov_unscaled
    finite = (
        jnp.all(jnp.isfinite(sigma2)) & jnp.all(jnp.isfinite(est.beta)) & jnp.all(jnp.isfinite(var_beta))
        & jnp.isfinite(est.loglik) & (est.s2 > 0)
    )  # fmt: skip
    return FitOutput(sigma2, est.beta, var_beta, est.loglik, n_steps, status_of(status == Status.OK, finite))


@partial(jax.jit, static_argnames=("n", "method"))
def _exact_batch(t0, d, zt, a, skip, *, n: int, method: str):
    """Exact fits of a batch of models (``a`` (B, n, k)), one after the other."""
    return jax.lax.map(lambda args: exact_fit(args[0], d, zt, args[1], n=n, method=method, skip=args[2]), (t0, a, skip))


# ---------------------------------------------------------------- the interpolated scan
class Box(NamedTuple):
    """What every model shares on the node grid ``(s_j, u_l)`` (J x L) of the box
    ``[s_lo, s_hi] x [u_lo, u_hi]``, ``s = log(psi_1 + c0)``, ``u = log(psi_2 + c2)``; ``[C | y]``
    has ``c1`` columns.

    ``bounds`` (2, 2) rows ``(lo, hi)`` of ``s`` and ``u``; ``offsets`` (2,) ``(c0, c2)``;
    ``cheb_s`` (J, J), ``cheb_u`` (L, L) node values -> Chebyshev coefficients; ``ff`` (J, L,
    c1, c1) ``[C | y]' V^-1 [C | y]`` and ``ld`` (J, L) ``log|V|`` at the nodes (``V / s_e``).
    """

    bounds: jnp.ndarray
    offsets: jnp.ndarray
    cheb_s: jnp.ndarray
    cheb_u: jnp.ndarray
    ff: jnp.ndarray
    ld: jnp.ndarray


class BoxMaps(NamedTuple):
    """Host-side maps of marker columns to the box's nodes: ``lmat`` (J R, n) the stacked
    ``L_j = Q_j' Zt' D_j^-1``, ``dinv`` (J, n) the weights ``1 / D_j``, ``f`` (n, c1) the rotated
    ``[C | y]``, ``hwf`` (J, R, L c1) ``h_jlr L_j [C | y]``, ``h`` (J, R, L) the Woodbury weights
    ``psi_2 / (1 + psi_2 theta)``."""

    lmat: np.ndarray
    dinv: np.ndarray
    f: np.ndarray
    hwf: np.ndarray
    h: np.ndarray


def chebyshev_nodes(lo: float, hi: float, count: int) -> np.ndarray:
    """Chebyshev points of the second kind on ``[lo, hi]`` (count,), both ends included."""
    x = np.cos(np.pi * np.arange(count) / (count - 1))
    return 0.5 * (lo + hi) + 0.5 * (hi - lo) * x


def _chebyshev_matrix(count: int) -> np.ndarray:
    """(count, count): values at :func:`chebyshev_nodes` -> Chebyshev coefficients."""
    x = np.cos(np.pi * np.arange(count) / (count - 1))
    return np.linalg.inv(np.polynomial.chebyshev.chebvander(x, count - 1))


def _chebyshev_basis(x, count: int):
    """``T_k(x)`` and its first two derivatives (3, count) by the three-term recurrences."""
    t = [jnp.ones_like(x), x]
    t1 = [jnp.zeros_like(x), jnp.ones_like(x)]
    t2 = [jnp.zeros_like(x), jnp.zeros_like(x)]
    for _ in range(2, count):
        t.append(2.0 * x * t[-1] - t[-2])
        t1.append(2.0 * t[-2] + 2.0 * x * t1[-1] - t1[-2])
        t2.append(4.0 * t1[-2] + 2.0 * x * t2[-1] - t2[-2])
    return jnp.stack([jnp.stack(t[:count]), jnp.stack(t1[:count]), jnp.stack(t2[:count])])


def _weights(v, bounds, cheb):
    """Interpolation weights of the nodes at ``v`` and their first two derivatives (3, count)."""
    lo, hi = bounds[0], bounds[1]
    scale = 2.0 / (hi - lo)
    basis = _chebyshev_basis((v - lo) * scale - 1.0, cheb.shape[0])
    return (basis @ cheb) * jnp.stack([1.0, scale, scale**2])[:, None]


def _interval(centre: float, offset: float, half_width: float) -> tuple[float, float]:
    """``[log(centre + offset) -/+ half_width]`` within the ratio bounds ``PSI_BOUNDS``."""
    lo_b, hi_b = (float(np.log(np.exp(b) + offset)) for b in PSI_BOUNDS)
    mid = float(np.log(min(max(centre, np.exp(PSI_BOUNDS[0])), np.exp(PSI_BOUNDS[1])) + offset))
    return max(mid - half_width, lo_b), min(mid + half_width, hi_b)


def prepare_box(rot: Rotated, f: np.ndarray, psi0, *, count: int = N_NODES,
                half_width: float = HALF_WIDTH) -> tuple[Box, BoxMaps]:  # fmt: skip
    """The shared quantities of the box around ``psi0`` (2,) for rotated ``[C | y]`` ``f`` (n, c1)."""
    d, zt = rot.d, rot.zt
    c0 = 1.0 / max(float(np.max(d)), 1e-300)
    s_lo, s_hi = _interval(float(psi0[0]), c0, half_width)
    psi1 = np.exp(chebyshev_nodes(s_lo, s_hi, count)) - c0
    dinv = 1.0 / (psi1[:, None] * d[None, :] + 1.0)  # (J, n)
    thetas, lmats = [], []
    for w in dinv:
        zw = zt * w[:, None]
        theta, q = np.linalg.eigh(zt.T @ zw)
        thetas.append(np.clip(theta, 0.0, None))
        lmats.append(q.T @ zw.T)
    theta = np.stack(thetas)  # (J, R)
    lmat = np.stack(lmats)  # (J, R, n)
    c2 = 1.0 / max(float(theta.max()), 1e-300)
    u_lo, u_hi = _interval(float(psi0[1]), c2, half_width)
    psi2 = np.exp(chebyshev_nodes(u_lo, u_hi, count)) - c2  # (L,)
    den = 1.0 + psi2[None, :, None] * theta[:, None, :]  # (J, L, R)
    h = psi2[None, :, None] / den
    wf = lmat @ f  # (J, R, c1)
    ffd = np.einsum("jn,na,nb->jab", dinv, f, f)
    ff = ffd[:, None] - np.einsum("jlr,jra,jrb->jlab", h, wf, wf)
    ld = -np.log(dinv).sum(axis=1)[:, None] + np.log(den).sum(axis=2)
    box = Box(
        jnp.asarray([[s_lo, s_hi], [u_lo, u_hi]]),
        jnp.asarray([c0, c2]),
        jnp.asarray(_chebyshev_matrix(count)),
        jnp.asarray(_chebyshev_matrix(count)),
        jnp.asarray(ff),
        jnp.asarray(ld),
    )
    hwf = (np.swapaxes(h, 1, 2)[..., None] * wf[:, :, None, :]).reshape(*wf.shape[:2], -1)
    return box, BoxMaps(lmat.reshape(-1, d.shape[0]), dinv, f, hwf, np.swapaxes(h, 1, 2))


def box_products(maps: BoxMaps, x_rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-model cross products at the box's nodes for rotated marker columns ``x_rot``
    (m, n, p1): ``xf`` (m, J, L, p1, c1) ``X'V^-1 [C | y]`` and ``xx`` (m, J, L, p1, p1)
    ``X'V^-1 X`` -- GEMMs over the individuals, then over the low-rank dimension."""
    m, n, p1 = x_rot.shape
    j, r, count = maps.h.shape
    c1 = maps.f.shape[1]
    flat = np.ascontiguousarray(np.moveaxis(x_rot, 1, 0)).reshape(n, m * p1)
    wx = (maps.lmat @ flat).reshape(j, r, m * p1)  # L_j X
    fw = (maps.dinv[:, :, None] * maps.f[None]).transpose(1, 0, 2).reshape(n, j * c1)
    xdf = (flat.T @ fw).reshape(m, p1, j, c1).transpose(0, 2, 1, 3)  # X'D_j^-1 [C | y]
    prods = (x_rot[:, :, :, None] * x_rot[:, :, None, :]).reshape(m, n, p1 * p1)
    xdx = np.einsum("mnq,jn->mjq", prods, maps.dinv).reshape(m, j, p1, p1)
    corr = np.matmul(np.swapaxes(wx, 1, 2), maps.hwf)  # (J, m p1, L c1)
    xf = xdf[:, :, None] - corr.reshape(j, m, p1, count, c1).transpose(1, 0, 3, 2, 4)
    wxx = (wx.reshape(j, r, m, p1)[..., :, None] * wx.reshape(j, r, m, p1)[..., None, :]).reshape(j, r, -1)
    corr = np.matmul(np.swapaxes(wxx, 1, 2), maps.h)  # (J, m p1 p1, L)
    xx = xdx[:, :, None] - corr.reshape(j, m, p1, p1, count).transpose(1, 0, 4, 2, 3)
    return xf, xx


def _assemble(ff, xf, xx):
    """``[C | X | y]`` cross products (..., k, k) from blocks ``ff`` (..., c1, c1) of ``[C | y]``,
    ``xf`` (..., p1, c1) and ``xx`` (..., p1, p1)."""
    c = ff.shape[-1] - 1
    top = jnp.concatenate([ff[..., :c, :c], jnp.swapaxes(xf[..., :c], -1, -2), ff[..., :c, c:]], -1)
    mid = jnp.concatenate([xf[..., :c], xx, xf[..., c:]], -1)
    bottom = jnp.concatenate([ff[..., c:, :c], jnp.swapaxes(xf[..., c:], -1, -2), ff[..., c:, c:]], -1)
    return jnp.concatenate([top, mid, bottom], -2)


#: derivative orders (in s, in u) of the interpolant used by Newton's method
_PAIRS = ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))


def _box_parts(x, box: Box, xf, xx, pairs):
    """``S`` (P, k, k) and ``log|V|`` (P,) of the interpolant and its derivatives ``pairs``."""
    orders = 1 + max(max(p) for p in pairs)
    om = _weights(x[0], box.bounds[0], box.cheb_s)[:orders]  # (o, J)
    nu = _weights(x[1], box.bounds[1], box.cheb_u)[:orders]  # (o, L)

    def contract(vals):  # (J, L, ...) -> (P, ...)
        inner = jnp.tensordot(om, vals, 1)  # (o, L, ...)
        return jnp.stack([jnp.tensordot(nu[b], inner[a], 1) for a, b in pairs])

    return _assemble(contract(box.ff), contract(xf), contract(xx)), contract(box.ld)


def _box_value(x, box: Box, xf, xx, n: int, method: str):
    s, ld = _box_parts(x, box, xf, xx, ((0, 0),))
    return profiled_value(s[0], ld[0], n, method)


def _box_derivatives(x, box: Box, xf, xx, n: int, method: str):
    """Profiled log-likelihood, gradient and Hessian in ``(s, u)``."""
    s, ld = _box_parts(x, box, xf, xx, _PAIRS)
    ds, d2s = s[1:3], jnp.stack([jnp.stack([s[3], s[4]]), jnp.stack([s[4], s[5]])])
    dld, d2ld = ld[1:3], jnp.stack([jnp.stack([ld[3], ld[4]]), jnp.stack([ld[4], ld[5]])])
    return profiled_derivatives(s[0], ds, d2s, ld[0], dld, d2ld, n, method)


@partial(jax.jit, static_argnames=("n", "method"))
def interpolated_fits(x0, box: Box, xf, xx, *, n: int, method: str):
    """Each model's optimum on the box's interpolant from ``x0 = (s0, u0)`` (2,):
    ``(FitOutput, inside)`` per model (leading axis m); ``inside`` is False where the optimum
    lies on an edge of the box that is not a bound of ``psi`` (refit)."""
    lower, upper = box.bounds[:, 0], box.bounds[:, 1]
    true_lo = jnp.log(jnp.exp(PSI_BOUNDS[0]) + box.offsets)
    true_hi = jnp.log(jnp.exp(PSI_BOUNDS[1]) + box.offsets)
    start = jnp.clip(x0, lower, upper)

    def one(xf_i, xx_i):
        sol = maximise(
            lambda x: _box_value(x, box, xf_i, xx_i, n, method),
            start,
            lower=lower,
            upper=upper,
            tol=TOL,
            max_iter=50,
            derivatives=lambda x: _box_derivatives(x, box, xf_i, xx_i, n, method),
        )
        s, ld = _box_parts(sol.value, box, xf_i, xx_i, ((0, 0),))
        est = profiled(s[0], ld[0], n, method)
        psi = jnp.exp(sol.value) - box.offsets
        gap = 1e-7 * (upper - lower)
        inside = jnp.all(((sol.value > lower + gap) | (lower <= true_lo + gap))
                         & ((sol.value < upper - gap) | (upper >= true_hi - gap)))  # fmt: skip
        return _to_fit(est, psi, sol.status, sol.n_steps), inside

    return jax.vmap(one)(xf, xx)


class LowRankScan:
    """Exact fits of models ``[base | extra[i]]`` under ``V = s_1 K + s_2 Z Z' + s_e I`` (see the
    module docstring), with the interface of the other exact fitters (``fit``, ``fit_null``);
    ``sigma2`` is returned in the order ``order`` (a permutation of ``(kinship, low rank,
    error)`` into the caller's components).

    Parameters
    ----------
    y : (n,) response.  rot : :class:`Rotated` (``K``'s eigendecomposition, ``U'Z``).
    method : ``"reml"`` or ``"ml"``.  order : (3,) position of each engine component in the
    caller's order.
    """

    name = "Newton on the low-rank interpolant around the null optimum"

    def __init__(self, y: np.ndarray, rot: Rotated, method: str, order=(0, 1, 2), *, count: int = N_NODES,
                 half_width: float = HALF_WIDTH):  # fmt: skip
        self.rot = rot
        self.method = method
        self.n = y.shape[0]
        self.y_rot = rot.u.T @ np.asarray(y, float)
        self.to_engine = np.asarray(order)  # engine component e is the caller's component order[e]
        self.order = np.argsort(self.to_engine)  # caller's component k is the engine's order[k]
        self.count = count
        self.half_width = half_width
        self._optima: dict[bytes, np.ndarray] = {}
        self._centre: tuple | None = None
        self.n_fallback = 0

    # ------------------------------------------------------------------ helpers
    def _t_from_sigma2(self, sigma2) -> np.ndarray:
        s = np.maximum(np.asarray(sigma2, float)[self.to_engine], 1e-300)
        return np.clip(np.log(s[:2] / s[2]), *PSI_BOUNDS)

    def _reorder(self, fit: FitOutput) -> FitOutput:
        return fit._replace(sigma2=np.asarray(fit.sigma2)[..., self.order])

    def _exact(self, t0s: list[np.ndarray], cols: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """Exact fits of up to ``FALLBACK_BATCH`` models with rotated columns ``[X | y]``."""
        pad = FALLBACK_BATCH - len(cols)
        skip = jnp.asarray(np.arange(FALLBACK_BATCH) >= len(cols))
        t0 = jnp.asarray(np.stack([*t0s, *[t0s[-1]] * pad]))
        a = jnp.asarray(np.stack([*cols, *[cols[-1]] * pad]))
        out, t = _exact_batch(t0, jnp.asarray(self.rot.d), jnp.asarray(self.rot.zt), a, skip,
                              n=self.n, method=self.method)  # fmt: skip
        return [np.asarray(v)[: len(cols)] for v in jax.device_get(out)], np.asarray(t)[: len(cols)]

    def _box(self, wide: bool) -> tuple[Box, BoxMaps]:
        """The box around the current centre (three times as wide with twice the nodes)."""
        boxes = self._centre[3]
        if wide not in boxes:
            scale = 3.0 if wide else 1.0
            boxes[wide] = prepare_box(self.rot, self._centre[2], self._centre[4], count=self.count * (1 + wide),
                                      half_width=scale * self.half_width)  # fmt: skip
        return boxes[wide]

    def _boxes(self, wide: bool, extra, chunk_size, progress):
        """Interpolated fits of ``[base | extra[i]]`` in the box around the centre: the six
        FitOutput fields (host arrays) and whether each optimum is inside the box."""
        m, n, p1 = extra.shape
        box, maps = self._box(wide)
        x0 = jnp.log(jnp.asarray(self._centre[4]) + box.offsets)
        size = max(1, min(chunk_size or DEFAULT_CHUNK, 1 << max(m - 1, 0).bit_length()))
        slab = max(size, SLAB // size * size)
        parts = []
        for s0 in range(0, m, slab):
            block = extra[s0 : s0 + slab]
            k = block.shape[0]
            flat = np.ascontiguousarray(np.moveaxis(block, 1, 0)).reshape(n, k * p1)
            x_rot = np.moveaxis((self.rot.u.T @ flat).reshape(n, k, p1), 0, 1)
            xf, xx = box_products(maps, x_rot)
            for start in range(0, k, size):
                arrays = [xf[start : start + size], xx[start : start + size]]
                used = arrays[0].shape[0]
                if used < size:
                    arrays = [np.concatenate([a, np.repeat(a[-1:], size - used, axis=0)]) for a in arrays]
                parts.append((interpolated_fits(x0, box, *arrays, n=self.n, method=self.method), used))
                if progress is not None:
                    progress(used)
        host = jax.device_get([p for p, _ in parts])
        fits = [np.concatenate([np.asarray(h[0][i])[:used] for h, (_, used) in zip(host, parts)]) for i in range(6)]
        ok = np.concatenate([np.asarray(h[1])[:used] for h, (_, used) in zip(host, parts)])
        return fits, ok & (fits[5] == Status.OK)

    # ------------------------------------------------------------------ interface
    def fit_null(self, design: np.ndarray, sigma_start: np.ndarray) -> FitOutput:
        """Exact fit of the model ``design`` (n, p) alone (leading axis 1)."""
        design = np.asarray(design, float)
        a = np.column_stack([self.rot.u.T @ design, self.y_rot])
        out, t = self._exact([self._t_from_sigma2(sigma_start)], [a])
        fit = FitOutput(*out)
        if int(fit.status[0]) == Status.OK:
            self._optima[design.tobytes()] = t[0]
        return self._reorder(fit)

    def fit(self, base, extra, sigma0, *, chunk_size=None, progress: Callable | None = None) -> FitOutput:
        """Models ``[base | extra[i]]`` (``extra`` (m, n, p1)), from the optimum of ``base``."""
        base = np.asarray(base, float)
        extra = np.asarray(extra, float)
        m, n, p1 = extra.shape
        key = base.tobytes()
        if base.shape[1] and key not in self._optima:
            self.fit_null(base, sigma0)
        t0 = self._optima.get(key, self._t_from_sigma2(sigma0))
        if self._centre is None or self._centre[0] != (key, t0.tobytes()):
            c_rot = self.rot.u.T @ base
            f = np.column_stack([c_rot, self.y_rot])
            self._centre = ((key, t0.tobytes()), c_rot, f, {}, np.exp(t0))
        c_rot = self._centre[1]
        fits, ok = self._boxes(False, extra, chunk_size, progress)
        redo = np.flatnonzero(~ok)
        if redo.size:  # optima outside the box: a box three times as wide, for them only
            wide, ok_w = self._boxes(True, extra[redo], None, None)
            for field, values in zip(fits, wide):
                field[redo] = values
            redo = redo[~ok_w]
        self.n_fallback = int(redo.size)
        for start in range(0, redo.size, FALLBACK_BATCH):
            sel = redo[start : start + FALLBACK_BATCH]
            cols = [np.column_stack([c_rot, self.rot.u.T @ extra[i], self.y_rot]) for i in sel]
            out, _ = self._exact([t0] * sel.size, cols)
            for field, values in zip(fits, out):
                field[sel] = values
        return self._reorder(FitOutput(*fits))


__all__ = [
    "HALF_WIDTH",
    "N_NODES",
    "LowRankScan",
    "Box",
    "Rotated",
    "box_products",
    "chebyshev_nodes",
    "exact_fit",
    "exact_parts",
    "interpolated_fits",
    "prepare_box",
    "rotate_components",
]
