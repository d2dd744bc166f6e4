"""A differentiable fit: the MM solve forward, the implicit function theorem backward (pure JAX).

:func:`fit` solves the model with the structure :mod:`._structures` would choose for dense
covariances and MM4LMM's iterations (to a tight stopping rule), then attaches to the optimum
``sigma2*`` the derivative rule of the stationarity condition ``d l / d sigma2 = 0``: for a
perturbation of the data ``p = (y, x, covariances)``,

    ``d sigma2* = - H^-1 (d/dp  d l / d sigma2) dp``,   ``H = d2 l / d sigma2^2``,

one linear solve with the Hessian of the log-likelihood (:func:`._likelihood.loglik_dense`),
never a derivative of the loop.  Components at the boundary (below ``AT_ZERO`` of the total)
are held there: their sensitivity is zero and the others are solved on the free set (active
set), so a fit at the boundary has finite derivatives.  Everything computed from the optimum
(``beta``, ``var_beta``, ``loglik``) is an ordinary JAX function of ``sigma2*`` and the data,
so ``jax.grad``, ``jax.jacfwd``/``jacrev``, ``jax.jvp``, ``jit`` and ``vmap`` go through.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._information import gls_from_quad
from ._iterate import Stopping
from ._likelihood import loglik_dense
from ._quad import dense_quad
from ._structures import Dense, Single, TwoComponent
from ._transforms import joint_diagonalise

#: Stopping rule of :func:`fit`: the derivative rule holds at the optimum, so iterate to it.
TIGHT = Stopping(1e-10, 1e-10, 20000)

#: A component below this fraction of the total variance is held at the boundary.
AT_ZERO = 1e-6


class FitResult(NamedTuple):
    """``sigma2`` (K,), ``beta`` (p,), ``var_beta`` (p, p), ``loglik`` (full, with ``2 pi``),
    ``status`` (:class:`~._iterate.Status` code), ``n_steps``."""

    sigma2: jnp.ndarray
    beta: jnp.ndarray
    var_beta: jnp.ndarray
    loglik: jnp.ndarray
    status: jnp.ndarray
    n_steps: jnp.ndarray


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _optimum(method: str, sigma2, y, x, covs):
    """``sigma2`` itself (the optimum found by the solver), with the implicit derivative rule."""
    return sigma2


@_optimum.defjvp
def _optimum_jvp(method, primals, tangents):
    sigma2, y, x, covs = primals
    _, dy, dx, dcovs = tangents  # the optimum does not depend on where the solver started

    def score(y_, x_, c_):
        return jax.grad(loglik_dense)(sigma2, y_, x_, c_, method)

    hess = jax.hessian(loglik_dense)(sigma2, y, x, covs, method)
    _, mixed = jax.jvp(score, (y, x, covs), (dy, dx, dcovs))
    free = sigma2 > AT_ZERO * jnp.sum(jnp.abs(sigma2))
    both = free[:, None] & free[None, :]
    h_free = jnp.where(both, hess, jnp.eye(sigma2.shape[0], dtype=hess.dtype))
    d_sigma2 = -jnp.linalg.solve(h_free, jnp.where(free, mixed, 0.0))
    return sigma2, jnp.where(free, d_sigma2, 0.0)


def _structure(y, covs):
    k = covs.shape[0]
    if k == 1:
        return Single.prepare(y, [None], [covs[0]], [covs[0]])
    if k == 2:  # traceable: the general joint diagonalisation (no host check for K2 = I)
        rot = joint_diagonalise(covs[0], covs[1])
        return TwoComponent(rot.t, rot.d, rot.logdet_k2, rot.t @ y)
    return Dense.prepare(y, [None] * k, list(covs), list(covs))


@partial(jax.jit, static_argnames=("method", "stopping"))
def fit(y, x, covariances, *, method: str = "reml", stopping: Stopping = TIGHT, sigma0=None) -> FitResult:
    """Fit ``y = x beta + e``, ``e ~ N(0, sum_k sigma2_k covariances[k])`` and return a
    differentiable :class:`FitResult`.

    Parameters
    ----------
    y : (n,).  x : (n, p) full column rank.  covariances : (K, n, n) positive semi-definite,
        the error last (its sum with the others positive definite).
    method : ``"reml"`` or ``"ml"`` (static).  stopping : the MM stopping rule (static;
        default tight: the derivative rule assumes the optimum).  sigma0 : (K,) start
        (default ``var(y) / K``).

    One component: closed form; two: joint diagonalisation (``covariances[1]`` positive
    definite); three or more: dense algebra.  Works under ``jit`` and ``vmap``; ``grad`` and
    every JAX transformation give the derivatives of the optimum (module docstring).
    """
    covs = jnp.asarray(covariances)
    y = jnp.asarray(y)
    x = jnp.asarray(x)
    k = covs.shape[0]
    y_c, x_c, covs_c = (jax.lax.stop_gradient(a) for a in (y, x, covs))
    if sigma0 is None:
        sigma0 = jnp.full((k,), jnp.var(y_c, ddof=1) / k)
    structure = _structure(y_c, covs_c)
    out = structure.fit(structure.transform(x_c), jax.lax.stop_gradient(sigma0), method=method, stopping=stopping)
    sigma2 = _optimum(method, jax.lax.stop_gradient(out.sigma2), y, x, covs)
    a = jnp.concatenate([x, y[:, None]], axis=1)
    beta, var_beta = gls_from_quad(lambda s: dense_quad(s, a, covs), sigma2, x.shape[1])
    loglik = loglik_dense(sigma2, y, x, covs, method)
    return FitResult(sigma2, beta, 0.5 * (var_beta + var_beta.T), loglik, out.status, out.n_steps)


__all__ = ["AT_ZERO", "TIGHT", "FitResult", "fit"]
