"""``anova_test``, ``mmvcov``, ``mmblup`` against MM4LMM 3.0.3, pbkrtest and lmerTest.

Tolerances and why:

* Wald tables through the whole pipeline: statistic within ``1e-6 * max(stat, 1)`` and
  p-value within ``1e-6 * max(stat, 1)`` in ``log p``.  Our ``beta``/``var_beta`` sit
  within ~1e-6 of MM4LMM's (a flat optimum, see ``test_fixtures.py``), so a statistic near
  0 has no meaningful relative error and a p-value of 1e-232 moves with ``stat / 2`` in
  log scale.  The test formulas themselves are checked on MM4LMM's own ``Beta``/``VarBeta``
  at 1e-9 relative.
* Kenward-Roger F and ddf: 1e-5 relative.  MM4LMM reports p = 0 where the exact upper tail
  is below ~1e-16 (it computes ``1 - pf``); there we check ours is below 1e-15.
* ``mmvcov`` and BLUPs: 1e-6 (relative for vcov/SE, of ``max |u|`` for BLUPs).  MM4LMM's
  expected information has a different diagonal (``1/2 tr((V_i P)'(V_i P))``) from the
  textbook ``1/2 tr(P V_i P V_i)`` with three or more components: ``convention="mm4lmm"``
  reproduces it and the default is checked against the textbook closed form.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from fixture_cases import fit_case, load_case

import mm4lmm_jax as mj
from mm4lmm_jax.inference._anova import _type1, _wald
from mm4lmm_jax.inference._hypotheses import selection_matrix, term_columns
from mm4lmm_jax.inference._structures import model_design
from mm4lmm_jax.inference._wald import chi2_sf

WALD_KINDS = [
    ("qtl_scan_reml", "TypeI"),
    ("qtl_scan_reml", "TypeIII"),
    ("qtl_scan_reml", "Contrast"),
    ("synthetic_scan", "TypeIII"),
    ("synthetic_xlist", "TypeIII"),
    ("hybrid_reml_matrix", "TypeI"),
    ("hybrid_reml_matrix", "TypeIII"),
    ("hybrid_markers_interaction", "TypeI"),
    ("hybrid_markers_interaction", "TypeIII"),
    ("lme4_crossed", "TypeIII"),
]
CONTRAST = np.array([[0.0, 1.0]])  # the fixtures' contrast: the marker effect


def _expected_table(case, kind, name):
    return np.asarray(case["expected"]["anova"][kind][name]["values"], dtype=float)


def _run(res, kind):
    if kind == "Contrast":
        return mj.anova_test(res, CONTRAST)
    if kind == "KRContrast":
        return mj.anova_test(res, CONTRAST, type="KR")
    if kind.startswith("KR"):
        return mj.anova_test(res, type="KR")
    return mj.anova_test(res, type=kind)


def _check_wald(ours, ref):
    stat, pval = ours[:, 0], ours[:, 1]
    scale = np.maximum(np.abs(ref[:, 0]), 1.0)
    np.testing.assert_array_less(np.abs(stat - ref[:, 0]), 1e-6 * scale)
    positive = ref[:, 1] > 0
    np.testing.assert_array_less(np.abs(np.log(pval[positive]) - np.log(ref[positive, 1])), 1e-6 * scale[positive])
    np.testing.assert_array_equal(ours[:, 2], ref[:, 2])


@pytest.mark.parametrize(("case_name", "kind"), WALD_KINDS)
def test_wald_tables_match_mm4lmm(case_name, kind):
    case = load_case(case_name)
    res = fit_case(case_name)
    table = _run(res, kind)
    for name in case["expected"]["anova"][kind]:
        ref = _expected_table(case, kind, name)
        df = table[name]
        assert df.shape == ref.shape
        if case["expected"]["anova"][kind][name]["rows"]:
            assert list(df.index) == case["expected"]["anova"][kind][name]["rows"]
        _check_wald(df.to_numpy(), ref)


@pytest.mark.parametrize(("case_name", "kind"), WALD_KINDS)
def test_wald_formulas_on_mm4lmm_estimates(case_name, kind):
    """The test formulas applied to MM4LMM's own Beta / VarBeta give its numbers to 1e-9."""
    case = load_case(case_name)
    res = fit_case(case_name)
    for model in case["expected"]["models"]:
        beta = np.asarray(list(model["Beta"].values()) if isinstance(model["Beta"], dict) else model["Beta"], float)
        vb = np.atleast_2d(np.asarray(model["VarBeta"], float))
        attr = np.atleast_1d(model["attr"])
        if kind == "TypeI":
            got = _type1(beta[None], vb[None], term_columns(attr))[0]
        elif kind == "Contrast":
            got = _wald(beta[None], vb[None], CONTRAST)
        else:
            got = np.concatenate(
                [_wald(beta[None], vb[None], selection_matrix(c, beta.size)) for c in term_columns(attr)]
            )
        ref = _expected_table(case, kind, model["name"])
        np.testing.assert_allclose(got[:, 0], ref[:, 0], rtol=1e-9)
        np.testing.assert_allclose(got[:, 1], ref[:, 1], rtol=1e-9, atol=1e-300)
    assert len(res) == len(case["expected"]["models"])


