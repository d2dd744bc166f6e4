"""Exact ReML / ML optima of ``K >= 3`` component models by Newton's method (pure JAX).

The covariance is written ``V = s2 * (A-form)``, ``s2`` the last component's variance,
profiled out; the remaining ``K' = K - 1`` parameters ``psi`` enter one SPD family

    ``A(psi) = A_fixed + sum_k psi_k E_k``   (d, d),

in one of two forms:

* Henderson (``d = sum q_k``): ``A = Zt'Zt + diag(psi)``, ``Zt = [L_R^-1 Z_k C_k]``
  (``R_k = C_k C_k'``, last component ``R = L_R L_R'``), ``psi_k = s2 / s2_k``,
  ``E_k`` the block selectors; a column ``a`` enters through ``h = Zt' L_R^-1 a`` and
  ``a' B^-1 b = a_w'b_w - h_a' A^-1 h_b``; ``log|B| = log|R| - sum q_k log psi_k + log|A|``.
* dense (``d = n``): ``A = B = K_last + sum_k gamma_k K_k``, ``psi_k = gamma_k = s2_k / s2``,
  ``h = a`` and ``a' B^-1 b = h_a' A^-1 h_b``; ``log|B| = log|A|``.

Both are described by :class:`Family`.  For a model with columns ``F = [X, y]`` (p + 1) the
matrix ``S = F' B^-1 F`` gives everything (:func:`profiled`): ``beta = S_xx^-1 S_xy``,
``rss = S_yy - S_xy' beta``, ``s2 = rss / nu`` and the profiled log-likelihood.

Two evaluations of ``S`` and ``log|A|``: exact (:func:`exact_loglik`, one Cholesky of
``A(psi)`` per model, used for the null model and as the fallback) and the expansion around
the null optimum of :mod:`._expansion` (:func:`surrogate_loglik`, no per-model
factorisation).  :func:`newton_surrogate` and :func:`newton_exact` maximise them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from ._expansion import apply_e, evaluate, evaluate_derivatives
from ._iterate import DampedNewton, Solution, iterate
from ._likelihood import LOG_2PI

PSI_BOUNDS = (-18.420680743952367, 18.420680743952367)  # log(1e-8), log(1e8): ratio bounds


class Family(NamedTuple):
    """``A(psi) = a_fixed + sum_k psi_k E_k`` and how ``log|B|`` follows from ``log|A|``.

    Fields: ``a_fixed`` (d, d); ``e`` (K', d) diagonal or (K', d, d) dense ``E_k``;
    ``sign`` (): -1 Henderson, +1 dense; ``q`` (K',): ``log|B| = logdet_const - q' log psi
    + log|A|`` (Henderson block sizes, zeros for dense); ``logdet_const`` ().
    """

    a_fixed: jnp.ndarray
    e: jnp.ndarray
    sign: jnp.ndarray
    q: jnp.ndarray
    logdet_const: jnp.ndarray


def family_matrix(fam: Family, psi: jnp.ndarray) -> jnp.ndarray:
    """``A(psi)`` (d, d)."""
    if fam.e.ndim == 2:
        return fam.a_fixed + jnp.diag(psi @ fam.e)
    return fam.a_fixed + jnp.tensordot(psi, fam.e, axes=1)


class Estimates(NamedTuple):
    """Profiled estimates from ``S``: ``loglik`` (), ``beta`` (p,), ``cov_unscaled`` (p, p) =
    ``S_xx^-1``, ``s2`` () the last component's variance."""

    loglik: jnp.ndarray
    beta: jnp.ndarray
    cov_unscaled: jnp.ndarray
    s2: jnp.ndarray


def profiled(s_mat: jnp.ndarray, logdet_b: jnp.ndarray, n: int, method: str) -> Estimates:
    """Full (lme4-convention) log-likelihood at the profiled ``s2`` from ``S = F'B^-1 F``."""
    p = s_mat.shape[0] - 1
    sxx, sxy, syy = s_mat[:p, :p], s_mat[:p, p], s_mat[p, p]
    chol = jnp.linalg.cholesky(sxx)
    z = solve_triangular(chol, sxy, lower=True)
    beta = solve_triangular(chol, z, lower=True, trans="T")
    rss = syy - jnp.dot(z, z)
    nu = n - p if method == "reml" else n
    s2 = rss / nu
    ll = nu * LOG_2PI + nu * jnp.log(s2) + nu + logdet_b
    if method == "reml":
        ll = ll + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    eye = jnp.eye(p, dtype=s_mat.dtype)
    inv_chol = solve_triangular(chol, eye, lower=True)
    return Estimates(-0.5 * ll, beta, inv_chol.T @ inv_chol, s2)


def _logdet_derivatives(m, dm, d2m):
    """``log|M|``, its gradient ``tr(M^-1 dM_k)`` and Hessian ``tr(M^-1 d2M_kl) -
    tr(M^-1 dM_k M^-1 dM_l)`` for an SPD ``M`` (c, c) with derivatives (K', c, c), (K', K', c, c)."""
    chol = jnp.linalg.cholesky(m)
    m_inv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(m.shape[0], dtype=m.dtype))
    p_k = jnp.einsum("ij,kjl->kil", m_inv, dm)
    grad = jnp.trace(p_k, axis1=1, axis2=2)
    hess = jnp.einsum("ij,klji->kl", m_inv, d2m) - jnp.einsum("kij,lji->kl", p_k, p_k)
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))), grad, hess


