"""``mmest`` marker scans with two components: MM4LMM's iteration-for-iteration replay at its
own (default) criteria, the GWAS scans' exact engine (grid + Newton on the rotated data) when
asked to converge tightly or with ``algorithm="newton"``.

Tolerances: against our MM replay at crit 1e-12, the exact engine's log-likelihood is never
lower (1e-12 relative), Wald p-values agree to 1e-6 in log10 and sigma2 to 1e-5 relative (MM's
relative-change rule stops early where the likelihood is flat: measured up to 7e-6, median
3e-7); against ``gwas()`` (same engine family, float64 rotation, tight tolerance) sigma2 and
p-values agree to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mm4lmm_jax as mj

TIGHT_MM = dict(crit_var=1e-12, crit_loglik=1e-12, max_iter=100_000, algorithm="mm", verbose=False)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n, m = 150, 40
    g = rng.binomial(2, 0.3, (n, 400)).astype(float)
    g -= g.mean(0)
    kin = g @ g.T / 400
    x = rng.binomial(2, rng.uniform(0.05, 0.5, m), (n, m)).astype(float)
    u = np.linalg.cholesky(kin + 1e-6 * np.eye(n)) @ rng.normal(size=n)
    y = rng.normal(size=n) + 0.8 * u + 0.4 * x[:, 0]
    cof = rng.normal(size=(n, 2))
    return dict(y=y, cofactor=cof, x=x, var_list={"K": kin, "E": np.eye(n)})


@pytest.fixture(scope="module")
def mm_reml(data):
    """Our MM replay at crit 1e-12 (the slow reference, computed once)."""
    return mj.mmest(**data, **TIGHT_MM)


def _p(res) -> np.ndarray:
    """(m, p1) Wald p-values of each model's marker columns (those after the cofactors)."""
    table = mj.anova_test(res)
    return np.array([table[nm]["pval"].to_numpy()[3:] for nm in res.names])


def _agree(exact, mm):
    assert exact.algorithm == "newton" and mm.algorithm == "mm"
    assert np.all(exact.converged_array)
    assert np.all(exact.loglik_array >= mm.loglik_array - 1e-12 * np.abs(mm.loglik_array))
    np.testing.assert_allclose(exact.sigma2_array, mm.sigma2_array, rtol=1e-5)
    np.testing.assert_allclose(np.log10(_p(exact)), np.log10(_p(mm)), atol=1e-6)


def test_default_criteria_replay_mm4lmm_tight_ones_route_to_the_exact_engine(data, mm_reml):
    default = mj.mmest(**data, verbose=False)
    assert default.algorithm == "mm"
    replay = mj.mmest(**data, algorithm="mm", verbose=False)
    assert default.n_iter_array.tolist() == replay.n_iter_array.tolist()
    tight = mj.mmest(**data, crit_var=1e-6, crit_loglik=1e-6, verbose=False)
    assert tight.algorithm == "newton"
    _agree(tight, mm_reml)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_exact_engine_equals_the_tight_mm_replay(data, method, mm_reml):
    exact = mj.mmest(**data, method=method, algorithm="newton", verbose=False)
    _agree(exact, mm_reml if method == "reml" else mj.mmest(**data, method=method, **TIGHT_MM))


def test_marker_sets_and_a_boundary_model(data):
    """X as a list (two-column models) and a response without kinship signal (sigma2_K at or
    near 0 for every model)."""
    x = [data["x"][:, [i, i + 1]] for i in range(0, 20, 2)]
    kw = {**data, "x": x}
    _agree(mj.mmest(**kw, algorithm="newton", verbose=False), mj.mmest(**kw, **TIGHT_MM))
    rng = np.random.default_rng(5)
    flat = {**data, "y": rng.normal(size=data["y"].size), "x": data["x"][:, :10]}
    exact = mj.mmest(**flat, algorithm="newton", verbose=False)
    mm = mj.mmest(**flat, **TIGHT_MM)
    assert np.all(exact.loglik_array >= mm.loglik_array - 1e-9)
    assert np.all(exact.sigma2_array[:, 0] < 1e-3 * exact.sigma2_array[:, 1])
    np.testing.assert_allclose(exact.sigma2_array[:, 1], mm.sigma2_array[:, 1], rtol=1e-5)
    np.testing.assert_allclose(np.log10(_p(exact)), np.log10(_p(mm)), atol=1e-6)


def test_exact_engine_equals_gwas(data):
    cof = data["cofactor"]
    exact = mj.mmest(**data, algorithm="newton", verbose=False)
    scan = mj.gwas(data["y"], data["x"], kinship=data["var_list"]["K"], covariates=cof, progress=False,
                   rotation_dtype="float64", tol=1e-9, max_iter=100)  # fmt: skip
    np.testing.assert_allclose(scan.sigma2_g, exact.sigma2_array[:, 0], rtol=1e-6)
    np.testing.assert_allclose(scan.sigma2_e, exact.sigma2_array[:, 1], rtol=1e-6)
    np.testing.assert_allclose(np.log10(scan.p_chi2), np.log10(_p(exact)[:, 0]), atol=1e-6)


