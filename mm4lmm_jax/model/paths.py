"""Fitting paths: the shared set-up once, then marker models in fixed-size jitted chunks.

A batch of models is given as a shared design part ``base`` (n, p0) and per-model columns
``extra`` (m, n, p1); model ``i``'s design is ``[base | extra[i]]``.  Chunks are padded to a
fixed size so every chunk reuses one compiled program (no recompilation, no Python loop
over markers).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core.fit import FitOutput, fit_dense, fit_reduced, fit_rotated, fit_single
from ..core.reduced import ReducedShared, reduced_shared, reduced_system
from ..core.transforms import henderson_shared, joint_diagonalise
from .data import is_identity

_STATIC = ("method", "crit_var", "crit_loglik", "max_iter")


def _concat(base, extra_i):
    return jnp.concatenate([base, extra_i], axis=1)


@partial(jax.jit, static_argnames=_STATIC)
def _chunk_rotated(t, d, y_rot, logdet_k2, base_rot, extra, sigma0, *, method, crit_var, crit_loglik, max_iter):
    extra_rot = jnp.einsum("ij,cjk->cik", t, extra)
    fit = partial(
        fit_rotated, method=method, crit_var=crit_var, crit_loglik=crit_loglik, max_iter=max_iter, logdet_k2=logdet_k2
    )
    return jax.vmap(lambda e: fit(y_rot, _concat(base_rot, e), d, sigma0))(extra_rot)


@partial(jax.jit, static_argnames=_STATIC)
def _chunk_dense(y, covs, base, extra, sigma0, *, method, crit_var, crit_loglik, max_iter):
    fit = partial(fit_dense, method=method, crit_var=crit_var, crit_loglik=crit_loglik, max_iter=max_iter)
    return jax.vmap(lambda e: fit(y, _concat(base, e), covs, sigma0))(extra)


@partial(jax.jit, static_argnames=(*_STATIC, "whiten"))
def _chunk_henderson(
    shared: ReducedShared, l_inv, y_w, base_w, extra, sigma0, *, method, crit_var, crit_loglik, max_iter, whiten
):
    del method  # Henderson's path is ReML only
    if whiten:
        extra = jnp.einsum("ij,cjk->cik", l_inv, extra)
    fit = partial(fit_reduced, crit_var=crit_var, crit_loglik=crit_loglik, max_iter=max_iter)
    return jax.vmap(lambda e: fit(reduced_system(_concat(base_w, e), y_w, shared), sigma0))(extra)


@partial(jax.jit, static_argnames=_STATIC)
def _chunk_single(y_w, l_inv, logdet_v1, base_w, extra, sigma0, *, method, crit_var, crit_loglik, max_iter):
    del sigma0, crit_var, crit_loglik, max_iter
    extra_w = jnp.einsum("ij,cjk->cik", l_inv, extra)
    return jax.vmap(lambda e: fit_single(y_w, _concat(base_w, e), logdet_v1, method=method))(extra_w)


class FitPath:
    """A prepared data set for one path; :meth:`fit` runs a batch of models."""

    name: str = ""
    default_chunk: int = 64

    def __init__(self, y: np.ndarray, covs: list[np.ndarray], method: str):
        self.method = method
        self.n = y.shape[0]
        self._prepare(jnp.asarray(y), [jnp.asarray(c) for c in covs])

    def _prepare(self, y, covs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _chunk_fn(self, base) -> Callable:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(
        self,
        base: np.ndarray,
        extra: np.ndarray,
        sigma0: np.ndarray,
        *,
        crit_var: float,
        crit_loglik: float,
        max_iter: int,
        chunk_size: int | None = None,
        progress: Callable | None = None,
    ) -> FitOutput:
        """Fit ``m = extra.shape[0]`` models; returns a :class:`FitOutput` of NumPy arrays
        stacked over models."""
        m = extra.shape[0]
        chunk = max(1, min(chunk_size or self.default_chunk, m))
        static = dict(
            method=self.method, crit_var=float(crit_var), crit_loglik=float(crit_loglik), max_iter=int(max_iter)
        )
        fn = self._chunk_fn(jnp.asarray(base))
        sigma0 = jnp.asarray(sigma0, dtype=jnp.float64)
        outs = []
        for start in range(0, m, chunk):
            block = extra[start : start + chunk]
            if block.shape[0] < chunk:  # pad with copies of the last model: same compiled shape
                pad = np.repeat(block[-1:], chunk - block.shape[0], axis=0)
                block = np.concatenate([block, pad], axis=0)
            outs.append(fn(jnp.asarray(block), sigma0, **static))
            if progress is not None:
                progress(min(chunk, m - start))
        host = jax.device_get(outs)
        return FitOutput(*(np.concatenate(parts, axis=0)[:m] for parts in zip(*host)))


class RotatedPath(FitPath):
    """Two components: one joint diagonalisation shared by every model."""

    name = "two-component (joint diagonalisation)"
    default_chunk = 64

    def _prepare(self, y, covs):
        k2 = covs[1]
        is_eye = bool(jnp.array_equal(k2, jnp.eye(self.n)))
        self.rotation = joint_diagonalise(covs[0], None if is_eye else k2)
        self.y_rot = self.rotation.t @ y

    def _chunk_fn(self, base):
        r = self.rotation
        return partial(_chunk_rotated, r.t, r.d, self.y_rot, r.logdet_k2, r.t @ base)


class DensePath(FitPath):
    """Any number of components with dense ``n x n`` algebra (ML, or ReML without Henderson)."""

    name = "dense"

    def _prepare(self, y, covs):
        self.y = y
        self.covs = jnp.stack(covs)
        self.default_chunk = int(max(1, min(64, 2e8 // (8 * 6 * self.n * self.n))))

    def _chunk_fn(self, base):
        return partial(_chunk_dense, self.y, self.covs, base)


class HendersonPath(FitPath):
    """ReML through Henderson's mixed-model equations (``n > q + p``).

    The MM loop works on the reduced system of :mod:`mm4lmm_jax.core.reduced` (first
    random block eliminated in closed form); ``shared`` keeps the plain Henderson
    cross-products used by the inference functions.
    """

    name = "Henderson mixed-model equations"

    def __init__(self, y, z_list, g_list, r, method):
        self.method = method
        self.n = y.shape[0]
        r = np.asarray(r, dtype=float)
        self._inputs = (y, z_list, g_list, r)
        self.whiten = not is_identity(r)
        if self.whiten:
            chol = np.linalg.cholesky(0.5 * (r + r.T))
            l_inv = np.linalg.solve(chol, np.eye(self.n))
            logdet_r = 2.0 * np.sum(np.log(np.diag(chol)))
        else:
            l_inv, logdet_r = np.zeros((0, 0)), 0.0
        self.l_inv = jnp.asarray(l_inv)
        y_w = l_inv @ y if self.whiten else np.asarray(y, dtype=float)
        z_w = [l_inv @ z if self.whiten else z for z in z_list]
        self.y_w = jnp.asarray(y_w)
        self.reduced = reduced_shared(
            self.y_w, [jnp.asarray(z) for z in z_w], [jnp.asarray(g) for g in g_list], logdet_r
        )
        q = self.reduced.wr.shape[1]
        self.default_chunk = int(max(1, min(64, 2e8 // (8 * 4 * (q + 8) ** 2))))

    @cached_property
    def shared(self):
        """The plain Henderson cross-products (built on first use, by the inference functions)."""
        y, z_list, g_list, r = self._inputs
        return henderson_shared(
            jnp.asarray(y), [jnp.asarray(z) for z in z_list], [jnp.asarray(g) for g in g_list], jnp.asarray(r)
        )

    def _chunk_fn(self, base):
        base_w = self.l_inv @ base if self.whiten else base
        return partial(_chunk_henderson, self.reduced, self.l_inv, self.y_w, base_w, whiten=self.whiten)


class SinglePath(FitPath):
    """One component: closed form after whitening by ``V_1 = L L'``."""

    name = "one component (closed form)"
    default_chunk = 256

    def _prepare(self, y, covs):
        v1 = 0.5 * (covs[0] + covs[0].T)
        chol = jnp.linalg.cholesky(v1)
        self.l_inv = jax.scipy.linalg.solve_triangular(chol, jnp.eye(self.n), lower=True)
        self.y_w = self.l_inv @ y
        self.logdet_v1 = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))

    def _chunk_fn(self, base):
        return partial(_chunk_single, self.y_w, self.l_inv, self.logdet_v1, self.l_inv @ base)