def _check_kr(row, f, ddf, pval, ndf=None):
    np.testing.assert_allclose(row["F"], f, rtol=1e-5)
    np.testing.assert_allclose(row["ddf"], ddf, rtol=1e-5)
    if ndf is not None:
        assert row["ndf"] == ndf
    if pval > 0:
        assert abs(np.log(row["pval"]) - np.log(pval)) < 1e-5 * max(f, 1.0)
    else:  # MM4LMM's 1 - pf underflows to 0
        assert row["pval"] < 1e-15


@pytest.mark.parametrize(
    ("case_name", "kind"), [("qtl_scan_reml", "KR"), ("qtl_scan_reml", "KRContrast"), ("synthetic_scan", "KR_first3")]
)
def test_kenward_roger_matches_mm4lmm(case_name, kind):
    case = load_case(case_name)
    res = fit_case(case_name)
    table = _run(res, kind)
    for name, exp in case["expected"]["anova"][kind].items():
        ref = np.asarray(exp["values"], float)  # rows Stat, pval, ddf; one column per test
        df = table[name]
        assert len(df) == ref.shape[1]
        for j in range(ref.shape[1]):
            _check_kr(df.iloc[j], ref[0, j], ref[2, j], ref[1, j], ndf=1)


@pytest.mark.parametrize("case_name", ["synthetic_scan", "hybrid_reml_matrix"])
def test_kenward_roger_matches_pbkrtest(case_name):
    """pbkrtest's KRmodcomp on the same models (three components for the hybrid case,
    where MM4LMM's own KR fails)."""
    case = load_case(case_name)
    res = fit_case(case_name)
    table = mj.anova_test(res, type="KR")
    for i, model in enumerate(case["expected"]["pbkrtest"]["models"]):
        t = model["tests"]["last_coefficient"]
        _check_kr(table[i].iloc[-1], t["F"], t["ddf"], t["p"], ndf=t["ndf"])


def test_kenward_roger_matches_lmertest_multirow():
    """lmerTest's Type III KR anova: a numeric covariate and a 3-level factor (2-row test),
    three variance components."""
    case = load_case("lme4_crossed")
    ref = case["expected"]["lme4"]["KR_anova"]
    table = mj.anova_test(fit_case("lme4_crossed"), type="KR")[0]
    cols = ref["columns"]
    for row, vals in zip(ref["rows"], ref["values"]):
        v = dict(zip(cols, vals))
        _check_kr(table.loc[row], v["F value"], v["DenDF"], v["Pr(>F)"], ndf=v["NumDF"])


