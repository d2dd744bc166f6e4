"""Faults and awkward inputs of the GWAS path: every case is right or a clear error, never a
silent wrong number (scale-free fixed part, float64 refits, per-trait individuals, honest
status, degenerate inputs)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mm4lmm_jax as mj
from mm4lmm_jax.errors import InputWarning, KinshipWarning
from mm4lmm_jax.gwas import _block as block
from mm4lmm_jax.gwas._io import InputError

N = 240


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    freq = rng.uniform(0.05, 0.5, size=48 + 300)
    geno = rng.binomial(2, freq, size=(N, 48 + 300)).astype(float)
    w = (geno[:, :300] - 2 * freq[:300]) / np.sqrt(2 * freq[:300] * (1 - freq[:300]))
    kin = w @ w.T / 300
    g = geno[:, 300:]
    days = rng.integers(0, 365, N).astype(float)
    noise = rng.multivariate_normal(np.zeros(N), 0.6 * kin + 0.4 * np.eye(N), method="cholesky")
    y = 0.9 * g[:, 0] + 0.4 * g[:, 1] + 0.004 * days + noise
    return y, g, kin, days


def _scan(y, g, kin, cov=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mj.gwas(y, g, kinship=kin, covariates=cov, progress=False, **kw)


def _dlog10p(a, b):
    return float(np.max(np.abs(np.log10(a.p_wald.to_numpy()) - np.log10(b.p_wald.to_numpy()))))


@pytest.mark.parametrize(
    "recode",
    [
        pytest.param(lambda y, c: (y, 20230101.0 + c), id="date-coded"),
        pytest.param(lambda y, c: (y, c + 1e9), id="offset-1e9"),
        pytest.param(lambda y, c: (y, c * 1e12), id="scale-1e12"),
        pytest.param(lambda y, c: (y * 1e30, c), id="trait-x1e30"),
        pytest.param(lambda y, c: (y * 1e-30, c), id="trait-x1e-30"),
        pytest.param(lambda y, c: (y * 1e-40, c), id="trait-x1e-40"),
        pytest.param(lambda y, c: (y * 1e150, c), id="trait-x1e150"),
    ],
)
def test_results_do_not_depend_on_the_scale_of_covariates_or_traits(data, recode):
    """float32 scan of recoded inputs == float64 scan of the well-scaled ones, to 1e-4 in
    log10 p, every row ok; effects scale with the trait."""
    y, g, kin, days = data
    ref = _scan(y, g, kin, days, rotation_dtype="float64")
    y2, c2 = recode(y, days)
    res = _scan(y2, g, kin, c2)
    assert (res.status == "ok").all()
    assert _dlog10p(res, ref) < 1e-4
    k = y2[0] / y[0] if y2 is not y else 1.0
    np.testing.assert_allclose(res.beta / k, ref.beta, rtol=1e-3, atol=1e-6 * float(ref.se.max()))
    np.testing.assert_allclose(res.sigma2_e / k**2, ref.sigma2_e, rtol=1e-3)


def test_log_likelihood_and_variances_in_the_users_units(data):
    """The standardisation is undone exactly: a float64 scan with a date-coded covariate and a
    trait in other units gives the well-scaled scan's effects times the trait's scale, and the
    ReML log-likelihood of the model in the user's parameterisation (mmest's on the centred
    date, the same model: centring leaves ReML unchanged; mmest on the raw date loses digits in
    its own X'V^-1X)."""
    y, g, kin, days = data
    res = _scan(1e3 * y, g[:, :4], kin, 20230101.0 + days, rotation_dtype="float64")
    ref = mj.mmest(1e3 * y, cofactor=(days - days.mean())[:, None], x=g[:, :4], var_list={"K": kin, "E": np.eye(N)},
                   crit_var=1e-12, crit_loglik=1e-12, max_iter=20000, verbose=False)  # fmt: skip
    np.testing.assert_allclose(res.loglik, ref.loglik_array, atol=1e-5)
    np.testing.assert_allclose(res.beta, ref.beta_array[:, -1], rtol=1e-4)
    base = _scan(y, g[:, :4], kin, days, rotation_dtype="float64")
    np.testing.assert_allclose(res.beta, 1e3 * base.beta, rtol=1e-9)
    np.testing.assert_allclose(res.sigma2_g, 1e6 * base.sigma2_g, rtol=1e-8)
    # ReML log-likelihoods differ by -(n - p) log 1e3 (p = 3; an offset of a covariate: nothing)
    np.testing.assert_allclose(res.loglik, base.loglik - (N - 3) * np.log(1e3), atol=1e-8)


