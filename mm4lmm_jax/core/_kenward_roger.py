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

from ._gls import sym_inverse
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


__all__ = ["KRIngredients", "KRTest", "f_sf", "kr_ingredients", "kr_test"]
