"""The ``K >= 3`` scan by Newton's method (:mod:`mm4lmm_jax.core._newton_path`).

Checked here: the expansion's pieces against direct linear algebra (forms, log-determinant);
the analytic derivatives against autodiff; the scan against each model fitted alone and
against MM at a tight criterion (sigma2 1e-6 relative, log-likelihood 1e-9 relative);
Henderson and dense forms against each other; the exact fallback; ML; per-model designs;
the choice of algorithm and bad input.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixture_cases import as_vector, expected_models, load_case, mmest_kwargs

import mm4lmm_jax as mj
import mm4lmm_jax._estimate as estimate
import mm4lmm_jax.core._newton_path as newton_path
from mm4lmm_jax.core._expansion import (
    evaluate,
    evaluate_derivatives,
    form_coefficients,
    logdet_series,
    monomial_exponents,
    spectral_scales,
    word_set,
)
from mm4lmm_jax.core._newton_path import NewtonScan
from mm4lmm_jax.core._newton_scan import exact_derivatives, exact_loglik, maximise
from mm4lmm_jax.core._structures import Dense, Henderson
from mm4lmm_jax.model._data import validate_components

TIGHT = dict(crit_var=1e-12, crit_loglik=1e-12, max_iter=20000, verbose=False)


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def simulate(n=160, q=16, m=8, seed=1, residual_identity=True):
    rng = np.random.default_rng(seed)

    def kin(size):
        g = rng.binomial(2, 0.3, size=(size, 60)).astype(float)
        g -= g.mean(axis=0)
        k = g @ g.T / 60
        return k / np.mean(np.diag(k)) + 0.05 * np.eye(size)

    k1, k2 = kin(q), kin(q)
    z1, z2 = np.eye(q)[rng.integers(0, q, n)], np.eye(q)[rng.integers(0, q, n)]
    trial = rng.integers(0, 2, n).astype(float)
    x = rng.binomial(2, 0.35, size=(n, m)).astype(float)
    y = (
        1.0
        + 0.4 * trial
        + 0.5 * x[:, 0]
        + z1 @ np.linalg.cholesky(k1) @ rng.normal(size=q)
        + 0.8 * z2 @ np.linalg.cholesky(k2) @ rng.normal(size=q)
        + rng.normal(size=n)
    )
    r = np.eye(n) if residual_identity else np.diag(1.0 + 0.5 * (np.arange(n) % 3))
    return dict(y=y, cofactor=trial[:, None], x=x, var_list={"A": k1, "B": k2, "E": r}, z_list=[z1, z2, np.eye(n)])


@pytest.fixture(scope="module")
def data():
    return simulate()


@pytest.fixture(scope="module")
def newton_scan(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mj.mmest(**data, algorithm="newton", verbose=False)


# ------------------------------------------------------------------ the expansion's pieces
def _random_family(d=10, k=2, dense=False, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(d, d))
    a0 = b @ b.T / d + np.eye(d)
    if dense:
        e = np.stack([(lambda c: c @ c.T / d)(rng.normal(size=(d, d))) for _ in range(k)])
    else:
        e = (rng.random((k, d)) < 0.5).astype(float) + 0.1
    return jnp.asarray(a0), jnp.asarray(e), jnp.asarray(rng.normal(size=(d, 2)))


@pytest.mark.parametrize("dense", [False, True])
def test_forms_and_logdet_series_match_direct_algebra(dense):
    """Within the radius (r = sum |u_k| = 0.1) the forms are exact to r^10 and the
    log-determinant to r^11 (relative to their size)."""
    a0, e, h = _random_family(dense=dense)
    a0_inv = jnp.linalg.inv(a0)
    lam = spectral_scales(a0_inv, e)
    e_s = e / (lam[:, None] if e.ndim == 2 else lam[:, None, None])
    order, ld_order = 4, 10
    ws = word_set(a0_inv, e_s, h, order)
    coef = form_coefficients(ws, ws, 2, order)
    ld = logdet_series(a0_inv, e_s, ld_order)
    for u in ([0.06, -0.04], [-0.1, 0.0], [0.02, 0.05]):
        u = jnp.asarray(u)
        a = a0 + (jnp.diag(u @ e_s) if e.ndim == 2 else jnp.tensordot(u, e_s, axes=1))
        direct = h.T @ jnp.linalg.solve(a, h)
        approx = evaluate(coef, u, monomial_exponents(2, 2 * order + 1))
        assert np.max(np.abs(approx - direct)) < 1e-9 * np.max(np.abs(direct))
        ld_direct = jnp.linalg.slogdet(a)[1] - jnp.linalg.slogdet(a0)[1]
        ld_approx = evaluate(ld, u, monomial_exponents(2, ld_order))
        assert abs(float(ld_approx - ld_direct)) < 1e-10 * a0.shape[0]


def test_spectral_scale_bounds_the_series_ratio():
    a0, e, _ = _random_family(dense=False)
    a0_inv = jnp.linalg.inv(a0)
    lam = spectral_scales(a0_inv, e)
    for k in range(2):
        ev = np.linalg.eigvals(np.asarray(a0_inv @ jnp.diag(e[k])))
        assert abs(np.max(np.abs(ev)) - float(lam[k])) < 1e-10


def test_polynomial_derivatives_match_autodiff():
    exps = monomial_exponents(3, 5)
    coef = jnp.asarray(np.random.default_rng(2).normal(size=(exps.shape[0], 2)))
    u = jnp.asarray([0.3, -0.2, 0.1])
    val, grad, hess = evaluate_derivatives(coef, u, exps)
    f = lambda v: evaluate(coef, v, exps)  # noqa: E731
    np.testing.assert_allclose(val, f(u), rtol=1e-13)
    np.testing.assert_allclose(grad, jax.jacfwd(f)(u).T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(hess, jnp.transpose(jax.hessian(f)(u), (1, 2, 0)), rtol=1e-12, atol=1e-13)


def test_maximise_with_autodiff_and_bounds():
    """Autodiff derivatives by default; a bound that binds holds its coordinate there."""
    q = jnp.asarray([[2.0, 0.5], [0.5, 1.0]])
    target = jnp.asarray([0.3, 2.0])

    def f(x):
        return -(x - target) @ q @ (x - target) + jnp.sum(jnp.sin(x)) * 0.1

    res = maximise(f, jnp.zeros(2), lower=-1.0, upper=1.0, tol=1e-12)
    assert int(res.status) == 0 and float(res.value[1]) == 1.0
    g = jax.grad(f)(res.value)
    assert abs(float(g[0])) < 1e-10 and float(g[1]) > 0  # free coordinate stationary, bound active
    skipped = maximise(f, jnp.zeros(2), skip=True)
    assert int(skipped.n_steps) == 0 and np.all(np.asarray(skipped.value) == 0.0)


@pytest.mark.parametrize("form", ["henderson", "dense"])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_exact_derivatives_match_autodiff(form, method):
    d = simulate(n=90, q=9, m=2, residual_identity=False)
    comps = validate_components(d["var_list"], d["z_list"], 90)
    cls = Henderson if form == "henderson" else Dense
    scan = NewtonScan(d["y"], cls.prepare(d["y"], comps.z_list, comps.v_list, comps.covariances(), newton=True), method)
    cols = np.column_stack([np.ones(90), d["x"][:, 0], d["y"]])
    h, a_w = scan.columns(cols)
    s = scan.s_matrix(a_w, a_w)
    t = jnp.asarray([0.4, -0.7])
    val, grad, hess = exact_derivatives(t, scan.fam, h, s, 90, method)
    f = lambda v: exact_loglik(v, scan.fam, h, s, 90, method).loglik  # noqa: E731
    assert abs(float(val - f(t))) < 1e-10 * abs(float(f(t)))
    np.testing.assert_allclose(grad, jax.grad(f)(t), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(hess, jax.hessian(f)(t), rtol=1e-8, atol=1e-9)


# ------------------------------------------------------------------ the scan
def test_auto_uses_newton_for_tight_k3_scans(data, newton_scan):
    assert newton_scan.algorithm == "newton" and newton_scan.path == "henderson"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = mj.mmest(**{**data, "x": data["x"][:, :2]}, verbose=False)
    assert default.algorithm == "mm"  # MM4LMM's default stopping: MM, step for step


def test_scan_matches_tight_mm_and_single_model_fits(data, newton_scan):
    assert newton_scan.converged_array.all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm = mj.mmest(**data, algorithm="mm", **TIGHT)
    assert rel(newton_scan.sigma2_array, mm.sigma2_array) < 1e-6
    assert rel(newton_scan.loglik_array, mm.loglik_array) < 1e-9
    assert rel(newton_scan.beta_array, mm.beta_array) < 1e-6
    # tight MM stops short of the optimum, never beyond it
    assert np.all(newton_scan.loglik_array >= mm.loglik_array - 1e-9 * np.abs(mm.loglik_array))
    # each model alone, by the exact path (no expansion)
    n = data["y"].size
    comps = validate_components(data["var_list"], data["z_list"], n)
    structure = Henderson.prepare(data["y"], comps.z_list, comps.v_list, comps.covariances(), newton=True)
    scan = NewtonScan(data["y"], structure, "reml")
    for j in (0, 3, 7):
        design = np.column_stack([np.ones(n), data["cofactor"][:, 0], data["x"][:, j]])
        alone, _ = scan.fit_exact(design, newton_scan.sigma2_array[j] * 1.3)
        assert rel(newton_scan.sigma2_array[j], alone.sigma2) < 1e-8
        assert abs(newton_scan.loglik_array[j] - alone.loglik) < 1e-9 * abs(alone.loglik)


def test_fallback_gives_the_same_fits(data, newton_scan, monkeypatch):
    """With a vanishing radius every model goes to the exact fallback: same answers (the
    general path, not the low-rank engine these components would get)."""
    monkeypatch.setattr(newton_path, "R_MAX", 1e-9)
    monkeypatch.setattr(estimate, "lowrank_split", lambda comps: None)
    refits = []
    original = NewtonScan._refit_exact
    monkeypatch.setattr(
        NewtonScan, "_refit_exact", lambda self, e, idx, f: (refits.append(idx), original(self, e, idx, f))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mj.mmest(**{**data, "x": data["x"][:, :5]}, algorithm="newton", verbose=False)
    assert [list(i) for i in refits] == [[0, 1, 2, 3, 4]]
    assert res.converged_array.all()
    assert rel(res.sigma2_array, newton_scan.sigma2_array[:5]) < 1e-8
    assert rel(res.loglik_array, newton_scan.loglik_array[:5]) < 1e-11


def test_henderson_and_dense_forms_agree():
    d = simulate(n=120, q=12, m=4, seed=3, residual_identity=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hen = mj.mmest(**d, algorithm="newton", henderson=True, verbose=False)
        den = mj.mmest(**d, algorithm="newton", henderson=False, verbose=False)
    assert rel(hen.sigma2_array, den.sigma2_array) < 1e-7
    assert rel(hen.loglik_array, den.loglik_array) < 1e-10
    assert rel(hen.var_beta_array, den.var_beta_array) < 1e-6


def test_ml_scan_matches_tight_mm():
    d = simulate(n=120, q=12, m=4, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nt = mj.mmest(**d, method="ml", algorithm="newton", verbose=False)
        mm = mj.mmest(**d, method="ml", algorithm="mm", **TIGHT)
    assert nt.converged_array.all()
    assert rel(nt.sigma2_array, mm.sigma2_array) < 1e-6
    assert rel(nt.loglik_array, mm.loglik_array) < 1e-9


def test_per_model_designs(data):
    n = data["y"].size
    x = {"one": data["x"][:, :1], "two": data["x"][:, 1:3], "three": data["x"][:, 3:4]}
    kw = {**data, "x": x}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nt = mj.mmest(**kw, algorithm="newton", verbose=False)
        mm = mj.mmest(**kw, algorithm="mm", **TIGHT)
    assert nt.names == ["one", "two", "three"] and nt.n_obs == n
    assert rel(nt.sigma2_array, mm.sigma2_array) < 1e-6
    assert rel(nt.loglik_array, mm.loglik_array) < 1e-9


K3_TIGHT = [
    "hybrid_markers_interaction",
    "hybrid_ml",
    "hybrid_reml_formula",
    "hybrid_reml_matrix",
    "hybrid_reml_no_henderson",
    "lme4_crossed",
]


@pytest.mark.parametrize("name", K3_TIGHT)
def test_k3_fixtures_with_newton(name):
    """MM4LMM's tight (1e-10) K >= 3 cases, every model by Newton: the same tolerances as
    ``test_fixtures.test_tight_cases_match`` (sigma2 1e-6, log-likelihood 1e-9)."""
    case = load_case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mj.mmest(**{**mmest_kwargs(case), "algorithm": "newton"})
    assert res.algorithm == "newton" and res.converged_array.all()
    for fit, m in zip(res, expected_models(case), strict=True):
        assert rel(fit.sigma2.to_numpy(), as_vector(m["Sigma2"])) < 1e-6, m["name"]
        assert rel(fit.loglik_mm4lmm, m["LogLik"]) < 1e-9, m["name"]


def test_bad_algorithm_arguments(data):
    with pytest.raises(ValueError, match="algorithm must be"):
        mj.mmest(**data, algorithm="bfgs")
    two = {**data, "var_list": {"A": data["var_list"]["A"], "E": data["var_list"]["B"]}}
    two["z_list"] = [data["z_list"][0], data["z_list"][1]]  # last covariance Z_B B Z_B': singular
    with pytest.raises(ValueError, match="three or more.*last one singular"):
        mj.mmest(**two, algorithm="newton")
