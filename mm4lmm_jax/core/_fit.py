"""Whole fits of one model, for each path: MM iterations, then the estimates at the optimum.

Each ``fit_*`` function is pure, takes one model's data and returns a :class:`FitOutput`;
:func:`jax.vmap` over the per-model arguments fits a batch of marker models in one call.
``method`` (``"reml"``/``"ml"``) and ``stopping`` (:class:`~.iterate.Stopping`) are static.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from ._gls import gls_dense, gls_diag
from ._iterate import Solution, Status, Stopping, squarem, squarem_anchored, status_of
from ._likelihood import LOG_2PI, loglik_dense, loglik_rotated
from ._mm import (
    HendersonSystem,
    henderson_loglik,
    henderson_solve,
    profiled_sigma2,
    step_dense,
    step_henderson,
    step_profiled_reml,
    step_rotated_ml,
)
from ._reduced import ReducedSystem, reduced_loglik, reduced_solve, step_reduced


class FitOutput(NamedTuple):
    """Estimates of one model (a pytree: stack it over markers with ``vmap``).

    Fields
    ------
    sigma2 : (K,) variance components.  beta : (p,) fixed effects (GLS at ``sigma2``).
    var_beta : (p, p) ``(X' V^-1 X)^-1``.  loglik : full log-likelihood (with ``2 pi``).
    n_steps : int32 solver iterations.  status : int32 :class:`~.iterate.Status` code.
    """

    sigma2: jnp.ndarray
    beta: jnp.ndarray
    var_beta: jnp.ndarray
    loglik: jnp.ndarray
    n_steps: jnp.ndarray
    status: jnp.ndarray

    @property
    def converged(self):
        """The stopping rule was met with finite estimates (``status == OK``)."""
        return self.status == Status.OK

    @property
    def finite(self):
        """No NaN/inf met (e.g. a non-positive-definite ``V``)."""
        return self.status != Status.NONFINITE


def _finish(sigma2, beta, var_beta, loglik, sol: Solution) -> FitOutput:
    finite = (
        (sol.status != Status.NONFINITE)
        & jnp.all(jnp.isfinite(sigma2))
        & jnp.all(jnp.isfinite(beta))
        & jnp.all(jnp.isfinite(var_beta))
        & jnp.isfinite(loglik)
    )
    return FitOutput(sigma2, beta, var_beta, loglik, sol.n_steps, status_of(sol.status == Status.OK, finite))


def fit_rotated(y_rot, x_rot, d, sigma0, *, method: str, stopping: Stopping, logdet_k2=0.0):
    """Two components after joint diagonalisation (see :func:`..likelihood.loglik_rotated`).

    ``y_rot`` (n,), ``x_rot`` (n, p), ``d`` (n,), ``sigma0`` (2,) starting values.
    """
    if method == "reml":
        sigma0 = jnp.asarray(sigma0)
        res = squarem_anchored(
            lambda t: step_profiled_reml(t[0], y_rot, x_rot, d),
            jnp.atleast_1d(sigma0[0] / sigma0[1]),
            sigma0,
            stopping,
        )
        sigma2, g, _, _ = profiled_sigma2(res.value[0], y_rot, x_rot, d)
        var_beta = g.xwx_inv * sigma2[1]
    else:
        res = squarem(lambda t: step_rotated_ml(t, y_rot, x_rot, d), sigma0, stopping)
        sigma2 = res.value
        g = gls_diag(y_rot, x_rot, 1.0 / (sigma2[0] * d + sigma2[1]))
        var_beta = g.xwx_inv
    loglik = loglik_rotated(sigma2, y_rot, x_rot, d, method, logdet_k2)
    return _finish(sigma2, g.beta, var_beta, loglik, res)


def fit_dense(y, x, covs, sigma0, *, method: str, stopping: Stopping):
    """Any number of components with dense ``V``: ``covs`` (K, n, n), ``sigma0`` (K,)."""
    res = squarem(lambda t: step_dense(t, y, x, covs, method), sigma0, stopping)
    sigma2 = res.value
    g = gls_dense(y, x, jnp.tensordot(sigma2, covs, axes=1))
    loglik = loglik_dense(sigma2, y, x, covs, method)
    return _finish(sigma2, g.beta, g.xvx_inv, loglik, res)


def fit_henderson(hs: HendersonSystem, sigma0, *, stopping: Stopping):
    """ReML through Henderson's mixed-model equations (``n > q + p``); ``sigma0`` (K,)."""
    res = squarem(lambda t: step_henderson(t, hs), sigma0, stopping)
    sigma2 = res.value
    sol = henderson_solve(sigma2, hs)
    p = hs.xrx.shape[0]
    var_beta = sigma2[-1] * sol.c_inv[:p, :p]
    loglik = henderson_loglik(sigma2, sol, hs) - 0.5 * (hs.n_obs - p) * LOG_2PI
    return _finish(sigma2, sol.beta, 0.5 * (var_beta + var_beta.T), loglik, res)


def fit_reduced(rs: ReducedSystem, sigma0, *, stopping: Stopping):
    """ReML through the reduced Henderson system (:mod:`._reduced`); ``sigma0`` (K,).
    Same iterates and results as :func:`fit_henderson`, cheaper per step."""
    res = squarem(lambda t: step_reduced(t, rs), sigma0, stopping)
    sigma2 = res.value
    sol = reduced_solve(sigma2, rs)
    p = rs.xx.shape[0]
    var_beta = sigma2[-1] * sol.t_inv_xx
    loglik = reduced_loglik(sigma2, sol, rs) - 0.5 * (rs.shared.n_obs - p) * LOG_2PI
    return _finish(sigma2, sol.beta, 0.5 * (var_beta + var_beta.T), loglik, res)


def fit_single(y_w, x_w, logdet_v1, *, method):
    """One component in closed form, on whitened data ``L^-1 y``, ``L^-1 X`` (``V_1 = L L'``).

    ReML: ``s = y'Py / (n - p)``; ML: ``s = r' V_1^-1 r / n``.
    """
    n, p = x_w.shape
    g = gls_diag(y_w, x_w, jnp.ones_like(y_w))
    rss = jnp.dot(g.resid, g.resid)
    df = n - p if method == "reml" else n
    s = rss / df
    sigma2 = jnp.atleast_1d(s)
    if method == "reml":
        loglik = -0.5 * ((n - p) * LOG_2PI + n * jnp.log(s) + logdet_v1 + g.logdet_xwx - p * jnp.log(s) + df)
    else:
        loglik = -0.5 * (n * LOG_2PI + n * jnp.log(s) + logdet_v1 + n)
    res = Solution(sigma2, jnp.int32(Status.OK), jnp.int32(1))
    return _finish(sigma2, g.beta, g.xwx_inv * s, loglik, res)


__all__ = [
    "FitOutput",
    "fit_dense",
    "fit_henderson",
    "fit_reduced",
    "fit_rotated",
    "fit_single",
]
