"""The two-component kernels on rotated data: the exact fits of ``core/_rotated_scan.py`` (a
grid shared by every model, then Newton) and the closed-form Kenward-Roger ingredients
(``rotated_kr_ingredients``) -- against autodiff and dense algebra, and end to end through
``gwas(test="kr")`` with one kinship."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from mm4lmm_jax.core._kenward_roger import kr_ingredients, kr_test, rotated_kr_ingredients
from mm4lmm_jax.core._quad import dense_quad, rotated_quad
from mm4lmm_jax.core._rotated_scan import EXACT_BOUNDS, _value_and_derivatives, rotated_fits
from mm4lmm_jax.datasets._simulate import simulate_plink
from mm4lmm_jax.gwas import gwas, kinship_matrix, open_plink


def _problem(seed: int, n: int = 300, c: int = 2, p1: int = 2, m: int = 16, h2: float = 0.5):
    rng = np.random.default_rng(seed)
    d = np.sort(rng.gamma(0.5, 2.0, n))
    c_rot = np.column_stack([np.ones(n), rng.normal(size=(n, c - 1))])
    x_rot = rng.normal(size=(m, n, p1))
    if h2 < 0:  # variance falling with the kinship's eigenvalue: the optimum is s_g = 0
        return d, c_rot, x_rot, rng.normal(size=n) / np.sqrt(1.0 + 5.0 * d)
    y_rot = rng.normal(size=n) * np.sqrt(1.0 - h2) + np.sqrt(h2 * d) * rng.normal(size=n)
    return d, c_rot, x_rot, y_rot


CASES = [(0, 0.5, EXACT_BOUNDS), (1, -1.0, EXACT_BOUNDS), (1, -1.0, (1e-5, 1e5)), (2, 0.9, (1e-5, 1e5))]


@pytest.mark.parametrize("method", ["reml", "ml"])
@pytest.mark.parametrize(("seed", "h2", "bounds"), CASES)
def test_rotated_fits_reach_a_stationary_point_in_one_newton_step(method, seed, h2, bounds):
    """The optimum of the grid's quintic interpolant starts Newton within one step: every model
    stops after at most three evaluations with a zero slope (or at a bound, slope pointing out)."""
    d, c_rot, x_rot, y_rot = _problem(seed, h2=h2)
    out = rotated_fits(d, c_rot, x_rot, y_rot, method=method, bounds=bounds)
    assert (np.asarray(out.status) == 0).all()
    assert np.asarray(out.n_iter).max() <= 3
    t = np.asarray(out.log_delta)
    _, d1, d2 = (np.asarray(a) for a in _value_and_derivatives(jnp.asarray(t), c_rot, x_rot, y_rot, d, method))
    low, high = np.log(bounds[0]), np.log(bounds[1])
    inside = (t > low + 1e-9) & (t < high - 1e-9)
    assert np.all(np.abs(d1[inside]) < 1e-6 * np.maximum(1.0, np.abs(d2[inside])))
    assert np.all(d1[t <= low + 1e-9] <= 1e-8) and np.all(d1[t >= high - 1e-9] >= -1e-8)
    if h2 < 0:
        assert not inside.any()  # every optimum at the lower bound


@pytest.mark.parametrize("p1", [1, 3])
def test_closed_form_kr_ingredients_equal_autodiff(p1):
    """``rotated_kr_ingredients`` equals ``kr_ingredients`` (autodiff of the rotated quadratic
    form) to 1e-12 relative, near the boundary (s_1 = 1e-6 s_2) and far from it."""
    d, c_rot, x_rot, y_rot = _problem(3, p1=p1, m=4)
    sigma2 = np.array([[1e-6, 1.0], [0.3, 2.0], [5.0, 0.01], [1.0, 1.0]])
    fast = rotated_kr_ingredients(jnp.asarray(c_rot), jnp.asarray(x_rot), jnp.asarray(d), jnp.asarray(sigma2))
    p = c_rot.shape[1] + p1
    autodiff = jax.jit(lambda a, s: kr_ingredients(lambda v: rotated_quad(v, a, jnp.asarray(d)), s, p))
    for i in range(4):
        ref = autodiff(jnp.asarray(np.concatenate([c_rot, x_rot[i], y_rot[:, None]], axis=1)), sigma2[i])
        for name in ref._fields:
            want, got = np.asarray(getattr(ref, name)), np.asarray(getattr(fast, name)[i])
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max(), err_msg=name)


@pytest.mark.parametrize(("dtype", "tol_f", "tol_p"), [("float64", 1e-9, 1e-8), ("float32", 2e-5, 1e-4)])
def test_one_kinship_kr_scan_equals_dense_kenward_roger(tmp_path, dtype, tol_f, tol_p):
    """``gwas(test="kr")`` with one kinship (the KR test inside the scan's block program, from
    the block's rotated markers) gives the F, ddf and p of a dense-algebra Kenward-Roger test at
    the scan's own estimates: to 1e-8 in log10 p with a float64 rotation, within the float32
    path's promise (1e-4) with the default one; ``p_kr`` is ``P(F(1, ddf_kr) > f_kr)``."""
    from scipy import stats

    sim = simulate_plink(tmp_path, n=150, m=12, n_chrom=1, seed=5)
    kin = kinship_matrix(open_plink(sim.prefix)).matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gwas(sim.pheno, sim.prefix, kinship=kin, covariates=sim.covar, pheno_names=["trait1"],
                   test="kr", rotation_dtype=dtype, progress=False)  # fmt: skip
    ok = res.status.eq("ok").to_numpy()
    assert ok.sum() >= 10
    assert {"f_kr", "ddf_kr", "p_kr", "sigma2_g", "p_wald"} <= set(res.columns)
    np.testing.assert_allclose(res.p_kr[ok], stats.f.sf(res.f_kr[ok], 1, res.ddf_kr[ok]), rtol=1e-10)
    pheno = pd.read_csv(sim.pheno, sep="\t")
    covar = pd.read_csv(sim.covar, sep="\t")
    rows = np.flatnonzero(pheno["trait1"].notna().to_numpy())
    y = pheno["trait1"].to_numpy()[rows]
    base = np.column_stack([np.ones(rows.size), covar.loc[rows, ["age", "sex"]].to_numpy(float)])
    g = open_plink(sim.prefix).read(rows, 0, 12)
    g = np.where(np.isnan(g), np.nanmean(g, axis=0), g)
    covs = jnp.asarray(np.stack([kin[np.ix_(rows, rows)], np.eye(rows.size)]))
    p = base.shape[1] + 1

    @jax.jit
    def dense_kr(a, sigma2):
        ing = kr_ingredients(lambda s: dense_quad(s, a, covs), sigma2, p)
        beta = ing.phi @ dense_quad(sigma2, a, covs)[0][:-1, -1]
        return kr_test(beta, ing, jnp.eye(p)[-1:])

    for j in np.flatnonzero(ok):
        sigma2 = np.array([res.sigma2_g.iloc[j], res.sigma2_e.iloc[j]])
        test = dense_kr(jnp.asarray(np.column_stack([base, g[:, j], y])), jnp.asarray(sigma2))
        assert abs(float(test.f) - res.f_kr.iloc[j]) < tol_f * max(1.0, float(test.f)), j
        assert abs(float(test.ddf) - res.ddf_kr.iloc[j]) < tol_f * float(test.ddf), j
        assert abs(np.log10(float(test.pval)) - np.log10(res.p_kr.iloc[j])) < tol_p, j


def test_cli_one_kinship_kr_runs_in_the_plain_scan(tmp_path):
    """``mm4lmm gwas --grm --test kr`` writes the one-kinship table plus ``f_kr``, ``ddf_kr``,
    ``p_kr`` and logs the tests; ``--format gemma`` (no place for them) is refused by name."""
    from mm4lmm_jax.cli import main

    sim = simulate_plink(tmp_path, n=100, m=10, n_chrom=1, seed=4)
    base = ["gwas", "--bfile", sim.prefix, "--pheno", str(sim.pheno), "--grm", "--test", "kr", "--quiet", "--no-plots"]
    out = tmp_path / "kr"
    assert main([*base, "--out", str(out)]) == 0
    table = pd.read_csv(f"{out}.tsv", sep="\t")
    assert {"sigma2_g", "h2", "f_kr", "ddf_kr", "p_kr"} <= set(table.columns)
    ok = table.status.eq("ok")
    assert ok.all() and (table.ddf_kr[ok] > 0).all() and table.p_kr[ok].between(0, 1).all()
    assert "tests of each marker: Wald, Kenward-Roger" in (tmp_path / "kr.log").read_text()
    assert main([*base, "--format", "gemma", "--out", str(tmp_path / "g")]) == 2
