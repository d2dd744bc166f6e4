"""Exact scans of three-component models with one low-rank component (the two-kinship engine).

Model: ``V = s_1 K + s_2 Z Z' + s_e I`` with ``K`` any kinship (n, n) and ``Z`` (n, R) of small
rank (a second kinship of low rank, iid group effects, hybrids' ``Z_p K_p Z_p'``); every model
``[C | X_m]`` has its own exact optimum in ``psi = (s_1 / s_e, s_2 / s_e)``.

With ``K = U diag(d) U'`` and every column rotated by ``U'`` once, ``V / s_e = D + psi_2 Zt Zt'``
(``D = psi_1 d + 1``, ``Zt = U'Z``), so by Woodbury ``A'V^-1A`` costs ``O(n R)`` per column
instead of ``O(n^2)``.  The dependence on ``psi_2`` is made exact and ``O(R)`` per model by the
eigendecomposition ``Zt' D^-1 Zt = Q diag(theta) Q'`` at fixed ``psi_1``:

    ``a' V^-1 b = a' D^-1 b - sum_r h_r w_ar w_br``,  ``h_r = psi_2 / (1 + psi_2 theta_r)``,
    ``w = Q' Zt' D^-1 a``,  ``log|V| = log|D| + sum_r log(1 + psi_2 theta_r)``.

That holds on ``J`` nodes ``psi_1^(j)`` shared by every model (one GEMM ``L_j X`` per node, ``L_j
= Q_j' Zt' D_j^-1``); between nodes, every entry of ``A'V^-1A`` and ``log|V|`` is interpolated in
``s = log(psi_1 + c0)`` (``c0 = 1 / max d``) by Chebyshev polynomials on ``[s0 - h, s0 + h]``
around the null optimum.  In ``s`` those functions are analytic in the strip ``|Im s| < pi``
(every singularity of ``V(psi_1)^-1`` lies at ``psi_1 + c0 <= 0``), so :data:`N_NODES` nodes over
:data:`HALF_WIDTH` interpolate them to about 1e-13 relative.  Newton's method on ``(s, log
psi_2)`` (derivatives exact in ``psi_2``, of the interpolant in ``s``) then finds each model's
optimum; a model whose optimum leaves the interval, or that does not converge, is refitted by
the exact evaluation (:func:`exact_parts`: one ``R x R`` Cholesky per step), as is the null
model.
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

#: nodes of the Chebyshev interpolation in ``s = log(psi_1 + c0)``
N_NODES = 10
#: half-width of the interpolation interval in ``s`` around the null optimum (a factor
#: ``e^0.7 = 2`` on ``psi_1 + c0``): further optima are refitted exactly
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
class Nodes(NamedTuple):
    """What every model shares at the nodes ``psi_1^(j)`` (j < J) of the interval ``[lo, hi]``
    in ``s = log(psi_1 + c0)``; ``[C | y]`` has ``c1`` columns.

    ``bounds`` (2,) ``(lo, hi)``; ``c0`` (); ``cheb`` (J, J) node values -> Chebyshev
    coefficients; ``theta`` (J, R); ``wf`` (J, R, c1) ``L_j [C | y]``; ``wfwf`` (J, R, c1 c1) its
    row outer products; ``ffd`` (J, c1, c1) ``[C | y]' D_j^-1 [C | y]``; ``ldd`` (J,) ``log|D_j|``.
    """

    bounds: jnp.ndarray
    c0: jnp.ndarray
    cheb: jnp.ndarray
    theta: jnp.ndarray
    wf: jnp.ndarray
    wfwf: jnp.ndarray
    ffd: jnp.ndarray
    ldd: jnp.ndarray


class NodeMaps(NamedTuple):
    """Host-side maps of marker columns at the nodes: ``lmat`` (J R, n) the stacked ``L_j``,
    ``dinv`` (J, n) the weights ``1 / D_j``, ``f`` (n, c1) the rotated ``[C | y]``."""

    lmat: np.ndarray
    dinv: np.ndarray
    f: np.ndarray


def chebyshev_nodes(lo: float, hi: float, count: int) -> np.ndarray:
    """Chebyshev points of the second kind on ``[lo, hi]`` (count,), both ends included."""
    x = np.cos(np.pi * np.arange(count) / (count - 1))
    return 0.5 * (lo + hi) + 0.5 * (hi - lo) * x


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


def interval(d: np.ndarray, psi1_0: float, half_width: float = HALF_WIDTH) -> tuple[float, float, float]:
    """``(c0, lo, hi)``: the interpolation interval in ``s = log(psi_1 + c0)`` around ``psi1_0``,
    within the ratio bounds ``PSI_BOUNDS``."""
    c0 = 1.0 / max(float(np.max(d)), 1e-300)
    s_min, s_max = (float(np.log(np.exp(b) + c0)) for b in PSI_BOUNDS)
    s0 = float(np.log(min(max(psi1_0, np.exp(PSI_BOUNDS[0])), np.exp(PSI_BOUNDS[1])) + c0))
    return c0, max(s0 - half_width, s_min), min(s0 + half_width, s_max)


def prepare_nodes(rot: Rotated, f: np.ndarray, psi1_0: float, *, count: int = N_NODES,
                  half_width: float = HALF_WIDTH) -> tuple[Nodes, NodeMaps]:  # fmt: skip
    """The shared node quantities for rotated ``[C | y]`` ``f`` (n, c1) around ``psi1_0``."""
    d, zt = rot.d, rot.zt
    c0, lo, hi = interval(d, psi1_0, half_width)
    s = chebyshev_nodes(lo, hi, count)
    psi1 = np.exp(s) - c0
    dinv = 1.0 / (psi1[:, None] * d[None, :] + 1.0)  # (J, n)
    thetas, lmats = [], []
    for w in dinv:
        zw = zt * w[:, None]
        theta, q = np.linalg.eigh(zt.T @ zw)
        thetas.append(np.clip(theta, 0.0, None))
        lmats.append(q.T @ zw.T)
    lmat = np.stack(lmats)  # (J, R, n)
    wf = lmat @ f  # (J, R, c1)
    ffd = np.einsum("jn,na,nb->jab", dinv, f, f)
    x = np.cos(np.pi * np.arange(count) / (count - 1))
    vander = np.polynomial.chebyshev.chebvander(x, count - 1)  # (J, J): T_k(x_j)
    nodes = Nodes(
        jnp.asarray([lo, hi]),
        jnp.asarray(c0),
        jnp.asarray(np.linalg.inv(vander)),
        jnp.asarray(np.stack(thetas)),
        jnp.asarray(wf),
        jnp.asarray((wf[..., :, None] * wf[..., None, :]).reshape(*wf.shape[:2], -1)),
        jnp.asarray(ffd),
        jnp.asarray(-np.log(dinv).sum(axis=1)),
    )
    return nodes, NodeMaps(lmat.reshape(-1, d.shape[0]), dinv, f)


def node_products(maps: NodeMaps, x_rot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-model quantities at the nodes for rotated marker columns ``x_rot`` (m, n, p1):
    ``wx`` (m, J, R, p1) ``L_j X``, ``xdf`` (m, J, p1, c1) ``X'D_j^-1 [C | y]`` and ``xdx``
    (m, J, p1, p1) ``X'D_j^-1 X`` -- three GEMMs over the individuals."""
    m, n, p1 = x_rot.shape
    j = maps.dinv.shape[0]
    c1 = maps.f.shape[1]
    flat = np.ascontiguousarray(np.moveaxis(x_rot, 1, 0)).reshape(n, m * p1)
    wx = (maps.lmat @ flat).reshape(j, -1, m, p1).transpose(2, 0, 1, 3)
    wf = (maps.dinv[:, :, None] * maps.f[None]).transpose(1, 0, 2).reshape(n, j * c1)
    xdf = (flat.T @ wf).reshape(m, p1, j, c1).transpose(0, 2, 1, 3)
    prods = (x_rot[:, :, :, None] * x_rot[:, :, None, :]).reshape(m, n, p1 * p1)
    xdx = np.einsum("mnq,jn->mjq", prods, maps.dinv).reshape(m, j, p1, p1)
    return wx, xdf, xdx


