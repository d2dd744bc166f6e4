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

from .gls import sym_inverse
from .mm import HendersonSystem


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


class HendersonShared(NamedTuple):
    """Parts of :class:`~mm4lmm_jax.core.mm.HendersonSystem` shared by all marker models:
    ``z`` (n, q), ``r_inv`` (n, n), ``rz`` (n, q) = ``R^-1 Z``, ``ry`` (n,) = ``R^-1 y`` and
    the ``G`` blocks (see ``HendersonSystem``)."""

    z: jnp.ndarray
    r_inv: jnp.ndarray
    rz: jnp.ndarray
    ry: jnp.ndarray
    zrz: jnp.ndarray
    zry: jnp.ndarray
    yry: jnp.ndarray
    g_inv: jnp.ndarray
    block: jnp.ndarray
    logdet_g: jnp.ndarray
    q_k: jnp.ndarray
    logdet_r: jnp.ndarray
    n_obs: jnp.ndarray


def henderson_shared(y, z_list, g_list, r) -> HendersonShared:
    """Set up Henderson's equations: ``z_list`` / ``g_list`` the random components
    (``Z_k`` (n, q_k), ``G_k`` (q_k, q_k) positive definite), ``r`` (n, n) the residual
    covariance (positive definite)."""
    z = jnp.concatenate(list(z_list), axis=1)
    r_inv, logdet_r = sym_inverse(r)
    inv_logdets = [sym_inverse(g) for g in g_list]
    q_k = [g.shape[0] for g in g_list]
    g_inv = jax.scipy.linalg.block_diag(*[gi for gi, _ in inv_logdets])
    block = jnp.concatenate([jnp.full((q,), k, dtype=jnp.int32) for k, q in enumerate(q_k)])
    rz = r_inv @ z
    ry = r_inv @ y
    return HendersonShared(
        z=z,
        r_inv=r_inv,
        rz=rz,
        ry=ry,
        zrz=z.T @ rz,
        zry=z.T @ ry,
        yry=jnp.dot(y, ry),
        g_inv=g_inv,
        block=block,
        logdet_g=jnp.stack([ld for _, ld in inv_logdets]),
        q_k=jnp.asarray(q_k, dtype=y.dtype),
        logdet_r=logdet_r,
        n_obs=jnp.asarray(y.shape[0], dtype=y.dtype),
    )


def henderson_system(x, shared: HendersonShared) -> HendersonSystem:
    """The per-model cross-products for design ``x`` (n, p)."""
    rx = shared.r_inv @ x
    return HendersonSystem(
        xrx=x.T @ rx,
        xrz=x.T @ shared.rz,
        xry=x.T @ shared.ry,
        zrz=shared.zrz,
        zry=shared.zry,
        yry=shared.yry,
        g_inv=shared.g_inv,
        block=shared.block,
        logdet_g=shared.logdet_g,
        q_k=shared.q_k,
        logdet_r=shared.logdet_r,
        n_obs=shared.n_obs,
    )


__all__ = [
    "HendersonShared",
    "Rotation",
    "henderson_shared",
    "henderson_system",
    "joint_diagonalise",
]