def test_kenward_roger_combination_equals_term():
    """A user contrast selecting the factor's two coefficients equals the Type III KR row."""
    res = fit_case("lme4_crossed")
    table = mj.anova_test(res, type="KR")[0]
    lmat = np.array([[0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    comb = mj.anova_test(res, {"f": lmat}, type="KR")[0]
    np.testing.assert_allclose(comb.loc["f"].to_numpy(), table.loc["f"].to_numpy(), rtol=1e-12)


def test_kenward_roger_batched_equals_chunked():
    """One batched call over all models equals small padded chunks."""
    res = fit_case("synthetic_scan")
    full = mj.anova_test(res, type="KR")
    small = mj.anova_test(res, type="KR", chunk_size=7)
    np.testing.assert_allclose(small.array, full.array, rtol=1e-12)
    assert np.isfinite(full.array).all()


def test_kenward_roger_henderson_equals_dense():
    """The Henderson (Woodbury) structure and the dense one give the same KR."""
    hen, dense = fit_case("hybrid_reml_matrix"), fit_case("hybrid_reml_no_henderson")
    assert hen.path == "henderson" and dense.path == "dense"
    a = mj.anova_test(hen, type="KR")[0].to_numpy()
    b = mj.anova_test(dense, type="KR")[0].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5)


# ----------------------------------------------------------------------------- mmvcov


def _vcov_ref(case, kind):
    exp = case["expected"]["vcov"][kind]
    se = exp["SE"]
    return np.asarray(exp["vcov"]["data"], float), np.asarray(list(se.values()) if isinstance(se, dict) else se, float)


@pytest.mark.parametrize(
    ("case_name", "kind", "convention"),
    [
        ("qtl_null_reml", "Expected", "exact"),
        ("qtl_null_reml", "AI", "exact"),
        ("hybrid_reml_matrix", "AI", "exact"),
        ("hybrid_reml_matrix", "Expected", "mm4lmm"),
        ("hybrid_ml", "Expected", "mm4lmm"),
    ],
)
def test_mmvcov_matches_mm4lmm(case_name, kind, convention):
    case = load_case(case_name)
    out = mj.mmvcov(fit_case(case_name), information=kind, convention=convention)
    vcov, se = _vcov_ref(case, kind)
    np.testing.assert_allclose(out.vcov.to_numpy(), vcov, rtol=1e-6)
    np.testing.assert_allclose(out.se.to_numpy(), se, rtol=1e-6)
    assert list(out.vcov.index) == list(fit_case(case_name).component_names)


def _dense_pieces(res):
    covs = res.problem.components.covariances()
    s = res.sigma2_array[0]
    v = sum(a * c for a, c in zip(s, covs))
    v_inv = np.linalg.inv(v)
    x = model_design(res, 0)
    p_mat = v_inv - v_inv @ x @ np.linalg.solve(x.T @ v_inv @ x, x.T @ v_inv)
    return covs, v_inv, p_mat, res.problem.y


@pytest.mark.parametrize("case_name", ["hybrid_reml_matrix", "hybrid_ml", "qtl_null_reml", "lme4_crossed"])
def test_autodiff_information_equals_closed_forms(case_name):
    """Expected information ``1/2 tr(P V_i P V_j)`` (``V^-1`` for ML) and average
    information ``1/2 y'P V_i P V_j P y`` by autodiff equal their closed forms."""
    res = fit_case(case_name)
    covs, v_inv, p_mat, y = _dense_pieces(res)
    k = len(covs)
    m = p_mat if res.method == "reml" else v_inv
    expected = np.array([[0.5 * np.trace(m @ covs[i] @ m @ covs[j]) for j in range(k)] for i in range(k)])
    got = mj.mmvcov(res).information_matrix.to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    if res.method == "reml":
        py = p_mat @ y
        ai = np.array([[0.5 * py @ covs[i] @ p_mat @ covs[j] @ py for j in range(k)] for i in range(k)])
        np.testing.assert_allclose(mj.mmvcov(res, information="ai").information_matrix.to_numpy(), ai, rtol=1e-9)


def test_observed_information_equals_finite_differences():
    from mm4lmm_jax.core._likelihood import loglik_dense

    res = fit_case("hybrid_reml_matrix")
    covs = np.stack(res.problem.components.covariances())
    x = model_design(res, 0)
    y = res.problem.y
    s0 = res.sigma2_array[0]
    k = s0.size

    def ll(s):
        return float(loglik_dense(s, y, x, covs, "reml"))

    h = 1e-4 * s0
    fd = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            fd[i, j] = -(ll(s0 + ei + ej) - ll(s0 + ei - ej) - ll(s0 - ei + ej) + ll(s0 - ei - ej)) / (4 * h[i] * h[j])
    got = mj.mmvcov(res, information="observed").information_matrix.to_numpy()
    np.testing.assert_allclose(got, fd, rtol=1e-5)


# ----------------------------------------------------------------------------- mmblup


@pytest.mark.parametrize("case_name", ["qtl_null_reml", "hybrid_reml_matrix"])
def test_mmblup_matches_mm4lmm(case_name):
    case = load_case(case_name)
    blups = mj.mmblup(fit=fit_case(case_name))
    assert list(blups) == list(case["expected"]["blup"])
    for name, exp in case["expected"]["blup"].items():
        ref = np.asarray(exp["values"], float)
        got = blups[name].to_numpy()
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-6 * np.abs(ref).max())


def test_mmblup_dense_equals_rotated_and_named():
    """BLUPs through the rotation equal the dense solve; a DataFrame kinship names them."""
    d = mj.datasets.load_qtl_detection_example()
    n = d.pheno.size
    vl = {"Additive": d.kinship, "Error": np.eye(n)}
    rot = mj.mmest(d.pheno, var_list=vl, verbose=False, crit_var=1e-8, crit_loglik=1e-8, max_iter=1000)
    assert rot.path == "rotated"
    b = mj.mmblup(fit=rot)
    assert list(b["Additive"].index) == list(d.kinship.index)
    from mm4lmm_jax.inference._blup import v_inverse_times

    resid = rot.problem.y - model_design(rot, 0) @ rot.beta_array[0, :1]
    s = rot.sigma2_array[0]
    v = s[0] * d.kinship.to_numpy() + s[1] * np.eye(n)
    np.testing.assert_allclose(v_inverse_times(rot, s, resid), np.linalg.solve(v, resid), rtol=1e-8, atol=1e-10)
    # the error BLUP is the conditional residual: y - X b - Z u
    np.testing.assert_allclose(b["Error"].to_numpy(), resid - b["Additive"].to_numpy(), atol=1e-8)


# ------------------------------------------------------------------------- bad inputs


def test_contrast_of_wrong_width_gives_nan_with_warning():
    res = fit_case("qtl_scan_reml")
    with pytest.warns(UserWarning, match="not performed"):
        out = mj.anova_test(res, [CONTRAST, np.array([[0.0, 1.0, 0.0]])])
    tab = out["SNP1"]
    assert np.isfinite(tab.iloc[0].to_numpy()).all()
    assert np.isnan(tab.iloc[1].to_numpy()).all()


def test_rank_deficient_contrast_is_reduced_with_warning():
    res = fit_case("qtl_scan_reml")
    deficient = np.array([[0.0, 1.0], [0.0, 2.0]])
    with pytest.warns(UserWarning, match="rank 1"):
        out = mj.anova_test(res, deficient)
    ref = mj.anova_test(res, CONTRAST)
    np.testing.assert_allclose(out.array, ref.array, rtol=1e-12)
    with pytest.warns(UserWarning, match="rank 1"):
        kr = mj.anova_test(res, deficient, type="KR")
    assert (kr.column("ndf").to_numpy() == 1).all()


def test_ai_on_ml_fit_is_an_error():
    with pytest.raises(ValueError, match="ReML"):
        mj.mmvcov(fit_case("hybrid_ml"), information="AI")


def test_kr_on_ml_fit_is_an_error():
    with pytest.raises(ValueError, match="ReML"):
        mj.anova_test(fit_case("qtl_scan_ml"), type="KR")


def test_fit_from_another_data_set_is_an_error():
    case = load_case("qtl_null_reml")
    res = fit_case("qtl_null_reml")
    y = np.asarray(case["inputs"]["y"], float)
    with pytest.raises(ValueError, match="y does not match"):
        mj.mmvcov(res, y=y + 1.0)
    with pytest.raises(ValueError, match="y does not match"):
        mj.mmblup(y=y[:-1], fit=res)
    other_k = {"Additive": np.eye(y.size), "Error": np.eye(y.size)}
    with pytest.raises(ValueError, match="var_list does not match"):
        mj.anova_test(res, var_list=other_k)
    # the same data passed again are accepted
    d = mj.datasets.load_qtl_detection_example()
    same = mj.mmvcov(res, y=y, var_list={"Additive": d.kinship.to_numpy(), "Error": np.eye(y.size)})
    assert np.isfinite(same.se).all()


def test_bad_type_and_information_are_errors():
    res = fit_case("qtl_null_reml")
    with pytest.raises(ValueError, match="type must be"):
        mj.anova_test(res, type="TypeII")
    with pytest.raises(ValueError, match="information must be"):
        mj.mmvcov(res, information="sandwich")
    with pytest.raises(TypeError, match="MMEstResult"):
        mj.anova_test({"a": 1})
    with pytest.raises(TypeError, match="fit="):
        mj.mmblup()


# ------------------------------------------------------------------ LRT and summary


@pytest.fixture(scope="module")
def qtl_fits():
    d = mj.datasets.load_qtl_detection_example()
    n = d.pheno.size
    vl = {"Additive": d.kinship, "Error": np.eye(n)}
    crit = dict(crit_var=1e-9, crit_loglik=1e-9, max_iter=5000, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(
            d=d,
            null_ml=mj.mmest(d.pheno, var_list=vl, method="ml", **crit),
            scan_ml=mj.mmest(d.pheno, x=d.geno.iloc[:, :4], var_list=vl, method="ml", **crit),
            scan_reml=mj.mmest(d.pheno, x=d.geno.iloc[:, :4], var_list=vl, **crit),
            one=mj.mmest(d.pheno, var_list={"Error": np.eye(n)}, **crit),
            two=mj.mmest(d.pheno, var_list=vl, **crit),
        )


def test_lrt_fixed_effects(qtl_fits):
    null, scan = qtl_fits["null_ml"], qtl_fits["scan_ml"]
    out = mj.likelihood_ratio_test(null, scan)
    stat = 2 * (scan.loglik_array - null.loglik_array[0])
    np.testing.assert_allclose(out["stat"].to_numpy(), stat, rtol=1e-12)
    np.testing.assert_allclose(out["pval"].to_numpy(), np.asarray(chi2_sf(stat, 1)), rtol=1e-12)
    assert (out["df"] == 1).all() and list(out.index) == scan.names
    # one model at a time, as ModelFit
    single = mj.likelihood_ratio_test(null[0], scan[1])
    np.testing.assert_allclose(single["stat"].iloc[0], stat[1], rtol=1e-12)
    with pytest.raises(ValueError, match="ML"):
        mj.likelihood_ratio_test(qtl_fits["two"], qtl_fits["scan_reml"])


def test_lrt_variance_component_boundary_mixture(qtl_fits):
    one, two = qtl_fits["one"], qtl_fits["two"]
    out = mj.likelihood_ratio_test(one, two)
    stat = 2 * (two[0].loglik - one[0].loglik)
    assert stat > 0
    np.testing.assert_allclose(out["pval"].iloc[0], 0.5 * float(chi2_sf(stat, 1)), rtol=1e-12)
    with pytest.raises(ValueError, match="subset"):
        mj.likelihood_ratio_test(two, one)
    with pytest.raises(ValueError, match="same method"):
        mj.likelihood_ratio_test(qtl_fits["null_ml"], two)


def test_lrt_other_data_is_an_error(qtl_fits):
    d = qtl_fits["d"]
    n = d.pheno.size
    other = mj.mmest(d.pheno.to_numpy() * 2.0, var_list={"Error": np.eye(n)}, verbose=False)
    with pytest.raises(ValueError, match="same observations"):
        mj.likelihood_ratio_test(other, qtl_fits["two"])


def test_summary_reports_estimates_and_variance_se(qtl_fits):
    fit = qtl_fits["two"][0]
    s = fit.summary()
    text = str(s)
    for piece in ["ReML", "(Intercept)", "Additive", "Error", "AIC", "BIC", "Converged"]:
        assert piece in text
    se = mj.mmvcov(qtl_fits["two"]).se.to_numpy()
    np.testing.assert_allclose(s.variance["se"].to_numpy(), se, rtol=1e-12)
    np.testing.assert_allclose(s.coefficients["se"].to_numpy(), fit.se.to_numpy(), rtol=1e-12)
    k = fit.beta.size + fit.sigma2.size
    assert s.info["AIC"] == pytest.approx(-2 * fit.loglik + 2 * k)


def test_kenward_roger_henderson_scan_with_interactions():
    """KR for every model of a three-component scan with per-model designs (Henderson
    structure, models run one after the other) equals model-by-model chunks, and the
    marker-by-trial row matches lmerTest-style expectations of a 1-df test."""
    res = fit_case("hybrid_markers_interaction")
    full = mj.anova_test(res, type="KR")
    one = mj.anova_test(res, type="KR", chunk_size=1)
    np.testing.assert_allclose(full.array, one.array, rtol=1e-10)
    assert np.isfinite(full.array).all()
    assert list(full[0].index) == ["(Intercept)", "Trial", "Xeffect", "Xeffect:Trial"]
    # KR's F is close to the Wald statistic (1 df) and its ddf below n - p
    wald = mj.anova_test(res, type="TypeIII")
    np.testing.assert_allclose(full.column("F").to_numpy(), wald.column("Wald (Type III)").to_numpy(), rtol=0.05)
    assert (full.column("ddf").to_numpy() < res.n_obs - 4).all()


def _boundary_fit(henderson):
    """A split-plot design (6 blocks, B:V plots, B:N cells, as MASS::oats) whose B:N variance
    goes to zero (ReML)."""
    b = np.repeat(np.arange(6), 12)
    v = np.tile(np.repeat(np.arange(3), 4), 6)
    nn = np.tile(np.arange(4), 18)
    frame = pd.DataFrame({"V": v.astype(str), "N": nn.astype(str)})

    def incidence(codes):
        _, inv = np.unique(codes, return_inverse=True)
        z = np.zeros((codes.size, inv.max() + 1))
        z[np.arange(codes.size), inv] = 1.0
        return z

    rng = np.random.default_rng(10)
    y = 3 * rng.normal(size=6)[b] + 2 * rng.normal(size=18)[b * 3 + v] + rng.normal(size=72) + 0.5 * nn
    zs = {"B": incidence(b), "BV": incidence(b * 10 + v), "BN": incidence(b * 10 + nn), "E": np.eye(72)}
    vs = {k: np.eye(z.shape[1]) for k, z in zs.items()}
    return mj.mmest(y, cofactor=frame, formula="~ V + N", var_list=vs, z_list=zs, henderson=henderson,
                 max_iter=5000, crit_var=1e-10, crit_loglik=1e-12, verbose=False)  # fmt: skip


def test_information_and_kr_at_the_boundary_match_the_dense_form():
    """With sigma2(B:N) -> 0 (ratio ~1e-14) the Henderson form's information cancels terms of
    order 1e28; those models are computed in the dense form: expected and average information
    and Kenward-Roger (ddf 15 for N, as pbkrtest and lmerTest give on MASS::oats) agree with
    the dense fit to 1e-6, and the boundary is reported by summary() and mmvcov."""
    from mm4lmm_jax.errors import BoundaryWarning

    hend, dense = _boundary_fit(None), _boundary_fit(False)
    assert hend.path == "henderson" and dense.path == "dense"
    assert hend[0].sigma2["BN"] < 1e-10 * hend[0].sigma2["E"]
    for info in ("expected", "ai"):
        with pytest.warns(BoundaryWarning, match=r"\['BN'\]"):
            a = mj.mmvcov(hend, information=info)
        with pytest.warns(BoundaryWarning):
            b = mj.mmvcov(dense, information=info)
        np.testing.assert_allclose(a.information_matrix, b.information_matrix, rtol=1e-6)
        assert a.boundary == ("BN",)
    kr_h, kr_d = mj.anova_test(hend, type="KR")[0], mj.anova_test(dense, type="KR")[0]
    np.testing.assert_allclose(kr_h.to_numpy(), kr_d.to_numpy(), rtol=1e-6)
    assert kr_h.loc["N", "ddf"] == pytest.approx(15.0, abs=1e-3)
    text = str(hend[0].summary())
    assert "['BN'] at the boundary" in text