def profiled_value(s, ld_b, n: int, method: str):
    """The profiled log-likelihood alone (two small Cholesky factorisations), as in
    :func:`profiled_derivatives`."""
    p = s.shape[0] - 1
    nu = n - p if method == "reml" else n
    r = 1.0 if method == "reml" else 0.0

    def logdet(m):
        return 2.0 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(m))))

    const = nu * (LOG_2PI - jnp.log(nu)) + nu
    return -0.5 * (const + nu * logdet(s) + (r - nu) * logdet(s[:p, :p]) + ld_b)


def profiled_derivatives(s, ds, d2s, ld_b, dld_b, d2ld_b, n: int, method: str):
    """Profiled log-likelihood with its gradient and Hessian from the derivatives of
    ``S = F'B^-1 F`` (c, c) and ``log|B|`` in any parameters.

    ``-2 ll = nu log(2 pi / nu) + nu + nu log|S| + (r - nu) log|S_xx| + log|B|`` (``r = 1``
    for ReML, 0 for ML), since ``rss = |S| / |S_xx|``.
    """
    p = s.shape[0] - 1
    nu = n - p if method == "reml" else n
    r = 1.0 if method == "reml" else 0.0
    l_s, g_s, h_s = _logdet_derivatives(s, ds, d2s)
    l_x, g_x, h_x = _logdet_derivatives(s[:p, :p], ds[:, :p, :p], d2s[:, :, :p, :p])
    const = nu * (LOG_2PI - jnp.log(nu)) + nu
    val = const + nu * l_s + (r - nu) * l_x + ld_b
    grad = nu * g_s + (r - nu) * g_x + dld_b
    hess = nu * h_s + (r - nu) * h_x + d2ld_b
    return -0.5 * val, -0.5 * grad, -0.5 * hess


def exact_parts(fam: Family, psi, h, s_mat):
    """Exact ``S`` (c, c) and ``log|B|`` for columns ``h`` (d, c) with ``s_mat`` = ``a_w'b_w``."""
    chol = jnp.linalg.cholesky(family_matrix(fam, psi))
    w = solve_triangular(chol, h, lower=True)
    logdet_b = fam.logdet_const - jnp.dot(fam.q, jnp.log(psi)) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return s_mat + fam.sign * (w.T @ w), logdet_b


def exact_loglik(t, fam: Family, h, s_mat, n: int, method: str) -> Estimates:
    """Estimates at ``psi = exp(t)`` by one Cholesky of ``A(psi)``."""
    s, logdet_b = exact_parts(fam, jnp.exp(t), h, s_mat)
    return profiled(s, logdet_b, n, method)


