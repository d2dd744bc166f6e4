"""From a fitted :class:`~mm4lmm_jax.MMEstResult` to batched, jitted inference computations.

A fit remembers its data and the prepared fitting path (the joint diagonalisation, the
Henderson cross-products, or the dense covariances).  :class:`Structure` turns them into
the ``quad`` functions of :mod:`mm4lmm_jax.core.structure`, and :func:`design_chunks`
walks the models' designs in fixed-size groups, so every model of a scan is handled in a
few vmapped calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core.structure import dense_quad, henderson_quad, rotated_quad
from ..model.results import MMEstResult


@dataclass(frozen=True)
class Structure:
    """The covariance structure of a fit, as jit-friendly arrays.

    ``kind`` is ``"rotated"`` (two components, joint diagonalisation), ``"henderson"``
    (``V = s_e R + Z G Z'``) or ``"dense"``; ``shared`` the arrays of that kind.
    """

    kind: str
    shared: tuple
    n: int


def structure_of(fit: MMEstResult) -> Structure:
    """The :class:`Structure` a fit was computed with (reusing its prepared path)."""
    prob = fit.problem
    if prob is None:
        raise ValueError("this result carries no data: refit it with mmest to run inference")
    engine = prob.engine
    n = prob.y.shape[0]
    y = jnp.asarray(prob.y)
    if fit.path == "rotated" and engine is not None:
        r = engine.rotation
        return Structure("rotated", (r.t, r.d, r.logdet_k2, engine.y_rot), n)
    if fit.path == "henderson" and engine is not None:
        sh = engine.shared
        return Structure(
            "henderson",
            (y, sh.r_inv, sh.rz, sh.zrz, sh.g_inv, sh.block, sh.logdet_g, sh.q_k, sh.logdet_r, sh.n_obs),
            n,
        )
    covs = jnp.stack([jnp.asarray(c) for c in prob.components.covariances()])
    return Structure("dense", (y, covs), n)


#: A variance component whose ratio to the error variance is below this is at the boundary
#: for inference: the Henderson form's information and Kenward-Roger ingredients are built
#: from terms of order ``1 / ratio^2`` that cancel, so such models are computed in the dense
#: form instead (the same numbers wherever both are accurate; see ``tests/test_inference.py``).
BOUNDARY_RATIO = 1e-3


def boundary_models(fit: MMEstResult, ratio: float | None = None) -> np.ndarray:
    """(m,) whether some variance component of each model (other than the last, the error)
    is below ``ratio`` (default :data:`BOUNDARY_RATIO`) times the error variance."""
    ratio = BOUNDARY_RATIO if ratio is None else ratio
    s2 = np.asarray(fit.sigma2_array, dtype=float)
    if s2.shape[1] < 2:
        return np.zeros(s2.shape[0], bool)
    error = np.maximum(s2[:, -1:], np.finfo(float).tiny)
    return np.any(s2[:, :-1] < ratio * error, axis=1)


#: A variance component below this fraction of the total variance is reported as at the
#: boundary of the parameter space (``summary()``, ``mmvcov``): its estimate is zero to the
#: fit's precision, and the normal approximation behind its standard error does not hold there.
AT_ZERO = 1e-6


def components_at_zero(sigma2) -> list[int]:
    """Positions of the components of one model at the boundary (:data:`AT_ZERO`)."""
    s2 = np.asarray(sigma2, dtype=float)
    total = float(np.sum(np.abs(s2)))
    return [k for k, v in enumerate(s2) if v <= AT_ZERO * total]


def dense_structure(fit: MMEstResult) -> Structure:
    """The dense form of a fit's covariance structure (``V`` built from its components)."""
    prob = fit.problem
    covs = jnp.stack([jnp.asarray(c) for c in prob.components.covariances()])
    return Structure("dense", (jnp.asarray(prob.y), covs), prob.y.shape[0])


def structures_for(fit: MMEstResult, index: np.ndarray) -> list[tuple[Structure, np.ndarray]]:
    """The structures to compute models ``index`` with: the fit's own, except the dense form
    for Henderson-form models at the boundary (:data:`BOUNDARY_RATIO`)."""
    struct = structure_of(fit)
    index = np.asarray(index)
    if struct.kind != "henderson":
        return [(struct, index)]
    edge = boundary_models(fit)[index]
    out = []
    if (~edge).any():
        out.append((struct, index[~edge]))
    if edge.any():
        out.append((dense_structure(fit), index[edge]))
    return out


def quad_for(kind: str, shared: tuple, x):
    """``sigma2 -> (M, log|V|)`` for one model's design ``x`` (n, p) (traceable)."""
    if kind == "rotated":
        t, d, logdet_k2, y_rot = shared
        a_rot = jnp.concatenate([t @ x, y_rot[:, None]], axis=1)
        return partial(rotated_quad, a_rot=a_rot, d=d, logdet_k2=logdet_k2)
    if kind == "henderson":
        y, r_inv, rz, zrz, g_inv, block, logdet_g, q_k, logdet_r, n_obs = shared
        a = jnp.concatenate([x, y[:, None]], axis=1)
        ara = a.T @ (r_inv @ a)
        return partial(
            henderson_quad,
            ara=0.5 * (ara + ara.T),
            arz=a.T @ rz,
            zrz=zrz,
            g_inv=g_inv,
            block=block,
            logdet_g=logdet_g,
            q_k=q_k,
            logdet_r=logdet_r,
            n_obs=n_obs,
        )
    y, covs = shared
    a = jnp.concatenate([x, y[:, None]], axis=1)
    return partial(dense_quad, a=a, covs=covs)


@dataclass(frozen=True)
class DesignChunk:
    """Models ``index`` (c,) sharing one coefficient layout, with designs ``x`` (c, n, p);
    the first ``n_valid`` entries are real, the rest repeat the last model (padding)."""

    index: np.ndarray
    x: np.ndarray
    n_valid: int


def model_design(fit: MMEstResult, i: int) -> np.ndarray:
    """The (n, p) design of model ``i``."""
    prob = fit.problem
    mk = prob.markers
    if mk is None:
        return prob.null.matrix
    if mk.extra is not None:
        return np.concatenate([mk.base.matrix, mk.extra[i]], axis=1)
    return mk.designs[i].matrix


def dense_covariance(fit: MMEstResult, sigma2) -> np.ndarray:
    """``V = sum_k sigma2[k] Z_k R_k Z_k'`` (n, n) of the fit's data (NumPy)."""
    return sum(s * c for s, c in zip(sigma2, fit.problem.components.covariances()))


def layout_groups(fit: MMEstResult) -> list[np.ndarray]:
    """Model indices grouped by identical coefficient layout (names and term indices)."""
    groups: dict[tuple, list[int]] = {}
    for i, (names, attr) in enumerate(zip(fit.coef_names, fit.attrs)):
        key = (tuple(names), tuple(np.asarray(attr).tolist()))
        groups.setdefault(key, []).append(i)
    return [np.asarray(v) for v in groups.values()]


def design_chunks(fit: MMEstResult, index: np.ndarray, chunk: int) -> Iterator[DesignChunk]:
    """Designs of the models in ``index`` (one layout), ``chunk`` at a time, padded to a
    fixed size by repeating the last model (one compiled shape for the whole scan)."""
    size = min(chunk, len(index))
    for start in range(0, len(index), size):
        idx = index[start : start + size]
        n_valid = len(idx)
        if n_valid < size:
            idx = np.concatenate([idx, np.repeat(idx[-1:], size - n_valid)])
        yield DesignChunk(idx, _designs(fit, idx), n_valid)


def _designs(fit: MMEstResult, idx: np.ndarray) -> np.ndarray:
    mk = fit.problem.markers
    if mk is not None and mk.extra is not None:  # shared columns + per-model columns
        base = np.broadcast_to(mk.base.matrix, (len(idx), *mk.base.matrix.shape))
        return np.concatenate([base, mk.extra[idx]], axis=2)
    return np.stack([model_design(fit, int(i)) for i in idx])


@partial(jax.jit, static_argnums=(0, 1))
def run_batched(fn, kind: str, shared: tuple, x, *args):
    """``fn(quad, p, *args_i)`` for every model (designs ``x`` (c, n, p) and the per-model
    ``args``), jit-compiled once per ``(fn, kind)`` and shape.

    The rotated structure is vmapped (its per-model algebra is O(n p^2)).  The Henderson
    and dense structures run the models one after the other with ``lax.map``: their
    per-model factorisations are large enough to use the machine alone, and batched
    LAPACK calls inside derivative graphs can deadlock jaxlib 0.10's CPU thread pool.
    """

    def one(xi, *a):
        return fn(quad_for(kind, shared, xi), xi.shape[1], *a)

    if kind == "rotated":
        return jax.vmap(one)(x, *args)
    return jax.lax.map(lambda packed: one(*packed), (x, *args))


__all__ = [
    "DesignChunk",
    "dense_covariance",
    "Structure",
    "run_batched",
    "design_chunks",
    "layout_groups",
    "model_design",
    "quad_for",
]