def test_genotype_scale_does_not_matter_and_out_of_range_warns(data):
    y, g, kin, days = data
    ref = _scan(y, g, kin, days)
    small = _scan(y, g * 1e-30, kin, days)
    assert _dlog10p(small, ref) < 1e-6
    np.testing.assert_allclose(small.beta * 1e-30, ref.beta, rtol=1e-5, atol=1e-5 * float(ref.se.min()))
    with pytest.warns(InputWarning, match=r"not allele counts in \[0, 2\]"):
        large = mj.gwas(y, g * 1e3, kinship=kin, covariates=days, progress=False)
    assert _dlog10p(large, ref) < 1e-6


def test_near_collinear_covariates_are_an_error_naming_them(data):
    y, g, kin, days = data
    rng = np.random.default_rng(0)
    cov = pd.DataFrame(
        {"age": days, "age_days": days * 365.25 + rng.normal(size=N) * 1e-6, "sex": rng.integers(0, 2, N)}
    )
    with pytest.raises(InputError, match=r"\['age.*', 'age.*'\] are collinear"):
        _scan(y, g, kin, cov)
    with pytest.raises(InputError, match="'const' is constant"):
        _scan(y, g, kin, pd.DataFrame({"const": np.full(N, 3.0), "age": days}))
    ok = _scan(y, g[:, :4], kin, cov[["age", "sex"]].assign(age2=days**2))  # correlated, not collinear
    assert (ok.status == "ok").all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_marker_collinear_with_covariates_is_flagged_in_every_precision(data, dtype):
    y, g, kin, days = data
    cov = np.column_stack([days, g[:, 5]])  # marker 5 is a covariate
    g2 = g.copy()
    g2[:, 6] = 2.0 - g[:, 5]  # an affine function of one
    res = _scan(y, g2, kin, cov, rotation_dtype=dtype)
    assert list(res.status[5:7]) == ["collinear with covariates"] * 2
    assert res.loc[5:6, ["beta", "se", "stat", "p_wald", "sigma2_g", "loglik"]].isna().all().all()
    assert (res.status.drop([5, 6]) == "ok").all()


def test_strong_markers_are_refitted_by_the_float64_path(data):
    """Markers above REFIT_STAT get float64's numbers exactly; the others stay within 1e-4
    (measured 2e-7 x stat)."""
    y, g, kin, days = data
    y = y + 6.0 * g[:, 2] + 6.0 * g[:, 3]
    f32 = _scan(y, g, kin, days)
    f64 = _scan(y, g, kin, days, rotation_dtype="float64")
    strong = (f64.stat > block.REFIT_STAT).to_numpy()
    assert strong.sum() >= 2 and f32.attrs["n_refitted_float64"]["phenotype"] >= strong.sum()
    np.testing.assert_allclose(f32.p_wald[strong], f64.p_wald[strong], rtol=1e-10)
    assert _dlog10p(f32[~strong], f64[~strong]) < 1e-4


def test_markers_not_converged_are_refitted_before_being_flagged(data):
    y, g, kin, days = data
    ref = _scan(y, g, kin, days, rotation_dtype="float64")
    short = _scan(y, g, kin, days, rotation_dtype="float64", max_iter=1, tol=1e-12)
    assert short.attrs["n_refitted_float64"]["phenotype"] > 0
    assert (short.status == "ok").all()
    assert _dlog10p(short, ref) < 1e-6


def test_rows_not_ok_have_no_numbers_and_lambda_counts_ok_rows(data):
    y, g, kin, _ = data
    g2 = g.copy()
    g2[:, 3] = 1.0
    g2[:, 4] = np.nan
    res = _scan(y, g2, kin)
    bad = res.status != "ok"
    numeric = ["beta", "se", "stat", "p_wald", "p_chi2", "sigma2_g", "sigma2_e", "h2", "loglik"]
    assert bad.sum() == 2 and res.loc[bad, numeric].isna().all().all() and not res.converged[bad].any()
    assert res.attrs["lambda_gc_n"] == {"phenotype": len(res) - 2}
    assert res.attrs["lambda_gc"]["phenotype"] == pytest.approx(mj.gwas.__globals__["genomic_inflation"](res.stat))


def test_each_trait_uses_its_own_individuals(data):
    """Three traits with different missing individuals: each equals its run alone; traits
    with the same pattern share a rotation (patterns reported); n per trait."""
    y, g, kin, days = data
    rng = np.random.default_rng(5)
    traits = pd.DataFrame({f"t{k}": y + rng.normal(size=N) for k in range(4)})
    for k in range(3):
        traits.loc[rng.choice(N, 24, replace=False), f"t{k}"] = np.nan
    traits["t3"] = traits["t2"].where(traits["t2"].notna(), np.nan) * 0 + traits["t3"].where(traits["t2"].notna())
    cov = pd.Series(days, name="days")
    both = _scan(traits, g[:, :8], kin, cov)
    assert both.attrs["missingness_patterns"] == [["t0"], ["t1"], ["t2", "t3"]]
    for k in range(4):
        alone = _scan(traits[[f"t{k}"]], g[:, :8], kin, cov)
        part = both[both.trait == f"t{k}"].reset_index(drop=True)
        np.testing.assert_allclose(part.p_wald, alone.p_wald, rtol=1e-10)
        assert (part.n == int(traits[f"t{k}"].notna().sum())).all()