def _assemble(ff, xf, xx):
    """``[C | X | y]`` cross products (..., k, k) from blocks ``ff`` (..., c1, c1) of ``[C | y]``,
    ``xf`` (..., p1, c1) and ``xx`` (..., p1, p1)."""
    c = ff.shape[-1] - 1
    top = jnp.concatenate([ff[..., :c, :c], jnp.swapaxes(xf[..., :c], -1, -2), ff[..., :c, c:]], -1)
    mid = jnp.concatenate([xf[..., :c], xx, xf[..., c:]], -1)
    bottom = jnp.concatenate([ff[..., c:, :c], jnp.swapaxes(xf[..., c:], -1, -2), ff[..., c:, c:]], -1)
    return jnp.concatenate([top, mid, bottom], -2)


def _node_values(psi2, nodes: Nodes, wx, xdf, xdx, orders: int):
    """``S`` (orders, J, k, k) and ``log|V|`` (orders, J) at every node and their first
    ``orders - 1`` derivatives in ``psi_2`` (exact)."""
    th = nodes.theta
    den = 1.0 + psi2 * th
    hs = [psi2 / den, 1.0 / den**2, -2.0 * th / den**3][:orders]
    lds = [nodes.ldd + jnp.sum(jnp.log(den), -1), jnp.sum(th / den, -1), -jnp.sum((th / den) ** 2, -1)][:orders]
    h = jnp.stack(hs)  # (o, J, R)
    c1 = nodes.ffd.shape[-1]
    ff = -jnp.einsum("ojr,jrq->ojq", h, nodes.wfwf).reshape(orders, -1, c1, c1)
    hx = h[..., None] * wx[None]  # (o, J, R, p1)
    xf = -jnp.einsum("ojrp,jrc->ojpc", hx, nodes.wf)
    xx = -jnp.einsum("ojrp,jrq->ojpq", hx, wx)
    ff = ff.at[0].add(nodes.ffd)
    xf = xf.at[0].add(xdf)
    xx = xx.at[0].add(xdx)
    return _assemble(ff, xf, xx), jnp.stack(lds)


