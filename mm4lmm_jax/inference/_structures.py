"""From a fitted :class:`~mm4lmm_jax.FittedModels` to batched, jitted inference computations.

A fit keeps its data and its prepared covariance structure (:mod:`mm4lmm_jax.core._structures`);
:func:`structures_for` gives the structures to compute each model with, and
:func:`design_chunks` walks the models' designs in fixed-size groups, so every model of a
scan is handled in a few calls of :func:`mm4lmm_jax.core._batch.map_models`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..core._structures import Dense, Structure
from ._fitted import FittedModels


def structure_of(fit: FittedModels) -> Structure:
    """The prepared :class:`~mm4lmm_jax.core._structures.Structure` a fit was computed with."""
    if fit.problem is None:
        raise ValueError("this result carries no data: refit it with mmest to run inference")
    return fit.problem.structure.for_inference()


#: A variance component whose ratio to the error variance is below this is at the boundary
#: for inference: the Henderson form's information and Kenward-Roger ingredients are built
#: from terms of order ``1 / ratio^2`` that cancel, so such models are computed in the dense
#: form instead (the same numbers wherever both are accurate; see ``tests/test_inference.py``).
BOUNDARY_RATIO = 1e-3


def boundary_models(fit: FittedModels, ratio: float | None = None) -> np.ndarray:
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


def dense_structure(fit: FittedModels) -> Dense:
    """The dense form of a fit's covariance structure (``V`` built from its components)."""
    prob = fit.problem
    comps = prob.components
    return Dense.prepare(prob.y, comps.z_list, comps.v_list, comps.covariances())


def structures_for(fit: FittedModels, index: np.ndarray) -> list[tuple[Structure, np.ndarray]]:
    """The structures to compute models ``index`` with: the fit's own, except the dense form
    for models at the boundary (:data:`BOUNDARY_RATIO`) when the fit's structure is not
    ``stable_at_boundary``."""
    struct = structure_of(fit)
    index = np.asarray(index)
    if struct.stable_at_boundary:
        return [(struct, index)]
    edge = boundary_models(fit)[index]
    out = []
    if (~edge).any():
        out.append((struct, index[~edge]))
    if edge.any():
        out.append((dense_structure(fit), index[edge]))
    return out


@dataclass(frozen=True)
class DesignChunk:
    """Models ``index`` (c,) sharing one coefficient layout, with designs ``x`` (c, n, p);
    the first ``n_valid`` entries are real, the rest repeat the last model (padding)."""

    index: np.ndarray
    x: np.ndarray
    n_valid: int


def model_design(fit: FittedModels, i: int) -> np.ndarray:
    """The (n, p) design of model ``i``."""
    prob = fit.problem
    mk = prob.markers
    if mk is None:
        return prob.null.matrix
    if mk.extra is not None:
        return np.concatenate([mk.base.matrix, mk.extra[i]], axis=1)
    return mk.designs[i].matrix


def layout_groups(fit: FittedModels) -> list[np.ndarray]:
    """Model indices grouped by identical coefficient layout (names and term indices)."""
    groups: dict[tuple, list[int]] = {}
    for i, (names, attr) in enumerate(zip(fit.coef_names, fit.attrs)):
        key = (tuple(names), tuple(np.asarray(attr).tolist()))
        groups.setdefault(key, []).append(i)
    return [np.asarray(v) for v in groups.values()]


def design_chunks(fit: FittedModels, index: np.ndarray, chunk: int) -> Iterator[DesignChunk]:
    """Designs of the models in ``index`` (one layout), ``chunk`` at a time, padded to a
    fixed size by repeating the last model (one compiled shape for the whole scan)."""
    size = min(chunk, len(index))
    for start in range(0, len(index), size):
        idx = index[start : start + size]
        n_valid = len(idx)
        if n_valid < size:
            idx = np.concatenate([idx, np.repeat(idx[-1:], size - n_valid)])
        yield DesignChunk(idx, _designs(fit, idx), n_valid)


def _designs(fit: FittedModels, idx: np.ndarray) -> np.ndarray:
    mk = fit.problem.markers
    if mk is not None and mk.extra is not None:  # shared columns + per-model columns
        base = np.broadcast_to(mk.base.matrix, (len(idx), *mk.base.matrix.shape))
        return np.concatenate([base, mk.extra[idx]], axis=2)
    return np.stack([model_design(fit, int(i)) for i in idx])


__all__ = [
    "AT_ZERO",
    "BOUNDARY_RATIO",
    "DesignChunk",
    "boundary_models",
    "components_at_zero",
    "dense_structure",
    "design_chunks",
    "layout_groups",
    "model_design",
    "structure_of",
    "structures_for",
]