# ------------------------------------------------------------- degenerate inputs ----------


def test_degenerate_traits_are_clear_errors(data):
    y, g, kin, _ = data
    bad = y.copy()
    bad[7] = np.inf
    with pytest.raises(InputError, match=r"non-finite value inf for individual '8'"):
        _scan(bad, g, kin)
    with pytest.raises(InputError, match="constant"):
        _scan(np.full(N, 2.5), g, kin)
    with pytest.raises(InputError, match="overflows double precision"):
        _scan(y * 1e200, g, kin)
    with pytest.raises(InputError, match="no observed value"):
        _scan(pd.DataFrame({"a": y, "b": np.nan}), g, kin)
    with pytest.raises(InputError, match="linear function of the covariates"):
        _scan(3.0 * data[3] + 1.0, g, kin, data[3])


def test_degenerate_kinships_are_errors_or_counted_warnings(data):
    y, g, kin, _ = data
    with pytest.raises(InputError, match="not positive semi-definite"):
        _scan(y, g, -kin)
    with pytest.raises(InputError, match="all zero"):
        _scan(y, g, np.zeros_like(kin))
    d, u = np.linalg.eigh(kin)
    d[:3] = -1e-4 * d.max()  # slightly negative, as a pairwise estimate can be
    with pytest.warns(KinshipWarning, match="3 negative eigenvalue"):
        res = mj.gwas(y, g, kinship=(u * d) @ u.T, progress=False, rotation_dtype="float64")
    assert res.attrs["kinship_spectrum"]["phenotype / all"]["negative_clipped"] == 3


def test_bad_arrays_and_options_are_clear_errors(data):
    y, g, kin, _ = data
    g2 = g.copy()
    g2[3, 4] = -np.inf
    with pytest.raises(InputError, match="non-finite value -inf for individual '4', marker 'm5'"):
        _scan(y, g2, kin)
    for kw, msg in [({"grid_size": 2}, "grid_size"), ({"tol": 0.0}, "tol"), ({"tol": float("nan")}, "tol"),
                    ({"max_iter": 0}, "max_iter"), ({"rotation_dtype": "float16"}, "rotation_dtype")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            _scan(y, g, kin, **kw)


def test_loco_with_one_chromosome_says_so(data):
    y, g, _, _ = data
    with pytest.raises(InputError, match="at least two chromosomes"):
        _scan(y, g, None, loco=True)


# ------------------------------------------------------------- files -----------------------


@pytest.fixture(scope="module")
def plink(tmp_path_factory):
    from mm4lmm_jax.datasets._simulate import simulate_plink

    return simulate_plink(tmp_path_factory.mktemp("plink"), n=200, m=300, n_chrom=3, seed=5)


def _copy_plink(plink, folder):
    import shutil

    for ext in (".bed", ".bim", ".fam"):
        shutil.copy(plink.prefix + ext, folder / f"g{ext}")
    return str(folder / "g")


def test_bad_table_files_name_the_line(plink, tmp_path):
    text = open(plink.pheno).read().splitlines()
    extra = tmp_path / "extra.tsv"
    extra.write_text("\n".join([text[0] + "\tweight", *text[1:]]) + "\n")
    with pytest.raises(
        InputError, match="line 2 has 4 tab-separated fields, the header 5 .the header has a name too many"
    ):
        mj.gwas(str(extra), plink.prefix, kinship=plink.kinship, progress=False)
    short = tmp_path / "short.tsv"
    rows = text[:]
    rows[7] = "\t".join(rows[7].split("\t")[:3])
    short.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match="line 8 has 3 tab-separated fields, the header 4"):
        mj.gwas(str(short), plink.prefix, kinship=plink.kinship, progress=False)
    spaced = tmp_path / "spaced.txt"  # space-separated: runs of spaces are one separator
    spaced.write_text("\n".join(["  ".join(r.split("\t")) for r in rows]) + "\n")
    with pytest.raises(InputError, match="line 8 has 3 fields, the header 4"):
        mj.gwas(str(spaced), plink.prefix, kinship=plink.kinship, progress=False)


