"""Shared set-up computed once per data set, before any model is fitted (pure JAX).

* :func:`joint_diagonalise` -- for two components ``V = s1 K1 + s2 K2`` (``K2`` positive
  definite): one eigendecomposition, shared by every marker model.
* :func:`henderson_system` -- cross-products for Henderson's mixed-model equations.

Eigendecompositions are treated as data: never differentiate through them (``eigh``
gradients are undefined for the repeated eigenvalues that kinships have).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from ._gls import sym_inverse
from ._mm import HendersonSystem


class Rotation(NamedTuple):
    """Joint diagonalisation of ``(K1, K2)``: ``T K1 T' = diag(d)``, ``T K2 T' = I``.

    Fields: ``t`` (n, n) the rotation; ``d`` (n,) eigenvalues (ascending);
    ``logdet_k2`` scalar ``log |K2|``.
    """

    t: jnp.ndarray
    d: jnp.ndarray
    logdet_k2: jnp.ndarray


def joint_diagonalise(k1, k2=None) -> Rotation:
    """Rotation for two components; ``k2=None`` means the identity (the usual error term)."""
    k1 = jax.lax.stop_gradient(0.5 * (k1 + k1.T))
    if k2 is None:
        d, u = jnp.linalg.eigh(k1)
        return Rotation(u.T, d, jnp.zeros((), k1.dtype))
    k2 = jax.lax.stop_gradient(0.5 * (k2 + k2.T))
    chol = jnp.linalg.cholesky(k2)
    a = solve_triangular(chol, solve_triangular(chol, k1, lower=True).T, lower=True)
    d, q = jnp.linalg.eigh(0.5 * (a + a.T))
    t = solve_triangular(chol, q, lower=True, trans="T").T  # Q' L^-1
    return Rotation(t, d, 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))))


def henderson_system(x, y, z_list, g_list, r) -> HendersonSystem:
    """Cross-products of Henderson's equations (the plain, unreduced MME: the reference algebra
    of :class:`~.structures.Henderson`) for design ``x`` (n, p), response ``y`` (n,), random
    components ``Z_k`` (n, q_k) with ``G_k`` (q_k, q_k) positive definite, and the residual
    covariance ``r`` (n, n) positive definite."""
    z = jnp.concatenate(list(z_list), axis=1)
    r_inv, logdet_r = sym_inverse(r)
    inv_logdets = [sym_inverse(g) for g in g_list]
    q_k = [g.shape[0] for g in g_list]
    rx, rz, ry = r_inv @ x, r_inv @ z, r_inv @ y
    return HendersonSystem(
        xrx=x.T @ rx,
        xrz=x.T @ rz,
        xry=x.T @ ry,
        zrz=z.T @ rz,
        zry=z.T @ ry,
        yry=jnp.dot(y, ry),
        g_inv=jax.scipy.linalg.block_diag(*[gi for gi, _ in inv_logdets]),
        block=jnp.concatenate([jnp.full((q,), k, dtype=jnp.int32) for k, q in enumerate(q_k)]),
        logdet_g=jnp.stack([ld for _, ld in inv_logdets]),
        q_k=jnp.asarray(q_k, dtype=y.dtype),
        logdet_r=logdet_r,
        n_obs=jnp.asarray(y.shape[0], dtype=y.dtype),
    )


__all__ = [
    "Rotation",
    "henderson_system",
    "joint_diagonalise",
]
