"""Bad input gets a clear ValueError/TypeError naming the argument; missing y is dropped."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mm4lmm_jax as mj

RNG = np.random.default_rng(1)
N = 40
A = RNG.normal(size=(N, N))
K = A @ A.T / N + 0.05 * np.eye(N)
I = np.eye(N)
Y = RNG.normal(size=N)


def fit(**kw):
    base = dict(y=Y, var_list={"K": K, "Error": I}, verbose=False)
    base.update(kw)
    return mj.mmest(**base)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match=r"var_list\['K'\] is 39x39 but y has 40"):
        fit(var_list={"K": K[:-1, :-1], "Error": I})
    with pytest.raises(ValueError, match="cofactor has 39 rows but y has 40"):
        fit(cofactor=np.ones((N - 1, 1)))
    with pytest.raises(ValueError, match="x has 39 rows but y has 40"):
        fit(x=np.ones((N - 1, 2)))
    with pytest.raises(ValueError, match=r"x\['a'\] has shape \(39, 1\)"):
        fit(x={"a": np.ones((N - 1, 1))})


def test_non_square_non_symmetric_non_psd():
    with pytest.raises(ValueError, match="must be square"):
        fit(var_list={"K": np.ones((N, N - 1)), "Error": I})
    asym = K.copy()
    asym[0, 1] += 1.0
    with pytest.raises(ValueError, match=r"var_list\['K'\] \(40x40\) is not symmetric"):
        fit(var_list={"K": asym, "Error": I})
    neg = K - 2.0 * np.eye(N) * np.linalg.eigvalsh(K).max()
    with pytest.raises(ValueError, match="not positive semi-definite"):
        fit(var_list={"K": neg, "Error": I})


def test_non_finite_inputs():
    bad = K.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"var_list\['K'\] contains NaN"):
        fit(var_list={"K": bad, "Error": I})
    with pytest.raises(ValueError, match="cofactor column 'V1' has infinite values"):
        fit(cofactor=np.full((N, 1), np.inf))
    x = np.ones((N, 2))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="x has NaN"):
        fit(x=x + RNG.normal(size=(N, 2)))
    y = Y.copy()
    y[0] = np.inf
    with pytest.raises(ValueError, match="y contains infinite"):
        fit(y=y)


def test_rank_deficient_design():
    c = RNG.normal(size=N)
    d = RNG.normal(size=N)
    with pytest.raises(ValueError, match=r"rank-deficient: column\(s\) \['V3'\]"):
        fit(cofactor=np.column_stack([c, d, c - 2 * d]))
    # A constant cofactor column duplicating the intercept is dropped, as MM4LMM does.
    res = fit(cofactor=np.column_stack([np.ones(N), c]))
    assert list(res[0].beta.index) == ["(Intercept)", "V2"]


def test_list_mismatches_and_unknown_method():
    with pytest.raises(ValueError, match="z_list has 1 elements but var_list has 2"):
        fit(z_list=[I])
    with pytest.raises(ValueError, match="z_list keys"):
        fit(z_list={"Error": I, "K": I})
    with pytest.raises(ValueError, match=r"z_list\['K'\] has 5 columns but var_list\['K'\] is 40x40"):
        fit(z_list={"K": np.ones((N, 5)), "Error": I})
    with pytest.raises(ValueError, match="method must be"):
        fit(method="bayes")
    with pytest.raises(TypeError, match="var_list must be a dict or a list"):
        fit(var_list=K)
    with pytest.raises(ValueError, match="init must hold 2 positive values"):
        fit(init=[1.0])


def test_method_spellings():
    a = fit(method="Reml")[0]
    b = fit(method="reml")[0]
    c = fit(method="ML")[0]
    assert a.loglik == b.loglik and a.method == "reml" and c.method == "ml"


def test_missing_phenotype_dropped_everywhere():
    y = Y.copy()
    y[[3, 7]] = np.nan
    x = RNG.normal(size=(N, 2))
    with pytest.warns(mj.MissingDataWarning, match="2 of 40 observations"):
        res = fit(y=y, x=x)
    keep = ~np.isnan(y)
    ref = mj.mmest(
        Y[keep], x=x[keep], var_list={"K": K[np.ix_(keep, keep)], "Error": np.eye(keep.sum())}, verbose=False
    )
    np.testing.assert_allclose(res.sigma2_array, ref.sigma2_array, rtol=1e-12)
    assert res.n_obs == 38


def test_missing_phenotype_with_z_list_drops_rows_of_z():
    q = 6
    z = np.eye(q)[RNG.integers(0, q, N)]
    g = np.eye(q)
    y = Y + z @ RNG.normal(size=q)
    y[0] = np.nan
    with pytest.warns(mj.MissingDataWarning):
        res = mj.mmest(y, var_list=[g, I], z_list=[z, I], verbose=False)
    ref = mj.mmest(y[1:], var_list=[g, np.eye(N - 1)], z_list=[z[1:], np.eye(N - 1)], verbose=False)
    np.testing.assert_allclose(res.sigma2_array, ref.sigma2_array, rtol=1e-12)


def test_max_iter_gives_not_converged_with_warning():
    with pytest.warns(mj.ConvergenceWarning, match="did not converge"):
        res = fit(crit_var=1e-12, crit_loglik=1e-12, max_iter=3)
    assert not res[0].converged
    assert res.converged_array.dtype == bool


def test_lookup_by_name_and_position():
    x = pd.DataFrame(RNG.normal(size=(N, 3)), columns=["a", "b", "c"])
    res = fit(x=x)
    assert res["b"].name == "b" and res[1].name == "b" and len(res) == 3
    assert [f.name for f in res] == ["a", "b", "c"]
    with pytest.raises(KeyError, match="no model named 'zz'"):
        res["zz"]
    frame = res.to_frame()
    assert list(frame.index) == ["a", "b", "c"] and "beta[Xeffect]" in frame


def test_non_finite_fit_raises_named_error():
    # Two singular covariances: V is singular, the fit cannot be finite.
    sing = np.outer(np.ones(N), np.ones(N))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(mj.NumericalError, match="non-finite"):
            fit(var_list={"A": sing, "B": sing, "C": sing})


def test_constant_cofactor_is_dropped_with_a_warning_and_constant_y_is_an_error():
    import warnings as _w

    from mm4lmm_jax.errors import RankDeficiencyWarning

    rng = np.random.default_rng(0)
    n = 40
    k = np.corrcoef(rng.normal(size=(n, 60)))
    y = rng.normal(size=n)
    cof = pd.DataFrame({"age": rng.normal(size=n), "site": np.full(n, 3.0)})
    with pytest.warns(RankDeficiencyWarning, match=r"\['site'\] are constant"):
        res = mj.mmest(y, cofactor=cof, var_list={"K": k, "E": np.eye(n)}, verbose=False)
    assert "site" not in res[0].beta.index
    with _w.catch_warnings():
        _w.simplefilter("error", RankDeficiencyWarning)
        mj.mmest(y, cofactor=cof[["age"]], var_list={"K": k, "E": np.eye(n)}, verbose=False)
        # no cofactor: MM4LMM's implicit column of ones is dropped without a word
        mj.mmest(y, x=rng.normal(size=(n, 2)), var_list={"K": k, "E": np.eye(n)}, verbose=False)
    y2 = np.full(n, 2.0)
    y2[3] = np.nan
    with pytest.raises(ValueError, match="y is constant"):
        mj.mmest(y2, var_list={"K": k, "E": np.eye(n)}, verbose=False)


def _oats_like():
    rng = np.random.default_rng(0)
    b = np.repeat(np.arange(6), 12)
    frame = pd.DataFrame(
        {"V": np.tile(np.repeat(["GR", "MR", "Vi"], 4), 6), "N": np.tile(["n0", "n1", "n2", "n3"], 18)}
    )
    y = rng.normal(size=72) + frame.N.map({"n0": 0.0, "n1": 0.5, "n2": 1.0, "n3": 1.3}).to_numpy()
    z = np.zeros((72, 6))
    z[np.arange(72), b] = 1.0
    return y, frame, z


def test_formula_terms_follow_the_design_whatever_the_written_order():
    """anova_test rows follow the design's terms (R's order: by degree), whatever order the
    user writes them in; '*' expands; interaction columns in R's model.matrix order (first
    variable of the formula varying fastest) and names."""
    y, frame, z = _oats_like()
    kw = dict(var_list={"B": np.eye(6), "E": np.eye(72)}, z_list={"B": z, "E": np.eye(72)}, verbose=False)
    tables = {}
    for f in ["~ N + V + N:V", "~ N:V + N + V", "~ N*V"]:
        res = mj.mmest(y, cofactor=frame, formula=f, **kw)
        tables[f] = (mj.anova_test(res, type="TypeI")[0], mj.anova_test(res)[0], res)
    ref1, ref3, ref = tables["~ N + V + N:V"]
    assert list(ref3.index) == ["(Intercept)", "N", "V", "N:V"] and list(ref3.df) == [1, 3, 2, 6]
    for f, (t1, t3, _) in tables.items():
        assert list(t3.index) == list(ref3.index), f
        pd.testing.assert_frame_equal(t3, ref3, rtol=1e-6)
        pd.testing.assert_frame_equal(t1, ref1, rtol=1e-6)
    names = list(ref[0].beta.index)
    assert names[6:9] == ["Nn1:VMR", "Nn2:VMR", "Nn3:VMR"]  # N first in the formula: N varies fastest
    swapped = mj.mmest(y, cofactor=frame, formula="~ V + N + N:V", **kw)
    assert list(swapped[0].beta.index)[6:9] == ["VMR:Nn1", "VVi:Nn1", "VMR:Nn2"]  # as R's model.matrix
    t3 = mj.anova_test(swapped)[0]
    assert list(t3.index) == ["(Intercept)", "V", "N", "N:V"] and list(t3.df) == [1, 2, 3, 6]
    np.testing.assert_allclose(t3.loc["N:V"].iloc[0], ref3.loc["N:V"].iloc[0], rtol=1e-6)


def test_sparse_z_is_accepted_and_ordered_factors_warn():
    from scipy import sparse

    y, frame, z = _oats_like()
    dense = mj.mmest(y, cofactor=frame[["N"]], var_list={"B": np.eye(6), "E": np.eye(72)},
                     z_list={"B": z, "E": np.eye(72)}, verbose=False)  # fmt: skip
    sp = mj.mmest(y, cofactor=frame[["N"]], var_list={"B": np.eye(6), "E": np.eye(72)},
                  z_list={"B": sparse.csr_matrix(z), "E": sparse.identity(72)}, verbose=False)  # fmt: skip
    np.testing.assert_allclose(sp[0].sigma2, dense[0].sigma2, rtol=1e-10)
    ordered = frame.assign(N=pd.Categorical(frame.N, ordered=True))
    with pytest.warns(UserWarning, match="polynomial contrasts"):
        mj.mmest(y, cofactor=ordered[["N"]], formula="~ N", var_list={"B": np.eye(6), "E": np.eye(72)},
                 z_list={"B": z, "E": np.eye(72)}, verbose=False)  # fmt: skip
