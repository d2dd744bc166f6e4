"""A batched scan equals fitting each marker model alone, on every path; paths agree."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mm4lmm_jax as mj


def _sim(n=120, m=7, seed=0, q=(20, 15)):
    rng = np.random.default_rng(seed)
    g = rng.binomial(2, 0.3, size=(n, 200)).astype(float)
    g = (g - g.mean(0)) / (g.std(0) + 1e-9)
    kin = g @ g.T / g.shape[1] + 1e-3 * np.eye(n)
    x = rng.binomial(2, 0.4, size=(n, m)).astype(float)
    y = 1.0 + 0.5 * x[:, 0] + rng.multivariate_normal(np.zeros(n), 0.8 * kin) + rng.normal(size=n)
    z1 = np.eye(q[0])[rng.integers(0, q[0], n)]
    z2 = np.eye(q[1])[rng.integers(0, q[1], n)]
    a1 = rng.normal(size=(q[0], q[0]))
    k1 = a1 @ a1.T / q[0] + np.eye(q[0])
    y3 = y + z1 @ rng.normal(size=q[0]) + z2 @ rng.normal(size=q[1])
    return dict(y=y, x=x, kin=kin, z1=z1, z2=z2, k1=k1, y3=y3, cof=rng.normal(size=(n, 1)))


SIM = _sim()


def _alone(kw, x):
    out = []
    for j in range(x.shape[1]):
        out.append(mj.mmest(x=x[:, [j]], **kw)[0])
    return out


def _assert_same(batch, alone):
    for j, fit in enumerate(alone):
        b = batch[j]
        np.testing.assert_allclose(b.sigma2.to_numpy(), fit.sigma2.to_numpy(), rtol=1e-10)
        np.testing.assert_allclose(b.beta.to_numpy(), fit.beta.to_numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b.loglik, fit.loglik, rtol=1e-12)
        assert b.n_iter == fit.n_iter


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_two_component_batch_equals_alone(method):
    s = SIM
    kw = dict(y=s["y"], cofactor=s["cof"], var_list=[s["kin"], np.eye(len(s["y"]))], method=method, verbose=False)
    batch = mj.mmest(x=s["x"], chunk_size=3, **kw)  # 7 models in chunks of 3: padding used
    assert batch.path == "rotated"
    _assert_same(batch, _alone(kw, s["x"]))


@pytest.mark.parametrize("henderson", [True, False])
def test_three_component_batch_equals_alone(henderson):
    s = SIM
    n = len(s["y"])
    kw = dict(
        y=s["y3"],
        var_list={"A": s["k1"], "B": np.eye(s["z2"].shape[1]), "Error": np.eye(n)},
        z_list={"A": s["z1"], "B": s["z2"], "Error": np.eye(n)},
        henderson=henderson,
        verbose=False,
    )
    batch = mj.mmest(x=s["x"][:, :4], chunk_size=3, **kw)
    assert batch.path == ("henderson" if henderson else "dense")
    _assert_same(batch, _alone(kw, s["x"][:, :4]))


def test_henderson_and_dense_paths_agree():
    s = SIM
    n = len(s["y"])
    kw = dict(
        y=s["y3"],
        x=s["x"][:, :3],
        var_list={"A": s["k1"], "B": np.eye(s["z2"].shape[1]), "Error": np.eye(n)},
        z_list={"A": s["z1"], "B": s["z2"], "Error": np.eye(n)},
        crit_var=1e-10,
        crit_loglik=1e-10,
        max_iter=5000,
        verbose=False,
    )
    h = mj.mmest(henderson=True, **kw)
    d = mj.mmest(henderson=False, **kw)
    np.testing.assert_allclose(h.sigma2_array, d.sigma2_array, rtol=1e-5)
    np.testing.assert_allclose(h.loglik_array, d.loglik_array, rtol=1e-10)
    np.testing.assert_allclose(h.beta_array, d.beta_array, rtol=1e-5)


def test_rotated_and_dense_paths_agree_two_components():
    """The joint-diagonalisation path and the generic dense MM reach the same optimum,
    also with a non-identity second matrix."""
    from mm4lmm_jax.core._fit import fit_dense, fit_rotated
    from mm4lmm_jax.core._iterate import Stopping
    from mm4lmm_jax.core._transforms import joint_diagonalise

    s = SIM
    n = len(s["y"])
    k2 = 0.5 * np.eye(n) + 0.5 * np.diag(np.linspace(0.5, 1.5, n))
    x = np.column_stack([np.ones(n), s["x"][:, 0]])
    crit = dict(stopping=Stopping(crit_var=1e-11, crit_loglik=1e-11, max_iter=20000))
    for method in ("reml", "ml"):
        rot = joint_diagonalise(s["kin"], k2)
        a = fit_rotated(rot.t @ s["y"], rot.t @ x, rot.d, np.ones(2), method=method, logdet_k2=rot.logdet_k2, **crit)
        b = fit_dense(s["y"], x, np.stack([s["kin"], k2]), np.ones(2), method=method, **crit)
        np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-5)
        np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-11)


def test_monomorphic_marker_is_dropped_with_warning():
    s = SIM
    x = s["x"][:, :3].copy()
    x[:, 1] = 1.0
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = mj.mmest(s["y"], x=x, var_list=[s["kin"], np.eye(len(s["y"]))], verbose=False)
    ranks = [str(r.message) for r in w if issubclass(r.category, mj.RankDeficiencyWarning)]
    assert ranks == ["model 'X2': column(s) ['Xeffect'] are aliased with the others and were dropped (as MM4LMM does)"]
    assert list(res[1].beta.index) == ["(Intercept)"]
    assert list(res[0].beta.index) == ["(Intercept)", "Xeffect"]
    assert np.isnan(res.to_frame().loc["X2", "beta[Xeffect]"])


def test_scans_of_any_size_reuse_one_compiled_chunk():
    """Chunks are padded to a fixed shape: scans of 5, 11 and 6 markers (chunks of 4)
    compile one program; only a scan smaller than one chunk gets its own (smaller) shape."""
    from mm4lmm_jax.core._batch import fit_chunk

    s = SIM
    kw = dict(var_list=[s["kin"], np.eye(len(s["y"]))], chunk_size=4, verbose=False)
    rng = np.random.default_rng(9)
    mj.mmest(s["y"], x=rng.normal(size=(len(s["y"]), 5)), **kw)
    before = fit_chunk._cache_size()
    mj.mmest(s["y"], x=rng.normal(size=(len(s["y"]), 11)), **kw)
    mj.mmest(s["y"] + 1.0, x=rng.normal(size=(len(s["y"]), 6)), **kw)
    assert fit_chunk._cache_size() == before
