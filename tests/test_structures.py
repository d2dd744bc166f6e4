"""Every covariance structure offers the same operations with the same answers: the quadratic
form, ``V^-1 r`` and the fit agree with the dense form; the iteration protocol's statuses."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from mm4lmm_jax.core import _batch as batch
from mm4lmm_jax.core._iterate import Solution, Status, Stopping, iterate, squarem
from mm4lmm_jax.core._structures import STRUCTURES, Dense, Henderson, Single, Structure, TwoComponent, choose

N = 48
RNG = np.random.default_rng(3)
W = RNG.normal(size=(N, 12))
KIN = W @ W.T / 12 + 0.05 * np.eye(N)
Z = np.kron(np.eye(8), np.ones((6, 1)))
R = np.diag(RNG.uniform(0.5, 2.0, N))
Y = RNG.normal(size=N) + Z @ RNG.normal(size=8) + W @ RNG.normal(size=12) / np.sqrt(3)
X = np.column_stack([np.ones(N), RNG.normal(size=N)])
TIGHT = Stopping(1e-12, 1e-12, 20000)


def _cases():
    """(structure class, z_list, g_list, sigma2) on the same data."""
    return [
        (Single, [None], [KIN], np.array([1.3])),
        (TwoComponent, [None, None], [KIN, np.eye(N)], np.array([0.7, 1.1])),
        (TwoComponent, [None, None], [KIN, R], np.array([0.7, 1.1])),
        (Henderson, [None, Z, None], [KIN, np.eye(8), np.eye(N)], np.array([0.6, 0.4, 0.9])),
        (Henderson, [None, Z, None], [KIN, 0.5 * np.eye(8) + 0.5, R], np.array([0.6, 0.4, 0.9])),
    ]


def _prepare(cls, z_list, g_list):
    covs = [g if z is None else z @ g @ z.T for z, g in zip(z_list, g_list)]
    return cls.prepare(Y, z_list, g_list, covs).for_inference(), Dense.prepare(Y, z_list, g_list, covs)


def test_every_structure_is_listed_and_chosen():
    assert set(STRUCTURES) == {Single, TwoComponent, Henderson, Dense}
    assert choose(1, "reml", True, N, 0, 1, True, None)[0] is Single
    assert choose(2, "reml", True, N, N, 1, True, None)[0] is TwoComponent
    assert choose(2, "reml", False, N, N, 1, True, None)[0] is Dense
    assert choose(3, "reml", True, N, 20, 1, True, None)[0] is Henderson
    cls, notes = choose(3, "ml", True, N, 20, 1, True, True)
    assert cls is Dense and "not available for ML" in notes[0]


@pytest.mark.parametrize("case", range(5))
def test_quad_and_v_inverse_equal_the_dense_form(case):
    cls, z_list, g_list, sigma2 = _cases()[case]
    struct, dense = _prepare(cls, z_list, g_list)
    m, logdet = struct.quad(jnp.asarray(X))(jnp.asarray(sigma2))
    m_d, logdet_d = dense.quad(jnp.asarray(X))(jnp.asarray(sigma2))
    np.testing.assert_allclose(m, m_d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(logdet, logdet_d, rtol=1e-11)
    a = jnp.asarray(np.column_stack([X, Y]))
    at_zero = [jnp.asarray(sigma2).at[0].set(0.0)] if len(sigma2) > 1 else []  # smooth at zero
    for s in [jnp.asarray(sigma2), *at_zero]:
        m_a, logdet_a = struct.quad_data(a)(s)
        m_ad, logdet_ad = dense.quad_data(a)(s)
        np.testing.assert_allclose(m_a, m_ad, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(logdet_a, logdet_ad, rtol=1e-11)
    r = jnp.asarray(RNG.normal(size=N))
    np.testing.assert_allclose(
        struct.v_inv_times(jnp.asarray(sigma2), r), dense.v_inv_times(jnp.asarray(sigma2), r), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("case", range(5))
def test_fits_reach_the_dense_optimum(case):
    cls, z_list, g_list, _ = _cases()[case]
    struct, dense = _prepare(cls, z_list, g_list)
    k = len(g_list)
    extra = RNG.normal(size=(3, N, 1))
    kw = dict(method="reml", stopping=TIGHT)
    a = batch.fit_models(struct, X, extra, np.full(k, 0.5), **kw)
    b = batch.fit_models(dense, X, extra, np.full(k, 0.5), **kw)
    assert (a.status == Status.OK).all() and (b.status == Status.OK).all()
    assert (a.sigma2 > 1e-3).all()  # away from the boundary
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-5)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-10)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-5, atol=1e-8)


def test_a_structure_refuses_a_method_it_cannot_fit():
    struct, _ = _prepare(Henderson, [None, Z, None], [KIN, np.eye(8), np.eye(N)])
    with pytest.raises(ValueError, match="Henderson"):
        batch.fit_models(struct, X, np.zeros((1, N, 0)), np.ones(3), method="ml", stopping=TIGHT)


def test_statuses_of_the_protocol():
    dense = _prepare(Dense, [None, None], [KIN, np.eye(N)])[1]
    short = batch.fit_models(
        dense, X, np.zeros((1, N, 0)), np.ones(2), method="reml", stopping=Stopping(1e-12, 1e-12, 2)
    )
    assert int(short.status[0]) == Status.MAX_STEPS and not short.converged[0] and short.finite[0]
    assert int(short.n_steps[0]) == 3  # two steps, then one more so as not to stop on an extrapolation
    broken = Dense(jnp.asarray(Y), jnp.stack([jnp.asarray(KIN), -jnp.eye(N) * 10]))
    out = batch.fit_models(broken, X, np.zeros((1, N, 0)), np.ones(2), method="reml", stopping=TIGHT)
    assert int(out.status[0]) == Status.NONFINITE
    assert [s.label for s in Status][:5] == [
        "ok",
        "all missing",
        "monomorphic",
        "collinear with covariates",
        "not converged",
    ]


def test_stopping_is_a_checked_hashable_value():
    assert hash(Stopping(1e-3, 1e-3, 100)) == hash(Stopping(0.001, 0.001, 100.0))
    for bad in (dict(crit_var=0), dict(crit_loglik=-1), dict(max_iter=0), dict(max_iter=2.5)):
        with pytest.raises(ValueError):
            Stopping(**bad)


def test_squarem_solves_a_fixed_point_and_counts_its_steps():
    """``x -> (x + 4 / x) / 2`` (Newton for sqrt 4) as an 'MM update' with the log-likelihood
    -(x - 2)^2: the protocol's Solution carries the answer, OK and the step count."""

    def update(x):
        return -jnp.sum((x - 2.0) ** 2), (x + 4.0 / x) / 2.0

    sol = squarem(update, jnp.array([7.0]), Stopping(1e-12, 1e-12, 100))
    assert isinstance(sol, Solution) and int(sol.status) == Status.OK
    assert abs(float(sol.value[0]) - 2.0) < 1e-10 and 2 <= int(sol.n_steps) < 100


