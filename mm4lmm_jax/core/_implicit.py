"""A differentiable fit: the MM solve forward, the implicit function theorem backward (pure JAX).

:func:`fit` solves the model with the structure :mod:`._structures` would choose and
MM4LMM's iterations (to a tight stopping rule), then attaches to the optimum ``sigma2*`` the
derivative rule of the stationarity condition ``d l / d sigma2 = 0``: for a perturbation
``dp`` of the data ``p = (y, x, covariances, z)``,

    ``d sigma2* = - H^-1 (d/dp  d l / d sigma2) dp``,   ``H = d2 l / d sigma2^2``,

one ``K x K`` linear solve with the Hessian of the log-likelihood in ``sigma2`` (the
parameterisation MM iterates in), never a derivative of the loop.  The likelihood is the
data-level :func:`model_quad` (dense, or the push-through Woodbury identity for ``Z``
forms), so derivatives reach every entry of ``y``, ``x``, each covariance and each ``Z``.

Boundary (active set): a component below ``AT_ZERO`` of the total variance is held at zero;
its sensitivity is exactly zero and the others solve the stationarity condition of the free
components, so derivatives stay finite (no NaN, also in reverse mode).

Everything computed from the optimum is an ordinary JAX function of ``sigma2*`` and the
data -- ``beta``, ``var_beta``, ``loglik``, ``information`` here; :func:`wald`,
:func:`blups`, :func:`kr_ingredients` / :func:`kr_test` over :func:`model_quad` -- so
``jax.grad``, ``jacfwd`` / ``jacrev``, ``jvp``, ``jit`` and ``vmap`` go through all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import accumulate
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.scipy.linalg import block_diag, cho_solve, solve_triangular
from jax.scipy.special import erfc

from ._gls import chol_logdet
from ._information import expected_information, gls_from_quad, loglik_from_quad
from ._iterate import Stopping
from ._quad import dense_quad, pushthrough_quad
from ._reduced import reduced_shared
from ._structures import Dense, Henderson, Single, TwoComponent
from ._transforms import joint_diagonalise

#: Stopping rule of :func:`fit`: the derivative rule holds at the optimum, so iterate to it.
TIGHT = Stopping(1e-10, 1e-10, 20000)

#: A component below this fraction of the total variance is held at the boundary.
AT_ZERO = 1e-6


class FitResult(NamedTuple):
    """A differentiable fit.

    ``sigma2`` (K,) variance components, the error last; ``beta`` (p,) GLS coefficients;
    ``var_beta`` (p, p) their covariance ``(X'V^-1X)^-1``; ``loglik`` the full log-likelihood
    (ReML or ML, with ``2 pi``); ``information`` (K, K) the expected information of ``sigma2``
    (its inverse is the asymptotic covariance); ``status`` (:class:`~._iterate.Status` code,
    0 = ok); ``n_steps`` MM iterations.  Not differentiable: ``status``, ``n_steps``.
    """

    sigma2: jnp.ndarray
    beta: jnp.ndarray
    var_beta: jnp.ndarray
    loglik: jnp.ndarray
    information: jnp.ndarray
    status: jnp.ndarray
    n_steps: jnp.ndarray


def lowrank_quad(sigma2, a, z_list, g_list, r=None):
    """``(A'V^-1A, log|V|)`` for ``V = s_e R + sum_k s_k Z_k G_k Z_k'`` by the push-through
    Woodbury identity, O(n q^2 + q^3) with ``q = sum q_k``.

    ``sigma2`` (K,); ``a`` (n, c); ``z_list`` K-1 arrays (n, q_k); ``g_list`` K-1 arrays
    (q_k, q_k) positive semi-definite; ``r`` (n, n) positive definite, None for the identity.
    With ``G(s) = blockdiag(s_k G_k)``, ``M = Z'R^-1Z`` and ``C = s_e I + M G(s)``:
    ``A'V^-1A = (A'R^-1A - A'R^-1Z G(s) C^-1 Z'R^-1A) / s_e`` and
    ``log|V| = (n - q) log s_e + log|R| + log|C|``.  No ``G^-1`` and no ``1 / s_k``: smooth
    in ``sigma2`` down to zero random components (the boundary of the derivative rule).
    """
    z = jnp.concatenate(list(z_list), axis=1)
    if r is None:
        a_w, z_w, logdet_r = a, z, 0.0
    else:
        chol = jnp.linalg.cholesky(0.5 * (r + r.T))
        a_w = solve_triangular(chol, a, lower=True)
        z_w = solve_triangular(chol, z, lower=True)
        logdet_r = chol_logdet(chol)
    g = block_diag(*[s * gk for s, gk in zip(sigma2[:-1], g_list)])
    return pushthrough_quad(sigma2, a_w.T @ a_w, a_w.T @ z_w, z_w.T @ z_w, g, a.shape[0], logdet_r)


def _as_z(z, n, dtype):
    return jnp.eye(n, dtype=dtype) if z is None else jnp.asarray(z, dtype)


def model_quad(y, x, covariances, z=None):
    """The quadratic form ``sigma2 -> (A'V^-1A, log|V|)`` of the model, ``A = [x | y]``,
    built from the data (differentiable in ``y``, ``x``, every covariance and ``Z``).

    Without ``z``: ``covariances`` (K, n, n), ``V = sum_k s_k covariances[k]`` (dense, O(n^3)).
    With ``z`` (K-1 entries (n, q_k), None for the identity): ``covariances`` K-1 matrices
    (q_k, q_k) then ``R`` (n, n) or None (identity); Woodbury, :func:`lowrank_quad`.
    """
    a = jnp.concatenate([x, y[:, None]], axis=1)
    if z is None:
        covs = jnp.asarray(covariances)
        return lambda s: dense_quad(s, a, covs)
    zs = [_as_z(zk, y.shape[0], y.dtype) for zk in z]
    gs, r = list(covariances[:-1]), covariances[-1]
    return lambda s: lowrank_quad(s, a, zs, gs, r)


def _loglik(method, sigma2, y, x, covs, z):
    return loglik_from_quad(model_quad(y, x, covs, z), sigma2, y.shape[0], x.shape[1], method)


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _optimum(method: str, sigma2, y, x, covs, z, structure):
    """``sigma2`` itself (the optimum found by the solver), with the implicit derivative rule."""
    return sigma2


def _free_set(sigma2):
    """The active set: ``free`` (K,) components above ``AT_ZERO`` of the total, ``h_free(h)``
    the Hessian with the held rows and columns replaced by the identity's."""
    free = sigma2 > AT_ZERO * jnp.sum(jnp.abs(sigma2))
    both = free[:, None] & free[None, :]
    eye = jnp.eye(sigma2.shape[0], dtype=sigma2.dtype)
    return free, lambda h: jnp.where(both, h, eye)


def _is_zero(t) -> bool:
    return isinstance(t, SymbolicZero)


def _instantiate(tree):
    return jax.tree_util.tree_map(
        lambda t: jnp.zeros(t.aval.shape, t.aval.dtype) if _is_zero(t) else t, tree, is_leaf=_is_zero
    )


def _optimum_jvp(method, primals, tangents):
    sigma2, y, x, covs, z, structure = primals
    _, dy, dx, dcovs, dz, _ = tangents  # the optimum does not depend on where the solver started
    free, h_free = _free_set(sigma2)
    # held components are evaluated at exactly zero: the quads used here are smooth there (no
    # 1 / s_k), so every coefficient stays finite and the zero cotangents they receive in
    # reverse mode never meet an inf or a NaN
    safe = jnp.where(free, sigma2, 0.0)
    dy, dx = _instantiate(dy), _instantiate(dx)
    n, p = y.shape[0], x.shape[1]
    if all(_is_zero(t) for t in jax.tree_util.tree_leaves((dcovs, dz), is_leaf=_is_zero)):
        # covariances fixed: the structure's own algebra (rotation, Henderson blocks) is exact
        # in (y, x), to every order, and costs O(n p^2) instead of O(n^3)
        def loglik(s, y_, x_):
            a = jnp.concatenate([x_, y_[:, None]], axis=1)
            return loglik_from_quad(structure.quad_data(a), s, n, p, method)

        hess = jax.hessian(loglik)(safe, y, x)
        _, mixed = jax.jvp(lambda y_, x_: jax.grad(loglik)(safe, y_, x_), (y, x), (dy, dx))
    else:
        dcovs, dz = _instantiate(dcovs), _instantiate(dz)

        def score(y_, x_, c_, z_):
            return jax.grad(_loglik, argnums=1)(method, safe, y_, x_, c_, z_)

        hess = jax.hessian(_loglik, argnums=1)(method, safe, y, x, covs, z)
        _, mixed = jax.jvp(score, (y, x, covs, z), (dy, dx, dcovs, dz))
    d_sigma2 = -jnp.linalg.solve(h_free(hess), jnp.where(free, mixed, 0.0))
    return sigma2, jnp.where(free, d_sigma2, 0.0)


_optimum.defjvp(_optimum_jvp, symbolic_zeros=True)


def _polish(quad, sigma2, n: int, p: int, method: str, steps: int = 2):
    """Newton steps on the free components from MM's answer (MM's stopping rule bounds the
    change per iteration, not the distance to the optimum; the derivative rule wants the
    optimum).  A step is kept only where it is small (under 10% of each component, so every
    component stays positive) and loses no log-likelihood beyond rounding."""

    def loglik(s):
        return loglik_from_quad(quad, s, n, p, method)

    free, h_free = _free_set(sigma2)

    def grad_and_value(s):
        g = jax.grad(loglik)(s)
        return g, g

    def newton(_, s):
        h, g = jax.jacfwd(grad_and_value, has_aux=True)(s)
        step = jnp.where(free, jnp.linalg.solve(h_free(h), jnp.where(free, g, 0.0)), 0.0)
        cand = s - step
        before, after = loglik(s), loglik(cand)
        # near the optimum the gain is below rounding: accept small steps that lose no more
        small = jnp.all(jnp.abs(step) <= 0.1 * jnp.abs(s))
        ok = small & jnp.isfinite(after) & (after - before >= -1e-9 * (1.0 + jnp.abs(before)))
        return jnp.where(ok, cand, s)

    return jax.lax.fori_loop(0, steps, newton, sigma2)


def _henderson(y, zs, gs, r) -> Henderson:
    """Traceable :class:`Henderson` set-up (the host one checks and whitens with NumPy)."""
    if r is None:
        l_inv, logdet_r, whiten = jnp.zeros((0, 0), y.dtype), 0.0, False
    else:
        chol = jnp.linalg.cholesky(0.5 * (r + r.T))
        l_inv = solve_triangular(chol, jnp.eye(y.shape[0], dtype=y.dtype), lower=True)
        logdet_r, whiten = chol_logdet(chol), True
    y_w = l_inv @ y if whiten else y
    z_w = [l_inv @ zk if whiten else zk for zk in zs]
    return Henderson(l_inv, y_w, reduced_shared(y_w, z_w, gs, logdet_r), whiten)


def _structure(y, x, covs, z, method):
    """The structure ``mmest`` would use (shapes only, so the choice is static under ``jit``)."""
    n = y.shape[0]
    if z is not None:
        zs = [_as_z(zk, n, y.dtype) for zk in z]
        q = sum(zk.shape[1] for zk in zs)
        if len(zs) >= 2 and method in Henderson.methods and q + x.shape[1] < n:
            return _henderson(y, zs, list(covs[:-1]), covs[-1])
        r = jnp.eye(n, dtype=y.dtype) if covs[-1] is None else covs[-1]
        covs = jnp.stack([zk @ gk @ zk.T for zk, gk in zip(zs, covs[:-1])] + [r])
    k = covs.shape[0]
    if k == 1:
        return Single.prepare(y, [None], [covs[0]], [covs[0]])
    if k == 2:  # traceable: the general joint diagonalisation (covs[1] positive definite)
        rot = joint_diagonalise(covs[0], covs[1])
        return TwoComponent(rot.t, rot.d, rot.logdet_k2, rot.t @ y)
    return Dense.prepare(y, [None] * k, list(covs), list(covs))


@partial(jax.jit, static_argnames=("method", "stopping"))
def fit(
    y,
    x,
    covariances,
    *,
    z: Sequence | None = None,
    method: str = "reml",
    stopping: Stopping = TIGHT,
    sigma0=None,
) -> FitResult:
    """Fit ``y = x beta + sum_k Z_k u_k + e`` and return a differentiable :class:`FitResult`.

    Parameters
    ----------
    y : (n,).  x : (n, p) of full column rank.
    covariances : without ``z``, (K, n, n) positive semi-definite, the error last (positive
        definite with the others' sum); with ``z``, a list of K-1 matrices ``G_k`` (q_k, q_k)
        then ``R`` (n, n) or None (the identity).
    z : None, or a list of K-1 incidence / design matrices ``Z_k`` (n, q_k) (None for the
        identity).
    method : ``"reml"`` or ``"ml"`` (static).  stopping : the MM stopping rule (static; tight by
        default, as the derivative rule assumes the optimum).  sigma0 : (K,) start (default
        ``var(y) / K``).

    The structure is chosen as ``mmest`` does: one component, closed form; two, joint
    diagonalisation (the second matrix positive definite); three or more with ``z``, ReML and
    ``sum q_k + p < n``, Henderson's equations (each ``G_k`` positive definite); otherwise dense.
    ``jit``, ``vmap``, ``grad``, ``jacfwd`` / ``jacrev`` and ``jvp`` all work; derivatives are
    those of the optimum (module docstring).  A failed fit has ``status != 0``.
    """
    y = jnp.asarray(y)
    x = jnp.asarray(x)
    covs = jnp.asarray(covariances) if z is None else [None if c is None else jnp.asarray(c) for c in covariances]
    k = covs.shape[0] if z is None else len(covs)
    stop = partial(jax.tree_util.tree_map, jax.lax.stop_gradient)
    y_c, x_c, covs_c, z_c = stop((y, x, covs, z))
    if sigma0 is None:
        sigma0 = jnp.full((k,), jnp.var(y_c, ddof=1) / k)
    structure = _structure(y_c, x_c, covs_c, z_c, method)
    out = structure.fit(structure.transform(x_c), jax.lax.stop_gradient(sigma0), method=method, stopping=stopping)
    structure = structure.for_inference()
    a_c = jnp.concatenate([x_c, y_c[:, None]], axis=1)
    polished = _polish(structure.quad_data(a_c), out.sigma2, y.shape[0], x.shape[1], method)
    sigma2 = _optimum(method, jax.lax.stop_gradient(polished), y, x, covs, z, structure)
    quad = model_quad(y, x, covs, z)
    p = x.shape[1]
    beta, var_beta = gls_from_quad(quad, sigma2, p)
    loglik = loglik_from_quad(quad, sigma2, y.shape[0], p, method)
    info = expected_information(quad, sigma2, p, method)
    return FitResult(sigma2, beta, 0.5 * (var_beta + var_beta.T), loglik, info, out.status, out.n_steps)


class Wald(NamedTuple):
    """Wald tests of each coefficient: ``z = beta / se``, ``chi2 = z^2`` (1 df), ``p_value``."""

    z: jnp.ndarray
    chi2: jnp.ndarray
    p_value: jnp.ndarray


def wald(result: FitResult) -> Wald:
    """Per-coefficient Wald tests of a :class:`FitResult` (differentiable; ``p = erfc(|z|/sqrt 2)``)."""
    zval = result.beta / jnp.sqrt(jnp.diagonal(result.var_beta))
    return Wald(zval, zval * zval, erfc(jnp.abs(zval) / jnp.sqrt(2.0)))


def blups(result: FitResult, y, x, covariances, z=None) -> list:
    """BLUPs ``u_k = s_k G_k Z_k' V^-1 (y - x beta)`` of each random component (K-1 arrays).

    Same arguments as :func:`fit` (without ``z``: ``Z_k = I``, ``G_k = covariances[k]``);
    dense ``V`` without ``z`` (O(n^3)), the Woodbury identity with ``z``.  Differentiable.
    """
    y, x = jnp.asarray(y), jnp.asarray(x)
    s = result.sigma2
    resid = y - x @ result.beta
    if z is None:
        covs = jnp.asarray(covariances)
        v = jnp.tensordot(s, covs, axes=1)
        chol = jnp.linalg.cholesky(0.5 * (v + v.T))
        vr = cho_solve((chol, True), resid)
        return [s[k] * covs[k] @ vr for k in range(covs.shape[0] - 1)]
    n = y.shape[0]
    zs = [_as_z(zk, n, y.dtype) for zk in z]
    gs, r = list(covariances[:-1]), covariances[-1]
    r_inv = (lambda b: b) if r is None else partial(cho_solve, (jnp.linalg.cholesky(0.5 * (r + r.T)), True))
    zcat = jnp.concatenate(zs, axis=1)
    g = block_diag(*[sk * gk for sk, gk in zip(s[:-1], gs)])
    rz = r_inv(zcat)
    c = s[-1] * jnp.eye(zcat.shape[1], dtype=y.dtype) + (zcat.T @ rz) @ g
    rr = r_inv(resid)
    vr = (rr - rz @ (g @ jnp.linalg.solve(c, zcat.T @ rr))) / s[-1]
    u = g @ (zcat.T @ vr)
    cuts = list(accumulate(zk.shape[1] for zk in zs))[:-1]
    return jnp.split(u, cuts)


__all__ = ["AT_ZERO", "TIGHT", "FitResult", "Wald", "blups", "fit", "lowrank_quad", "model_quad", "wald"]
