"""Log-likelihoods and information matrices of the variance components, by autodiff.

Each function takes ``quad``: a function ``sigma2 -> (M, log|V|)`` with
``M = [X|y]' V^-1 [X|y]`` (see :mod:`._quad`), so one code path serves every
covariance structure and any number of components.  With ``h`` the log-determinant part
of the (negative twice) log-likelihood and ``y'Py`` its quadratic part:

* ReML: ``-2 l = (n-p) log 2pi + log|V| + log|X'V^-1X| + y'Py``;
* ML:   ``-2 l = n log 2pi + log|V| + y'Py`` (``P`` with ``V^-1``: the GLS residual form).

Because ``d log|V| / d s_i = tr(V^-1 V_i)`` and ``d P / d s_j = -P V_j P``:

* expected information ``I_ij = 1/2 tr(P V_i P V_j) = -1/2 d2 h / ds_i ds_j``
  (``V^-1`` in place of ``P`` for ML);
* average information ``AI_ij = 1/2 y'P V_i P V_j P y = 1/4 d2 (y'Py) / ds_i ds_j``;
* observed information ``= -d2 l / ds_i ds_j``.

These are exact identities (tests check them against the closed forms).  Never
differentiate through an eigendecomposition: rotations are data here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._gls import sym_inverse
from ._likelihood import LOG_2PI

Quad = Callable[[jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]


def _parts(m, p: int):
    """``X'V^-1X``, its inverse and log-determinant, ``beta`` and ``y'Py`` from ``M``."""
    xvx = m[:p, :p]
    xvy = m[:p, p]
    inv, logdet = sym_inverse(xvx)
    beta = inv @ xvy
    ypy = m[p, p] - jnp.dot(xvy, beta)
    return xvx, inv, logdet, beta, ypy


def gls_from_quad(quad: Quad, sigma2, p: int):
    """``(beta (p,), var_beta (p, p))``: the GLS estimate and ``(X'V^-1X)^-1`` at ``sigma2``."""
    m, _ = quad(sigma2)
    _, inv, _, beta, _ = _parts(m, p)
    return beta, inv


def logdet_part(quad: Quad, sigma2, p: int, method: str):
    """``h(sigma2)``: ``log|V| + log|X'V^-1X|`` (ReML) or ``log|V|`` (ML)."""
    m, logdet_v = quad(sigma2)
    if method == "ml":
        return logdet_v
    return logdet_v + _parts(m, p)[2]


def quadratic_part(quad: Quad, sigma2, p: int):
    """``y'Py`` (equal to ``(y - X b)' V^-1 (y - X b)`` at the GLS ``b``)."""
    m, _ = quad(sigma2)
    return _parts(m, p)[4]


def loglik_from_quad(quad: Quad, sigma2, n: int, p: int, method: str):
    """Full log-likelihood (lme4's convention, with its ``2 pi`` constant)."""
    const = (n - p if method == "reml" else n) * LOG_2PI
    return -0.5 * (const + logdet_part(quad, sigma2, p, method) + quadratic_part(quad, sigma2, p))


def expected_information(quad: Quad, sigma2, p: int, method: str):
    """Expected (Fisher) information (K, K): ``1/2 tr(P V_i P V_j)`` (ReML) or
    ``1/2 tr(V^-1 V_i V^-1 V_j)`` (ML), as ``-1/2`` the Hessian of :func:`logdet_part`."""
    return -0.5 * jax.hessian(lambda s: logdet_part(quad, s, p, method))(sigma2)


def average_information(quad: Quad, sigma2, p: int):
    """Average information (K, K), ReML: ``1/2 y'P V_i P V_j P y``."""
    return 0.25 * jax.hessian(lambda s: quadratic_part(quad, s, p))(sigma2)


def observed_information(quad: Quad, sigma2, n: int, p: int, method: str):
    """Observed information (K, K): minus the Hessian of the log-likelihood."""
    return -jax.hessian(lambda s: loglik_from_quad(quad, s, n, p, method))(sigma2)


def score(quad: Quad, sigma2, n: int, p: int, method: str):
    """Gradient (K,) of the log-likelihood in ``sigma2`` (zero at an interior optimum)."""
    return jax.grad(lambda s: loglik_from_quad(quad, s, n, p, method))(sigma2)


__all__ = [
    "average_information",
    "expected_information",
    "gls_from_quad",
    "logdet_part",
    "loglik_from_quad",
    "observed_information",
    "quadratic_part",
    "score",
]
