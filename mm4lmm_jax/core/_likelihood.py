"""Closed-form ReML / ML log-likelihoods as pure JAX functions of the variance components.

Model: ``y ~ N(X beta, V)``, ``V = sum_k sigma2[k] * V_k`` with known ``V_k = Z_k R_k Z_k'``.

Conventions (the *full* log-likelihood, as lme4 reports it):

* ML:   ``l = -1/2 [ n log 2pi + log|V| + (y - X b)' V^-1 (y - X b) ]`` at the GLS ``b``.
* ReML: ``l = -1/2 [ (n-p) log 2pi + log|V| + log|X' V^-1 X| + y' P y ]``.

MM4LMM reports the ReML value without the ``(n-p) log 2pi`` term; see
:func:`to_mm4lmm_convention`.  Every function here is differentiable in ``sigma2``
(use :func:`jax.grad`, :func:`jax.hessian`) and batches with :func:`jax.vmap`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from ._gls import gls_dense, gls_diag

LOG_2PI = math.log(2.0 * math.pi)

METHODS = ("reml", "ml")


def _combine(method: str, n: int, p: int, logdet_v, logdet_xvx, quad):
    if method == "reml":
        return -0.5 * ((n - p) * LOG_2PI + logdet_v + logdet_xvx + quad)
    if method == "ml":
        return -0.5 * (n * LOG_2PI + logdet_v + quad)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def loglik_dense(sigma2, y, x, covs, method: str = "reml"):
    """Full log-likelihood for a dense model.

    Parameters
    ----------
    sigma2 : (K,) variance components.
    y : (n,) response.  x : (n, p) fixed-effect design (full column rank).
    covs : (K, n, n) the known covariance matrices ``V_k``.
    method : ``"reml"`` or ``"ml"`` (static).
    """
    v = jnp.tensordot(sigma2, covs, axes=1)
    g = gls_dense(y, x, v)
    n, p = x.shape
    return _combine(method, n, p, g.logdet_v, g.logdet_xvx, jnp.dot(g.resid, g.py))


def loglik_rotated(sigma2, y_rot, x_rot, d, method: str = "reml", logdet_k2=0.0):
    """Full log-likelihood for two components after joint diagonalisation.

    With ``K_2 = L L'`` and ``L^-1 K_1 L^-T = Q diag(d) Q'``, the rotation ``T = Q' L^-1``
    turns ``V = s1 K_1 + s2 K_2`` into ``T V T' = diag(s1 d + s2)``.

    Parameters
    ----------
    sigma2 : (2,) ``(s1, s2)``.  y_rot : (n,) ``T y``.  x_rot : (n, p) ``T X``.
    d : (n,) joint eigenvalues.  logdet_k2 : ``log |K_2|`` (0 when ``K_2 = I``).
    """
    v = sigma2[0] * d + sigma2[1]
    g = gls_diag(y_rot, x_rot, 1.0 / v)
    n, p = x_rot.shape
    logdet_v = jnp.sum(jnp.log(v)) + logdet_k2
    return _combine(method, n, p, logdet_v, g.logdet_xwx, jnp.dot(g.resid, g.py))


def to_mm4lmm_convention(loglik, n: int, p: int, method: str):
    """MM4LMM's reported value: ReML without its ``-(n-p)/2 log 2pi`` constant; ML unchanged."""
    if method == "reml":
        return loglik + 0.5 * (n - p) * LOG_2PI
    return loglik


__all__ = [
    "LOG_2PI",
    "METHODS",
    "loglik_dense",
    "loglik_rotated",
    "to_mm4lmm_convention",
]
