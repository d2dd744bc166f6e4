"""The three-component engine with one low-rank component (core/_lowrank_scan.py): its
interpolant against the exact algebra, its fits against MM run to 1e-12 (sigma2, log-likelihood,
beta), its refits outside the box, and the choice of the engine."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import mm4lmm_jax as mj
from mm4lmm_jax._estimate import PreparedModel, lowrank_split
from mm4lmm_jax.core._lowrank_scan import (
    LowRankScan,
    _box_parts,
    box_products,
    exact_parts,
    prepare_box,
    rotate_components,
)
from mm4lmm_jax.model._data import validate_components


@pytest.fixture(scope="module")
def data():
    """150 individuals: a kinship, 9 groups (iid effects), two covariate columns, 12 markers
    (two columns each: the marker and its product with a covariate); marker 3 has an effect."""
    rng = np.random.default_rng(5)
    n, m, r = 150, 12, 9
    w = rng.normal(size=(n, 300))
    kin = w @ w.T / 300
    z = np.eye(r)[rng.integers(0, r, n)]
    c = np.column_stack([np.ones(n), rng.normal(size=n)])
    g = rng.binomial(2, 0.3, size=(n, m)).astype(float)
    cov = 0.7 * kin + 0.4 * z @ z.T + 0.5 * np.eye(n)
    y = c @ [1.0, 0.5] + rng.multivariate_normal(np.zeros(n), cov) + 0.8 * g[:, 3]
    x = np.stack([g.T, g.T * c[None, :, 1]], axis=2)
    return dict(n=n, m=m, kin=kin, z=z, c=c, y=y, x=x)


def _components(data, order=("K", "G", "E")):
    vl = {"K": data["kin"], "G": np.eye(data["z"].shape[1]), "E": np.eye(data["n"])}
    zl = {"K": None, "G": data["z"], "E": None}
    return {k: vl[k] for k in order}, {k: zl[k] for k in order}


def _fit(data, method, order=("K", "G", "E")):
    vl, zl = _components(data, order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eng = PreparedModel(data["y"], data["c"], ["(Intercept)", "c"], vl, zl, method=method)
        res = eng.fit(data["x"], [f"m{j}" for j in range(data["m"])], ["g", "gc"])
    return eng, res


def test_interpolant_matches_the_exact_algebra(data):
    """``A'V^-1A`` and ``log|V|`` of the box's interpolant equal the Woodbury algebra
    (:func:`exact_parts`) inside the box: 1e-10 relative to the diagonal, 1e-9 absolute."""
    rot = rotate_components(data["kin"], data["z"])
    f = np.column_stack([rot.u.T @ data["c"], rot.u.T @ data["y"]])
    x_rot = np.einsum("ij,mjp->mip", rot.u.T, data["x"])
    box, maps = prepare_box(rot, f, np.array([1.2, 0.6]))
    xf, xx = box_products(maps, x_rot)
    (s_lo, s_hi), (u_lo, u_hi) = np.asarray(box.bounds)
    c0, c2 = np.asarray(box.offsets)
    rng = np.random.default_rng(0)
    for _ in range(6):
        s, u = rng.uniform(s_lo, s_hi), rng.uniform(u_lo, u_hi)
        i = int(rng.integers(data["m"]))
        mat, ld = _box_parts(jnp.asarray([s, u]), box, jnp.asarray(xf[i]), jnp.asarray(xx[i]), ((0, 0),))
        a = np.column_stack([f[:, :2], x_rot[i], f[:, 2:]])
        ref, ld_ref = exact_parts(jnp.asarray([np.exp(s) - c0, np.exp(u) - c2]), rot.d, rot.zt, a)
        scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
        assert np.max(np.abs(np.asarray(mat[0]) - np.asarray(ref)) / scale) < 1e-10
        assert abs(float(ld[0]) - float(ld_ref)) < 1e-9


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_fits_equal_tight_mm(data, method):
    """Every model (two marker columns) at the optimum MM reaches at criteria 1e-12: sigma2 1e-7
    relative, log-likelihood 1e-9 (never below MM's), beta 1e-6 SE."""
    eng, res = _fit(data, method)
    assert isinstance(eng.fitter.inner, LowRankScan)
    assert (res.status_array == 0).all()
    vl, zl = _components(data)
    mm = mj.mmest(data["y"], cofactor=data["c"][:, 1:], x=list(data["x"]), var_list=vl, z_list=zl, method=method,
                  algorithm="mm", crit_var=1e-12, crit_loglik=1e-12, max_iter=100000, verbose=False)  # fmt: skip
    np.testing.assert_allclose(res.sigma2_array, mm.sigma2_array, rtol=1e-7)
    np.testing.assert_allclose(res.loglik_array, mm.loglik_array, rtol=0, atol=1e-9)
    assert (res.loglik_array >= mm.loglik_array - 1e-10).all()
    se = np.sqrt(np.diagonal(mm.var_beta_array, axis1=1, axis2=2))
    assert np.max(np.abs(res.beta_array - mm.beta_array) / se) < 1e-6


def test_component_order_is_the_callers(data):
    """The low-rank component given first: the same fits, sigma2 in the caller's order."""
    _, ref = _fit(data, "reml")
    _, res = _fit(data, "reml", order=("G", "K", "E"))
    np.testing.assert_allclose(res.sigma2_array, ref.sigma2_array[:, [1, 0, 2]], rtol=1e-12)
    np.testing.assert_allclose(res.loglik_array, ref.loglik_array, rtol=0, atol=1e-10)


def test_optima_outside_the_box_are_refitted(data, monkeypatch):
    """A box too narrow for every optimum: the wider box, then the exact fits take over, with
    the same results (1e-9)."""
    _, ref = _fit(data, "reml")
    monkeypatch.setattr(LowRankScan.__init__, "__kwdefaults__", {"count": 10, "half_width": 1e-4})
    eng, res = _fit(data, "reml")
    assert eng.fitter.inner.half_width == 1e-4 and eng.fitter.inner.n_fallback > 0
    assert (res.status_array == 0).all()
    np.testing.assert_allclose(res.sigma2_array, ref.sigma2_array, rtol=1e-9)
    np.testing.assert_allclose(res.loglik_array, ref.loglik_array, rtol=0, atol=1e-9)


def test_the_engine_is_chosen_for_a_kinship_a_low_rank_component_and_the_error(data):
    """``lowrank_split``: the kinship, the low-rank factor (R scaled in) and the caller's order;
    ``None`` for two full-rank kinships, four components or a non-identity error."""
    n = data["n"]
    vl, zl = _components(data, ("G", "K", "E"))
    vl["G"] = 2.0 * np.eye(data["z"].shape[1])
    kin, z, order = lowrank_split(validate_components(vl, zl, n))
    np.testing.assert_array_equal(kin, data["kin"])
    np.testing.assert_allclose(z @ z.T, 2.0 * data["z"] @ data["z"].T, atol=1e-12)
    assert order == (1, 0, 2)
    full = {"K": data["kin"], "L": data["kin"] + np.eye(n), "E": np.eye(n)}
    assert lowrank_split(validate_components(full, None, n)) is None
    four_v = {"G": vl["G"], "K": data["kin"], "H": np.eye(data["z"].shape[1]), "E": np.eye(n)}
    four_z = {"G": data["z"], "K": None, "H": data["z"], "E": None}
    assert lowrank_split(validate_components(four_v, four_z, n)) is None
    vl_bad = dict(vl, E=np.diag(np.linspace(1, 2, n)))
    assert lowrank_split(validate_components(vl_bad, zl, n)) is None
