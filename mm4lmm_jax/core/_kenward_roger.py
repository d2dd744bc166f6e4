"""Kenward & Roger (1997) small-sample F tests for ``L beta = 0`` (pure JAX, batchable).

The ingredients are derivatives of the fixed-effect information ``F(s) = X'V(s)^-1X`` in
the variance components, taken by autodiff of a ``quad`` function (see :mod:`._quad`):

* ``P_i = dF/ds_i = -X'V^-1 V_i V^-1 X``;
* ``Q_ij`` (symmetrised) ``= 1/2 d2F/ds_i ds_j = sym(X'V^-1 V_i V^-1 V_j V^-1 X)``;
* ``W`` the inverse ReML expected information of the variance components.

Then ``Phi = F^-1``, ``U = sum_ij W_ij (Q_ij - P_i Phi P_j)`` and the adjusted covariance
``Phi_A = Phi + 2 Phi U Phi`` (no second-derivative term: ``V`` is linear in ``s``).  The
scaling and denominator degrees of freedom follow Kenward & Roger (1997) in the form
used by pbkrtest (``E* = 1 / (1 - A2/q)``), so the numbers match pbkrtest / lmerTest and
MM4LMM where those run.  Valid for any number of components and any full-row-rank ``L``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc, betaln

from ._gls import sym_inverse, weighted_cross
from ._information import Quad, expected_information


class KRIngredients(NamedTuple):
    """Per-model Kenward-Roger pieces (a pytree; stack it over models with ``vmap``).

    Fields
    ------
    phi : (p, p) ``(X'V^-1X)^-1`` at the estimate.  phi_adj : (p, p) the adjusted ``Phi_A``.
    p_mats : (K, p, p) ``dF/ds_k``.  w : (K, K) inverse ReML expected information.
    """

    phi: jnp.ndarray
    phi_adj: jnp.ndarray
    p_mats: jnp.ndarray
    w: jnp.ndarray


class KRTest(NamedTuple):
    """One Kenward-Roger test: scaled ``f`` statistic, numerator ``ndf``, denominator
    ``ddf``, ``pval``, and the ``scaling`` applied to the Wald-type F."""

    f: jnp.ndarray
    ndf: jnp.ndarray
    ddf: jnp.ndarray
    pval: jnp.ndarray
    scaling: jnp.ndarray


@jax.custom_jvp
def f_sf(f, ndf, ddf):
    """Upper tail ``P(F(ndf, ddf) > f)``.

    Differentiable in ``f`` (minus the F density) and in ``ddf`` (a central difference of
    relative step 1e-4, error ~1e-8 relative: JAX has no derivative of ``betainc`` in its
    parameters); ``ndf`` is a count (no derivative)."""
    return betainc(0.5 * ddf, 0.5 * ndf, ddf / (ddf + ndf * f))


@f_sf.defjvp
def _f_sf_jvp(primals, tangents):
    f, ndf, ddf = primals
    df, _, dddf = tangents
    a, b = 0.5 * ddf, 0.5 * ndf
    x = ddf / (ddf + ndf * f)
    log_density = (a - 1.0) * jnp.log(x) + (b - 1.0) * jnp.log1p(-x) - betaln(a, b)
    dx_df = -ddf * ndf / (ddf + ndf * f) ** 2
    h = 1e-4 * ddf
    d_ddf = (f_sf(f, ndf, ddf + h) - f_sf(f, ndf, ddf - h)) / (2.0 * h)
    tangent = jnp.exp(log_density) * dx_df * _tangent(df) + d_ddf * _tangent(dddf)
    return f_sf(f, ndf, ddf), tangent


def _tangent(t):
    """A symbolic or integer tangent as a number (zero)."""
    return 0.0 if t is None or getattr(t, "dtype", None) == jax.dtypes.float0 else t


def kr_ingredients(quad: Quad, sigma2, p: int) -> KRIngredients:
    """Compute :class:`KRIngredients` at the ReML estimate ``sigma2`` (K,)."""

    def info_fixed(s):
        return quad(s)[0][:p, :p]

    phi, _ = sym_inverse(info_fixed(sigma2))
    p_mats = jnp.moveaxis(jax.jacfwd(info_fixed)(sigma2), -1, 0)  # (K, p, p)
    hess = jax.jacfwd(jax.jacfwd(info_fixed))(sigma2)  # (p, p, K, K)
    q_mats = 0.5 * jnp.moveaxis(hess, (2, 3), (0, 1))  # (K, K, p, p)
    info = expected_information(quad, sigma2, p, "reml")
    w = jnp.linalg.pinv(0.5 * (info + info.T), hermitian=True)
    u = jnp.einsum("kl,klab->ab", w, q_mats) - jnp.einsum("kl,kab,bc,lcd->ad", w, p_mats, phi, p_mats)
    phi_adj = phi + 2.0 * phi @ u @ phi
    return KRIngredients(phi, 0.5 * (phi_adj + phi_adj.T), p_mats, w)


def rotated_weights(d, sigma2):
    """(6, m, n) weights of the two-component KR crosses (:func:`kr_from_crosses`):
    ``w, d w^2, w^2, d^2 w^3, d w^3, w^3`` with ``w = 1 / (s_1 d + s_2)``; ``sigma2`` (m, 2)."""
    w = 1.0 / (sigma2[:, :1] * d[None] + sigma2[:, 1:])
    w2, w3 = w * w, w * w * w
    dd = d[None]
    return jnp.stack([w, dd * w2, w2, dd * dd * w3, dd * w3, w3])


def rotated_kr_ingredients(base_rot, x_rot, d, sigma2) -> KRIngredients:
    """:class:`KRIngredients` of two components ``V = s_1 diag(d) + s_2 I`` on rotated columns
    (the structure ``TwoComponent``), in closed form: O(n p^2) per model, no autodiff.

    ``base_rot`` (n, c) rotated shared columns, ``x_rot`` (m, n, p1) rotated per-model columns
    (designs ``[base | x[i]]``), ``d`` (n,), ``sigma2`` (m, 2).  With ``w = 1 / v``,
    ``v = s_1 d + s_2`` and ``d_1 = d``, ``d_2 = 1``: ``F = X'WX``,
    ``P_k = -X' diag(d_k w^2) X``, ``Q_kl = X' diag(d_k d_l w^3) X`` and the ReML expected
    information ``1/2 tr(P V_k P V_l) = 1/2 [sum w^2 d_k d_l - 2 tr(Phi Q_kl) + tr(Phi P_k Phi P_l)]``
    (``P`` the ReML projection) -- the quantities :func:`kr_ingredients` takes by autodiff.
    """
    weights = rotated_weights(d, sigma2)
    ss, xs, xx = weighted_cross(weights, base_rot, x_rot)
    cross = jnp.concatenate([jnp.concatenate([ss, jnp.swapaxes(xs, -1, -2)], -1), jnp.concatenate([xs, xx], -1)], -2)
    return kr_from_crosses(cross, trace_weights(weights, d))


def trace_weights(weights, d):
    """(m, 2, 2) ``sum_n w^2 d_k d_l`` (``d_1 = d``, ``d_2 = 1``) from :func:`rotated_weights`."""
    return jnp.stack(
        [jnp.stack([jnp.sum(weights[1] * d[None], -1), jnp.sum(weights[1], -1)], -1),
         jnp.stack([jnp.sum(weights[1], -1), jnp.sum(weights[2], -1)], -1)], -2,
    )  # fmt: skip


def kr_from_crosses(cross, trace_w) -> KRIngredients:
    """:class:`KRIngredients` from ``cross`` (6, m, p, p), ``X' diag(w_o) X`` for the weights of
    :func:`rotated_weights`, and ``trace_w`` (m, 2, 2) of :func:`trace_weights`
    (see :func:`rotated_kr_ingredients`)."""
    cross = 0.5 * (cross + jnp.swapaxes(cross, -1, -2))
    f, p_mats = cross[0], -jnp.stack([cross[1], cross[2]], axis=1)  # (m, p, p), (m, 2, p, p)
    q_mats = jnp.stack([jnp.stack([cross[3], cross[4]], 1), jnp.stack([cross[4], cross[5]], 1)], 1)
    phi = jax.vmap(lambda a: sym_inverse(a)[0])(f)
    phi_p = jnp.einsum("mab,mkbc->mkac", phi, p_mats)
    info = 0.5 * (
        trace_w - 2.0 * jnp.einsum("mab,mklba->mkl", phi, q_mats) + jnp.einsum("mkab,mlba->mkl", phi_p, phi_p)
    )
    w_inv = jax.vmap(lambda a: jnp.linalg.pinv(0.5 * (a + a.T), hermitian=True))(info)
    u = jnp.einsum("mkl,mklab->mab", w_inv, q_mats) - jnp.einsum("mkl,mkab,mlbc->mac", w_inv, p_mats, phi_p)
    phi_adj = phi + 2.0 * phi @ u @ phi
    return KRIngredients(phi, 0.5 * (phi_adj + jnp.swapaxes(phi_adj, -1, -2)), p_mats, w_inv)


def kr_test(beta, ing: KRIngredients, contrast) -> KRTest:
    """Kenward-Roger F test of ``contrast @ beta = 0``; ``contrast`` (q, p) of full row rank."""
    lmat = jnp.atleast_2d(contrast)
    q = lmat.shape[0]
    phi = ing.phi
    theta = lmat.T @ jnp.linalg.solve(lmat @ phi @ lmat.T, lmat)
    u = jnp.einsum("ab,kbc,cd->kad", theta @ phi, ing.p_mats, phi)  # (K, p, p)
    tr = jnp.trace(u, axis1=1, axis2=2)
    a1 = tr @ ing.w @ tr
    a2 = jnp.einsum("kl,kab,lba->", ing.w, u, u)
    b = (a1 + 6.0 * a2) / (2.0 * q)
    g = ((q + 1.0) * a1 - (q + 4.0) * a2) / ((q + 2.0) * a2)
    den = 3.0 * q + 2.0 * (1.0 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2.0 - g) / den
    v0 = 1.0 + c1 * b
    v0 = jnp.where(jnp.abs(v0) < 1e-10, 0.0, v0)
    v1 = 1.0 - c2 * b
    v2 = 1.0 - c3 * b
    rho = ((1.0 - a2 / q) / v1) ** 2 * v0 / (v2 * q)
    ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
    scaling = jnp.where(jnp.abs(ddf - 2.0) < 1e-2, 1.0, ddf * (1.0 - a2 / q) / (ddf - 2.0))
    lb = lmat @ beta
    f_raw = lb @ jnp.linalg.solve(lmat @ ing.phi_adj @ lmat.T, lb) / q
    f = scaling * f_raw
    return KRTest(f, jnp.asarray(q, f.dtype), ddf, f_sf(f, q, ddf), scaling)


__all__ = [
    "KRIngredients",
    "KRTest",
    "f_sf",
    "kr_ingredients",
    "kr_test",
    "kr_from_crosses",
    "rotated_kr_ingredients",
    "rotated_weights",
    "trace_weights",
]