def test_formula_with_a_marker_by_cofactor_interaction(data):
    """``~ Trial + Xeffect + Xeffect:Trial`` (per-model designs built from a formula): the exact
    engine equals the tight MM replay as above, every term's Wald p-value."""
    rng = np.random.default_rng(7)
    n = data["y"].size
    trial = np.where(rng.random(n) < 0.5, "T1", "T2")
    x = pd.DataFrame(data["x"][:, :6], columns=[f"m{i}" for i in range(6)])
    y = data["y"] + 0.5 * (trial == "T2")
    kw = dict(cofactor=pd.DataFrame({"Trial": trial}), formula="~ Trial + Xeffect + Xeffect:Trial", x=x,
              var_list=data["var_list"])  # fmt: skip
    exact = mj.mmest(y, algorithm="newton", verbose=False, **kw)
    mm = mj.mmest(y, **kw, **TIGHT_MM)
    assert exact.algorithm == "newton" and np.all(exact.converged_array)
    assert np.all(exact.loglik_array >= mm.loglik_array - 1e-12 * np.abs(mm.loglik_array))
    np.testing.assert_allclose(exact.sigma2_array, mm.sigma2_array, rtol=1e-5)
    ta, tb = mj.anova_test(exact), mj.anova_test(mm)
    for name in exact.names:
        assert len(ta[name]) == 4  # intercept, Trial, Xeffect and the interaction
        np.testing.assert_allclose(np.log10(ta[name]["pval"]), np.log10(tb[name]["pval"]), atol=1e-6)


@pytest.mark.parametrize(
    "algorithm, third", [("newton", False), ("mm", False), ("mm", True), ("newton", True)],
    ids=["rotated", "mm-replay", "mm-replay-K3", "newton-K3"],
)  # fmt: skip
def test_date_coded_or_unscaled_cofactors_give_the_centred_answer(data, algorithm, third):
    """A cofactor coded as a date (offset 2e7), or that date times 1e3, or days times 1e12: every
    engine (MM4LMM's replay at its default criteria, the rotated exact engine, the K = 3 Newton
    path) fits on an orthonormal basis of the shared columns, so sigma2, the marker's effect,
    its Wald and Kenward-Roger p-values equal those with the centred days (1e-8; before, the MM
    replay moved p-values by 3e-3 in log10 and sigma2 by 2 % silently, the exact engine left
    every model unconverged); the MM replay takes the same iterations; the ReML log-likelihood
    differs by the log-determinant of the reparameterisation."""
    rng = np.random.default_rng(9)
    days = rng.integers(0, 365, data["y"].size).astype(float)
    var_list = dict(data["var_list"])
    if third:
        var_list = {"K": var_list["K"], "B": np.kron(np.eye(30), np.ones((5, 5))), "E": var_list["E"]}
    kw = dict(x=data["x"][:, :6], var_list=var_list, algorithm=algorithm, verbose=False)
    if algorithm == "newton":
        kw.update(crit_var=1e-6, crit_loglik=1e-6)
    y = data["y"] + 0.004 * days
    ref = mj.mmest(y, cofactor=(days - days.mean())[:, None], **kw)
    kr_ref = np.array([t["pval"].iloc[-1] for t in mj.anova_test(ref, type="KR").values()])
    for cof, scale in (((20230101 + days), 1.0), ((20230101 + days) * 1e3, 1e3), (days * 1e12, 1e12)):
        res = mj.mmest(y, cofactor=cof[:, None], **kw)
        assert res.algorithm == algorithm
        assert np.all(res.converged_array) or algorithm == "mm"
        np.testing.assert_array_equal(res.converged_array, ref.converged_array)
        if algorithm == "mm":
            np.testing.assert_array_equal(res.n_iter_array, ref.n_iter_array)
        # a component near 0 (B, ~1e-6 of the total) is compared on the total's scale
        np.testing.assert_allclose(res.sigma2_array, ref.sigma2_array, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(res.beta_array[:, -1], ref.beta_array[:, -1], rtol=1e-8)
        np.testing.assert_allclose(np.log10(_p(res)), np.log10(_p(ref)), atol=1e-8)
        kr = np.array([t["pval"].iloc[-1] for t in mj.anova_test(res, type="KR").values()])
        np.testing.assert_allclose(np.log10(kr), np.log10(kr_ref), atol=1e-8)
        np.testing.assert_allclose(res.loglik_array, ref.loglik_array - np.log(scale), atol=1e-6)


def test_a_date_in_a_formula_design(data):
    """Per-model designs from a formula (``~ D + Trial + Xeffect + Xeffect:Trial``, no shared
    columns): each model's columns are orthonormalised, so a date-coded ``D`` gives the
    centred answer for sigma2 and every term but the intercept (whose meaning changes)."""
    rng = np.random.default_rng(11)
    n = data["y"].size
    days = rng.integers(0, 365, n).astype(float)
    trial = np.where(rng.random(n) < 0.5, "T1", "T2")
    x = pd.DataFrame(np.where(data["x"][:, :4] > 0, "A", "B"), columns=[f"m{i}" for i in range(4)])
    y = data["y"] + 0.004 * days + 0.3 * (trial == "T2")
    form = "~ D + Trial + Xeffect + Xeffect:Trial"
    fits = [
        mj.mmest(
            y,
            cofactor=pd.DataFrame({"D": d, "Trial": trial}),
            x=x,
            formula=form,
            var_list=data["var_list"],
            verbose=False,
        )  # fmt: skip
        for d in (days - days.mean(), 20230101 + days)
    ]
    np.testing.assert_array_equal(fits[0].n_iter_array, fits[1].n_iter_array)
    np.testing.assert_allclose(fits[1].sigma2_array, fits[0].sigma2_array, rtol=1e-8)
    ta, tb = (mj.anova_test(f) for f in fits)
    for name in fits[0].names:
        np.testing.assert_allclose(np.log10(tb[name]["pval"])[1:], np.log10(ta[name]["pval"])[1:], atol=1e-8)