class Expansion(NamedTuple):
    """Shared part of the surrogate: ``psi = psi0 + u / lam``; ``log|A| = logdet0 +
    poly(ld_coef, u)`` (exponents ``ld_exps``, static, passed separately)."""

    psi0: jnp.ndarray
    lam: jnp.ndarray
    logdet0: jnp.ndarray
    ld_coef: jnp.ndarray


def surrogate_parts(u, s_mat, form_coef, form_exps, exp_: Expansion, ld_exps, fam: Family):
    """``S`` and ``log|B|`` at scaled offset ``u`` from the polynomial coefficients."""
    s = s_mat + fam.sign * evaluate(form_coef, u, form_exps)
    psi = exp_.psi0 + u / exp_.lam
    logdet_a = exp_.logdet0 + evaluate(exp_.ld_coef, u, ld_exps)
    return s, fam.logdet_const - jnp.dot(fam.q, jnp.log(psi)) + logdet_a


def surrogate_loglik(u, s_mat, form_coef, form_exps, exp_: Expansion, ld_exps, fam: Family, n, method):
    s, logdet_b = surrogate_parts(u, s_mat, form_coef, form_exps, exp_, ld_exps, fam)
    return profiled(s, logdet_b, n, method)


def surrogate_derivatives(u, s_mat, form_coef, form_exps, exp_: Expansion, ld_exps, fam: Family, n, method):
    """Surrogate log-likelihood, gradient and Hessian in ``u``: the polynomials' derivatives
    are explicit (:func:`~.expansion.evaluate_derivatives`), only the small profiled
    likelihood of their second-order model is differentiated automatically."""
    q0, dq, d2q = evaluate_derivatives(form_coef, u, form_exps)
    ld0, dld, d2ld = evaluate_derivatives(exp_.ld_coef, u, ld_exps)
    psi = exp_.psi0 + u / exp_.lam
    dpsi = 1.0 / exp_.lam
    logdet_b = fam.logdet_const - jnp.dot(fam.q, jnp.log(psi)) + exp_.logdet0 + ld0
    dld_b = dld - fam.q * dpsi / psi
    d2ld_b = d2ld + jnp.diag(fam.q * (dpsi / psi) ** 2)
    return profiled_derivatives(
        s_mat + fam.sign * q0, fam.sign * dq, fam.sign * d2q, logdet_b, dld_b, d2ld_b, n, method
    )


def maximise(
    f, x0, *, lower=None, upper=None, tol: float = 1e-10, max_iter: int = 50, max_halvings: int = 30,
    derivatives=None, skip=False,
) -> Solution:  # fmt: skip
    """Damped, projected Newton ascent of the scalar function ``f`` from ``x0`` (k,): the
    :class:`~.iterate.DampedNewton` solver run by :func:`~.iterate.iterate`.

    ``derivatives(x) -> (value, gradient, Hessian)`` replaces autodiff of ``f`` where given;
    ``skip`` (traced bool) returns ``x0`` untouched (padding in batched calls).  Returns a
    :class:`~.iterate.Solution` whose ``value`` is the maximiser.
    """
    k = x0.shape[0]
    lo = jnp.full((k,), -jnp.inf) if lower is None else jnp.broadcast_to(lower, (k,))
    hi = jnp.full((k,), jnp.inf) if upper is None else jnp.broadcast_to(upper, (k,))
    if derivatives is None:
        grad_hess = jax.value_and_grad(f)
        hess = jax.hessian(f)

        def derivatives(x):
            val, g = grad_hess(x)
            return val, g, hess(x)

    return iterate(DampedNewton(f, derivatives, lo, hi, tol, max_iter, max_halvings, skip), x0)