def test_empty_cells_of_a_tab_separated_table_are_missing_not_shifted(plink, tmp_path):
    """pandas' whitespace separator would read ``F1<TAB>I1<TAB><TAB>2.5`` as trait1 = 2.5."""
    pheno = pd.read_csv(plink.pheno, sep="\t")
    pheno.loc[[3, 10], "trait1"] = np.nan
    path = tmp_path / "empty_cells.tsv"
    pheno.to_csv(path, sep="\t", index=False, na_rep="")
    res = mj.gwas(str(path), plink.prefix, kinship=plink.kinship, progress=False)
    ref = mj.gwas(pheno, plink.prefix, kinship=plink.kinship, progress=False)
    pd.testing.assert_frame_equal(res, ref)
    assert res.attrs["n_analysed"]["trait2"] == int(pheno.trait2.notna().sum())


def test_gzip_kinship_without_gz_name_is_read(plink, tmp_path):
    import gzip

    hidden = tmp_path / "kinship.txt"
    hidden.write_bytes(gzip.compress(open(plink.kinship, "rb").read()))
    a = mj.gwas(plink.pheno, plink.prefix, kinship=str(hidden), pheno_names=["trait1"], progress=False)
    b = mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, pheno_names=["trait1"], progress=False)
    pd.testing.assert_frame_equal(a, b)


def test_bad_plink_files_blame_the_right_file(plink, tmp_path):
    prefix = _copy_plink(plink, tmp_path)
    fam = open(prefix + ".fam").read().splitlines()
    open(prefix + ".fam", "w").write("\n".join([*fam[:-2], fam[0], fam[-1]]) + "\n")
    with pytest.raises(InputError, match=r"g.fam: individual FID=.* appears 2 times"):
        mj.gwas(plink.pheno, prefix, kinship=plink.kinship, progress=False)
    open(prefix + ".fam", "w").write("\n".join(fam[:-1]) + "\n")  # 199 lines: the .bed size still fits
    with pytest.raises(InputError, match=r"expected \(199, 199\) for the 199 individuals of the genotype file"):
        mj.gwas(plink.pheno, prefix, kinship=plink.kinship, progress=False)
    open(prefix + ".fam", "w").write("\n".join(fam) + "\n")
    bim_text = open(prefix + ".bim").read()
    open(prefix + ".bim", "w").write("")
    with pytest.raises(InputError, match=r"g.bim is empty: it lists no marker"):
        mj.gwas(plink.pheno, prefix, kinship=plink.kinship, progress=False)
    bim = bim_text.splitlines()
    parts = bim[4].split("\t")
    parts[3] = "12kb"
    bim[4] = "\t".join(parts)
    open(prefix + ".bim", "w").write("\n".join(bim) + "\n")
    with pytest.raises(InputError, match="line 5: position '12kb' is not a number"):
        mj.gwas(plink.pheno, prefix, kinship=plink.kinship, progress=False)


def test_covariate_problems_name_the_column_and_the_traits(data):
    y, g, kin, days = data
    with pytest.raises(InputError, match="covariate 'batch' has no observed value"):
        _scan(y, g, kin, pd.DataFrame({"days": days, "batch": np.nan}))
    sex = (np.arange(N) % 2).astype(float)
    traits = pd.DataFrame({"a": y, "b": np.where(sex == 1, y, np.nan)})  # b observed on one sex only
    with pytest.raises(InputError, match=r"'sex' is constant over the 120 analysed .* of trait\(s\) \['b'\]"):
        _scan(traits, g, kin, pd.DataFrame({"sex": sex}))


def test_float32_inputs_rounded_for_their_spread_warn_naming_the_column(data):
    """A date coded yyyymmdd in float32 (steps of 2 for a spread of ~100 days) or a float32
    trait with a large offset: an InputWarning naming the column, in gwas() and mmest(); a
    float32 age-like covariate, and the same date in float64, pass silently."""
    y, g, kin, days = data
    date32 = (20230101.0 + days).astype(np.float32)
    age32 = (30.0 + days / 10).astype(np.float32)
    cov = pd.DataFrame({"date": date32, "age": age32})
    with pytest.warns(InputWarning, match="covariate 'date' is float32") as record:
        mj.gwas(y, g[:, :4], kinship=kin, covariates=cov, progress=False)
    assert not [w for w in record if "'age'" in str(w.message)]
    with pytest.warns(InputWarning, match="phenotype .* is float32"):
        mj.gwas((y + 1e5).astype(np.float32), g[:, :4], kinship=kin, progress=False)
    with pytest.warns(InputWarning, match="cofactor 'date' is float32"):
        mj.mmest(y, cofactor=cov, var_list=[kin, np.eye(N)], verbose=False)
    with pytest.warns(InputWarning, match="response 'y' is float32"):
        mj.mmest((y + 1e5).astype(np.float32), var_list=[kin, np.eye(N)], verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        mj.gwas(y, g[:, :4], kinship=kin, covariates=cov.assign(date=date32.astype(float)), progress=False)
        mj.mmest(y, cofactor=cov[["age"]], var_list=[kin, np.eye(N)], verbose=False)
