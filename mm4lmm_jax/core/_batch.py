"""Batches of models on one covariance structure: fixed-size jitted chunks (pure JAX).

A batch is given as shared design columns ``base`` (n, p0) and per-model columns ``extra``
(m, n, p1); model ``i``'s design is ``[base | extra[i]]``.  Chunks are padded to a fixed size
so every chunk reuses one compiled program (no recompilation, no Python loop over markers
inside a chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._fit import FitOutput
from ._iterate import Stopping
from ._structures import Structure


@partial(jax.jit, static_argnames=("method", "stopping"))
def fit_chunk(structure: Structure, base_t, extra, sigma0, *, method: str, stopping: Stopping) -> FitOutput:
    """Fit the models ``[base | extra[i]]`` of one chunk: ``base_t`` the transformed shared
    columns (n, p0), ``extra`` (c, n, p1) untransformed, ``sigma0`` (K,) the start."""
    extra_t = structure.transform(extra)
    return jax.vmap(
        lambda e: structure.fit(jnp.concatenate([base_t, e], axis=1), sigma0, method=method, stopping=stopping)
    )(extra_t)


def fit_models(
    structure: Structure,
    base: np.ndarray,
    extra: np.ndarray,
    sigma0: np.ndarray,
    *,
    method: str,
    stopping: Stopping,
    chunk_size: int | None = None,
    progress: Callable | None = None,
) -> FitOutput:
    """Fit ``m = extra.shape[0]`` models in padded chunks; a :class:`FitOutput` of NumPy arrays
    stacked over models.  ``progress(k)`` is called after each chunk with its model count."""
    if method not in structure.methods:
        raise ValueError(f"the {structure.name} structure fits {structure.methods}, not {method!r}")
    m = extra.shape[0]
    chunk = max(1, min(chunk_size or structure.chunk_size(), m))
    base_t = structure.transform(jnp.asarray(base))
    sigma0 = jnp.asarray(sigma0, dtype=jnp.float64)
    outs = []
    for start in range(0, m, chunk):
        block = extra[start : start + chunk]
        if block.shape[0] < chunk:  # pad with copies of the last model: same compiled shape
            pad = np.repeat(block[-1:], chunk - block.shape[0], axis=0)
            block = np.concatenate([block, pad], axis=0)
        outs.append(fit_chunk(structure, base_t, jnp.asarray(block), sigma0, method=method, stopping=stopping))
        if progress is not None:
            progress(min(chunk, m - start))
    host = jax.device_get(outs)
    return FitOutput(*(np.concatenate(parts, axis=0)[:m] for parts in zip(*host)))


@partial(jax.jit, static_argnums=(0,))
def map_models(fn: Callable, structure: Structure, x, *args):
    """``fn(quad, p, *args_i)`` for every model (designs ``x`` (c, n, p) and per-model
    ``args``), compiled once per ``(fn, structure type)`` and shape.

    Structures with ``batch_by_vmap`` are vmapped (per-model algebra O(n p^2)); the others
    run the models one after the other with ``lax.map``: their per-model factorisations use
    the machine alone, and batched LAPACK calls inside derivative graphs can deadlock
    jaxlib 0.10's CPU thread pool.
    """

    def one(xi, *a):
        return fn(structure.quad(xi), xi.shape[1], *a)

    if structure.batch_by_vmap:
        return jax.vmap(one)(x, *args)
    return jax.lax.map(lambda packed: one(*packed), (x, *args))


__all__ = ["fit_chunk", "fit_models", "map_models"]