def exact_derivatives(t, fam: Family, h, s_mat, n: int, method: str):
    """Log-likelihood, gradient and Hessian in ``t = log psi`` from one inverse of ``A(psi)``.

    With ``W = A^-1 h``: ``dQ/dpsi_k = -W'E_k W`` and ``d2Q/dpsi_k dpsi_l = 2 sym(W'E_k A^-1
    E_l W)`` for ``Q = h'A^-1 h``; ``d log|A| / dpsi_k = tr(A^-1 E_k)`` and ``d2 = -tr(A^-1 E_k
    A^-1 E_l)``; the chain rule to ``t`` and :func:`profiled_derivatives` do the rest.
    """
    psi = jnp.exp(t)
    a = family_matrix(fam, psi)
    chol = jnp.linalg.cholesky(a)
    a_inv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(a.shape[0], dtype=a.dtype))
    w = a_inv @ h
    ew = apply_e(fam.e, w[None])[:, 0]  # (K', d, c)
    q0 = h.T @ w
    dq = -jnp.einsum("dc,kde->kce", w, ew)
    t_kl = jnp.einsum("kic,lie->klce", ew, jnp.einsum("ij,ljc->lic", a_inv, ew))
    d2q = t_kl + jnp.swapaxes(t_kl, 0, 1)
    if fam.e.ndim == 2:
        g_ld = fam.e @ jnp.diagonal(a_inv)
        h_ld = -(fam.e @ (a_inv * a_inv.T) @ fam.e.T)
    else:
        prods = jnp.einsum("ij,kjl->kil", a_inv, fam.e)
        g_ld = jnp.trace(prods, axis1=1, axis2=2)
        h_ld = -jnp.einsum("kij,lji->kl", prods, prods)
    ld_a = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    # chain rule to t = log psi: d/dt_k = psi_k d/dpsi_k, plus the diagonal first-order term
    outer = psi[:, None] * psi[None, :]
    eye = jnp.eye(psi.shape[0], dtype=psi.dtype)
    ds = fam.sign * dq * psi[:, None, None]
    d2s = fam.sign * (d2q * outer[:, :, None, None] + eye[:, :, None, None] * (dq * psi[:, None, None])[:, None])
    logdet_b = fam.logdet_const - jnp.dot(fam.q, t) + ld_a
    dld_b = -fam.q + g_ld * psi
    d2ld_b = h_ld * outer + jnp.diag(g_ld * psi)
    return profiled_derivatives(s_mat + fam.sign * q0, ds, d2s, logdet_b, dld_b, d2ld_b, n, method)


def newton_exact(
    t0, fam: Family, h, s_mat, n: int, method: str, *, tol: float = 1e-10, max_iter: int = 100, skip=False
):
    """Exact optimum in ``t = log psi`` (bounded to ``PSI_BOUNDS``); derivatives from
    :func:`exact_derivatives`, line search on :func:`exact_loglik`."""
    return maximise(
        lambda t: profiled_value(*exact_parts(fam, jnp.exp(t), h, s_mat), n, method),
        t0,
        lower=PSI_BOUNDS[0],
        upper=PSI_BOUNDS[1],
        tol=tol,
        max_iter=max_iter,
        derivatives=lambda t: exact_derivatives(t, fam, h, s_mat, n, method),
        skip=skip,
    )


def newton_surrogate(s_mat, form_coef, form_exps, exp_: Expansion, ld_exps, fam: Family, n, method, *, r_max, tol):
    """Optimum of the surrogate in the scaled offsets ``u`` (start 0 = the null optimum),
    kept inside ``|u_k| <= r_max``."""
    k = exp_.psi0.shape[0]

    def f(u):
        return profiled_value(*surrogate_parts(u, s_mat, form_coef, form_exps, exp_, ld_exps, fam), n, method)

    def derivatives(u):
        return surrogate_derivatives(u, s_mat, form_coef, form_exps, exp_, ld_exps, fam, n, method)

    return maximise(
        f, jnp.zeros((k,), s_mat.dtype), lower=-r_max, upper=r_max, tol=tol, max_iter=30, derivatives=derivatives
    )


__all__ = [
    "Estimates",
    "Expansion",
    "Family",
    "exact_derivatives",
    "exact_loglik",
    "exact_parts",
    "family_matrix",
    "maximise",
    "newton_exact",
    "newton_surrogate",
    "profiled",
    "profiled_derivatives",
    "profiled_value",
    "surrogate_derivatives",
    "surrogate_loglik",
    "surrogate_parts",
]