def _weights(s, nodes: Nodes, count: int):
    """Interpolation weights of the nodes at ``s`` and their first two ``s``-derivatives (3, J)."""
    lo, hi = nodes.bounds[0], nodes.bounds[1]
    scale = 2.0 / (hi - lo)
    basis = _chebyshev_basis((s - lo) * scale - 1.0, count)  # (3, J) in x
    return (basis @ nodes.cheb) * jnp.stack([1.0, scale, scale**2])[:, None]


def _interp_value(x, nodes: Nodes, wx, xdf, xdx, n: int, method: str):
    count = nodes.cheb.shape[0]
    om = _weights(x[0], nodes, count)[0]
    s_nodes, ld_nodes = _node_values(x[1], nodes, wx, xdf, xdx, 1)
    return jnp.tensordot(om, s_nodes[0], 1), jnp.dot(om, ld_nodes[0])


def _interp_derivatives(x, nodes: Nodes, wx, xdf, xdx, n: int, method: str):
    """Profiled log-likelihood, gradient and Hessian in ``(s, psi_2)``."""
    count = nodes.cheb.shape[0]
    om = _weights(x[0], nodes, count)
    s_n, ld_n = _node_values(x[1], nodes, wx, xdf, xdx, 3)

    def comb(a, b, vals):  # d^a/ds^a d^b/dpsi2^b
        return jnp.tensordot(om[a], vals[b], 1)

    s00, s10, s20 = comb(0, 0, s_n), comb(1, 0, s_n), comb(2, 0, s_n)
    s01, s11, s02 = comb(0, 1, s_n), comb(1, 1, s_n), comb(0, 2, s_n)
    l00, l10, l20 = comb(0, 0, ld_n), comb(1, 0, ld_n), comb(2, 0, ld_n)
    l01, l11, l02 = comb(0, 1, ld_n), comb(1, 1, ld_n), comb(0, 2, ld_n)
    ds = jnp.stack([s10, s01])
    d2s = jnp.stack([jnp.stack([s20, s11]), jnp.stack([s11, s02])])
    dld = jnp.stack([l10, l01])
    d2ld = jnp.stack([jnp.stack([l20, l11]), jnp.stack([l11, l02])])
    return profiled_derivatives(s00, ds, d2s, l00, dld, d2ld, n, method)