def test_iterate_runs_any_solver():
    class Halve:
        def init(self, x0):
            return x0

        def step(self, x, n):
            return x / 2

        def terminate(self, x, n):
            return x < 1

        def finish(self, x, n):
            return x, jnp.int32(Status.OK)

    sol = iterate(Halve(), jnp.float64(100.0))
    assert float(sol.value) == 100 / 128 and int(sol.n_steps) == 7


def test_mmest_reports_each_models_status():
    import mm4lmm_jax as mj

    with pytest.warns(UserWarning):
        res = mj.mmest(
            Y, x=X[:, 1:], var_list=[KIN, np.eye(N)], crit_var=1e-12, crit_loglik=1e-12, max_iter=2, algorithm="mm"
        )
    assert res.status_array.tolist() == [Status.MAX_STEPS] and not res.converged_array[0]
    ok = mj.mmest(Y, var_list=[KIN, np.eye(N)], verbose=False)
    assert ok.status_array.tolist() == [Status.OK] and ok.converged_array.all()


def test_a_new_structure_is_one_class():
    """A structure written outside the package (here: two components with a diagonal first
    matrix, no rotation) runs through the batched fits and the batched inference unchanged."""
    import dataclasses

    import jax

    from mm4lmm_jax.core._fit import fit_rotated
    from mm4lmm_jax.core._information import expected_information
    from mm4lmm_jax.core._quad import rotated_quad

    @dataclasses.dataclass(frozen=True)
    class Diagonal(Structure):
        y: jnp.ndarray
        d: jnp.ndarray
        batch_by_vmap = True

        @classmethod
        def prepare(cls, y, z_list, g_list, covariances, *, newton=False):
            return cls(jnp.asarray(y), jnp.diagonal(jnp.asarray(covariances[0])))

        def fit(self, x_t, sigma0, *, method, stopping):
            return fit_rotated(self.y, x_t, self.d, sigma0, method=method, stopping=stopping)

        def quad(self, x):
            a = jnp.concatenate([x, self.y[:, None]], axis=1)
            return lambda sigma2: rotated_quad(sigma2, a, self.d)

        def v_inv_times(self, sigma2, r):
            return r / (sigma2[0] * self.d + sigma2[1])

    jax.tree_util.register_dataclass(Diagonal, data_fields=["y", "d"], meta_fields=[])
    rng = np.random.default_rng(11)
    n = 400
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    diag = np.diag(rng.uniform(0.0, 4.0, n))
    y = x @ [1.0, 0.5] + rng.normal(size=n) * np.sqrt(1.0 + 2.0 * np.diag(diag))  # both components present
    args = (y, [None, None], [diag, np.eye(n)], [diag, np.eye(n)])
    new, ref = Diagonal.prepare(*args), TwoComponent.prepare(*args)
    extra = rng.normal(size=(5, n, 1))
    for method in ("reml", "ml"):
        a = batch.fit_models(new, x, extra, np.ones(2), method=method, stopping=TIGHT)
        b = batch.fit_models(ref, x, extra, np.ones(2), method=method, stopping=TIGHT)
        assert (a.sigma2 > 0.1).all() and (a.status == Status.OK).all()
        np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-6)
        np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-11)

    def info(quad, p, sigma2):
        return expected_information(quad, sigma2, p, "reml")

    designs = jnp.asarray(np.concatenate([np.broadcast_to(x, (5, n, 2)), extra], axis=2))
    s2 = jnp.asarray(a.sigma2)
    np.testing.assert_allclose(
        batch.map_models(info, new, designs, s2), batch.map_models(info, ref, designs, s2), rtol=1e-8
    )