@partial(jax.jit, static_argnames=("n", "method"))
def interpolated_fits(x0, nodes: Nodes, wx, xdf, xdx, *, n: int, method: str):
    """Each model's optimum on the interpolant from ``x0 = (s0, psi2_0)`` (2,):
    ``(FitOutput, inside)`` per model (leading axis m); ``inside`` is False where the optimum
    lies on an end of the interval that is not a bound of ``psi_1`` (refit exactly)."""
    lo, hi = nodes.bounds[0], nodes.bounds[1]
    s_min, s_max = (jnp.log(jnp.exp(b) + nodes.c0) for b in PSI_BOUNDS)
    # psi_2 itself (not its log): at the bound psi_2 = 1e-8 the likelihood's slope in log psi_2
    # vanishes and Newton would crawl; in psi_2 the coordinate is held there at once
    lower = jnp.stack([lo, jnp.exp(PSI_BOUNDS[0])])
    upper = jnp.stack([hi, jnp.exp(PSI_BOUNDS[1])])
    start = jnp.clip(x0, lower, upper)

    def one(wx_i, xdf_i, xdx_i):
        sol = maximise(
            lambda x: profiled_value(*_interp_value(x, nodes, wx_i, xdf_i, xdx_i, n, method), n, method),
            start,
            lower=lower,
            upper=upper,
            tol=TOL,
            max_iter=50,
            derivatives=lambda x: _interp_derivatives(x, nodes, wx_i, xdf_i, xdx_i, n, method),
        )
        est = profiled(*_interp_value(sol.value, nodes, wx_i, xdf_i, xdx_i, n, method), n, method)
        s = sol.value[0]
        psi = jnp.stack([jnp.exp(s) - nodes.c0, sol.value[1]])
        gap = 1e-7 * (hi - lo)
        inside = ((s > lo + gap) | (lo <= s_min + gap)) & ((s < hi - gap) | (hi >= s_max - gap))
        return _to_fit(est, psi, sol.status, sol.n_steps), inside

    return jax.vmap(one)(wx, xdf, xdx)


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
            nodes, maps = prepare_nodes(self.rot, f, float(np.exp(t0[0])), count=self.count,
                                        half_width=self.half_width)  # fmt: skip
            self._centre = ((key, t0.tobytes()), nodes, maps, c_rot)
        _, nodes, maps, c_rot = self._centre
        x0 = jnp.asarray([np.log(np.exp(t0[0]) + float(nodes.c0)), np.exp(t0[1])])
        size = max(1, min(chunk_size or DEFAULT_CHUNK, 1 << max(m - 1, 0).bit_length()))
        parts, inside = [], []
        for s0 in range(0, m, max(size, SLAB // size * size)):
            block = extra[s0 : s0 + max(size, SLAB // size * size)]
            k = block.shape[0]
            flat = np.ascontiguousarray(np.moveaxis(block, 1, 0)).reshape(n, k * p1)
            x_rot = np.moveaxis((self.rot.u.T @ flat).reshape(n, k, p1), 0, 1)
            wx, xdf, xdx = node_products(maps, x_rot)
            for start in range(0, k, size):
                sl = slice(start, start + size)
                arrays = [wx[sl], xdf[sl], xdx[sl]]
                used = arrays[0].shape[0]
                if used < size:
                    arrays = [np.concatenate([a, np.repeat(a[-1:], size - used, axis=0)]) for a in arrays]
                out, ok = interpolated_fits(x0, nodes, *(jnp.asarray(a) for a in arrays), n=self.n, method=self.method)
                parts.append(out)
                inside.append((ok, used))
                if progress is not None:
                    progress(used)
        host = jax.device_get([(p, i[0]) for p, i in zip(parts, inside)])
        fits = [np.concatenate([np.asarray(h[0][f])[: i[1]] for h, i in zip(host, inside)]) for f in range(6)]
        ok = np.concatenate([np.asarray(h[1])[: i[1]] for h, i in zip(host, inside)])
        ok &= fits[5] == Status.OK
        redo = np.flatnonzero(~ok)
        self.n_fallback = int(redo.size)
        if redo.size:
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
    "Nodes",
    "Rotated",
    "chebyshev_nodes",
    "exact_fit",
    "exact_parts",
    "interpolated_fits",
    "interval",
    "node_products",
    "prepare_nodes",
    "rotate_components",
]
