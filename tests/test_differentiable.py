"""``core.fit`` is differentiable: implicit derivatives of the optimum (and of everything computed
from it: beta, log-likelihood, information, Wald p-values, BLUPs, Kenward-Roger) equal central
finite differences of exact refits (1e-6 relative), on every structure, ReML and ML, in forward
and reverse mode, under ``jit`` and ``vmap``, with the boundary held."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mm4lmm_jax import core

N = 30
RNG = np.random.default_rng(21)
W = RNG.normal(size=(N, 8))
KIN = W @ W.T / 8 + 0.05 * np.eye(N)
B = RNG.normal(size=(N, 5))
KIN2 = B @ B.T / 5 + 0.05 * np.eye(N)
X = np.column_stack([np.ones(N), RNG.normal(size=N)])
Z1 = np.zeros((N, 6))
Z1[np.arange(N), np.arange(N) % 6] = 1.0  # six groups of five
Z2 = RNG.normal(size=(N, 4))
G1 = np.eye(6) + 0.3
Y = (
    X @ [1.0, 0.5]
    + W @ RNG.normal(size=8) / 2
    + 1.5 * B @ RNG.normal(size=5)
    + 3.0 * Z1 @ RNG.normal(size=6)
    + Z2 @ RNG.normal(size=4) / 2
    + RNG.normal(size=N)
)
R = np.diag(RNG.uniform(0.5, 2.0, N))

#: name -> (covariances, z, the structure fit uses)
CASES = {
    "one component": ([np.eye(N)], None, "single"),
    "two components": ([KIN, np.eye(N)], None, "rotated"),
    "two, general second matrix": ([KIN, R], None, "rotated"),
    "three components (dense)": ([KIN, KIN2, np.eye(N)], None, "dense"),
    "Z forms (Henderson)": ([G1, np.eye(4), None], [Z1, Z2], "henderson"),
    "Z forms, general R (Henderson)": ([G1, np.eye(4), R], [Z1, Z2], "henderson"),
}


def _data(case):
    covs, z, _ = CASES[case]
    if z is None:
        return jnp.asarray(np.stack(covs)), None
    return [None if c is None else jnp.asarray(c) for c in covs], [jnp.asarray(a) for a in z]


def _loglik(s, y, x, covs, z, method):
    return core.loglik_from_quad(core.model_quad(y, x, covs, z), s, y.shape[0], x.shape[1], method)


@partial(jax.jit, static_argnames=("method",))
def _newton(s, y, x, covs, z, method):
    for _ in range(3):
        g = jax.grad(_loglik)(s, y, x, covs, z, method)
        h = jax.hessian(_loglik)(s, y, x, covs, z, method)
        s = s - jnp.linalg.solve(h, g)
    return s


def _exact(y, x, covs, z, method):
    """The optimum to machine precision: the fit, then Newton on the log-likelihood."""
    return _newton(core.fit(y, x, covs, z=z, method=method).sigma2, y, x, covs, z, method)


def _directions(covs, z, seed):
    """Random directions in y, in x's second column, in the first covariance (symmetric) and in
    the continuous Z (the group incidence stays 0/1)."""
    rng = np.random.default_rng(seed)
    dy = jnp.asarray(rng.normal(size=N))
    dx = np.zeros((N, 2))
    dx[:, 1] = rng.normal(size=N)  # the intercept stays an intercept
    a = rng.normal(size=(N, N))
    if z is None:
        dc = np.zeros(covs.shape)
        dc[0] = 0.1 * (a + a.T)
        return dy, jnp.asarray(dx), jnp.asarray(dc), None
    dc = [None if c is None else jnp.zeros_like(c) for c in covs]
    dc[0] = jnp.asarray(0.1 * (a[:6, :6] + a[:6, :6].T))
    dz = [jnp.zeros_like(z[0]), jnp.asarray(0.3 * rng.normal(size=z[1].shape))]
    return dy, jnp.asarray(dx), dc, dz


def _plus(a, t, da):
    return jax.tree_util.tree_map(lambda u, v: u + t * v, a, da)


def _first_blup(res, y, x, covs, z):
    u = core.blups(res, y, x, covs, z)
    return u[0] if u else jnp.zeros(0)


def _outputs(y, x, covs, z, s, method):
    """Everything computed from an optimum ``s``: sigma2, beta, loglik, Wald p-values, BLUPs."""
    quad = core.model_quad(y, x, covs, z)
    beta, vb = core._information.gls_from_quad(quad, s, 2)
    res = core.FitResult(s, beta, vb, _loglik(s, y, x, covs, z, method), None, None, None)
    return s, beta, res.loglik, core.wald(res).p_value, _first_blup(res, y, x, covs, z)


@pytest.mark.parametrize(
    "case, method",
    [(c, "reml") for c in CASES] + [("two, general second matrix", "ml"), ("three components (dense)", "ml")],
)
def test_implicit_derivatives_equal_finite_differences(case, method):
    covs, z = _data(case)
    y, x = jnp.asarray(Y), jnp.asarray(X)
    res = core.fit(y, x, covs, z=z, method=method)
    assert int(res.status) == 0 and np.all(np.asarray(res.sigma2) > 1e-3)
    dy, dx, dc, dz = _directions(covs, z, len(case))

    def outputs(y, x, c, zz):
        r = core.fit(y, x, c, z=zz, method=method)
        return r.sigma2, r.beta, r.loglik, core.wald(r).p_value, _first_blup(r, y, x, c, zz)

    # y and x move, the covariances stay (the structure's own algebra: rotation, Henderson blocks);
    # then the covariances and Z move (the dense / Woodbury algebra)
    _, along_data = jax.jvp(lambda y, x: outputs(y, x, covs, z), (y, x), (dy, dx))
    _, along_covs = jax.jvp(lambda c, zz: outputs(y, x, c, zz), (covs, z), (dc, dz))
    eps = 1e-5

    def exact_outputs(t, data: bool):
        if data:
            yy, xx, cc, zz = y + t * dy, x + t * dx, covs, z
        else:
            yy, xx, cc, zz = y, x, _plus(covs, t, dc), _plus(z, t, dz)
        return _outputs(yy, xx, cc, zz, _exact(yy, xx, cc, zz, method), method)

    for tangent, data in ((along_data, True), (along_covs, False)):
        plus, minus = exact_outputs(eps, data), exact_outputs(-eps, data)
        for got, hi, lo in zip(tangent, plus, minus):
            fd = (np.asarray(hi) - np.asarray(lo)) / (2 * eps)
            np.testing.assert_allclose(np.asarray(got), fd, rtol=1e-6, atol=1e-8 * np.max(np.abs(fd), initial=0.0))


def test_each_case_uses_the_structure_it_names():
    for case, (_, _, key) in CASES.items():
        covs, z = _data(case)
        got = core._implicit._structure(jnp.asarray(Y), jnp.asarray(X), covs, z, "reml")
        assert got.key == key, case


def test_henderson_and_dense_fits_agree():
    covs, z = _data("Z forms, general R (Henderson)")
    dense = jnp.stack([z[0] @ covs[0] @ z[0].T, z[1] @ covs[1] @ z[1].T, covs[2]])
    a = core.fit(jnp.asarray(Y), jnp.asarray(X), covs, z=z)
    b = core.fit(jnp.asarray(Y), jnp.asarray(X), dense)
    np.testing.assert_allclose(a.sigma2, b.sigma2, rtol=1e-9)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-12)
    np.testing.assert_allclose(a.information, b.information, rtol=1e-8)


def test_kenward_roger_through_the_fit():
    """The KR F statistic, denominator df and p-value of a coefficient, differentiated through the fit."""
    covs, _ = _data("three components (dense)")
    x = jnp.asarray(X)

    def kr(y):
        r = core.fit(y, x, covs)
        ing = core.kr_ingredients(core.model_quad(y, x, covs), r.sigma2, 2)
        out = core.kr_test(r.beta, ing, jnp.array([[0.0, 1.0]]))
        return jnp.stack([out.f, out.ddf, out.pval])

    y = jnp.asarray(Y)
    dy = jnp.asarray(np.random.default_rng(3).normal(size=N))
    _, tangent = jax.jvp(kr, (y,), (dy,))

    def exact(t):
        yy = y + t * dy
        s = _exact(yy, x, covs, None, "reml")
        beta, _ = core._information.gls_from_quad(core.model_quad(yy, x, covs), s, 2)
        out = core.kr_test(beta, core.kr_ingredients(core.model_quad(yy, x, covs), s, 2), jnp.array([[0.0, 1.0]]))
        return np.array([out.f, out.ddf, out.pval])

    fd = (exact(1e-5) - exact(-1e-5)) / 2e-5
    np.testing.assert_allclose(tangent, fd, rtol=1e-6)


def test_reverse_mode_equals_forward_mode():
    covs, z = _data("Z forms (Henderson)")

    def h2(y):
        s = core.fit(y, jnp.asarray(X), covs, z=z).sigma2
        return s[0] / jnp.sum(s)

    y = jnp.asarray(Y)
    np.testing.assert_allclose(jax.jacrev(h2)(y), jax.jacfwd(h2)(y), rtol=1e-9, atol=1e-12)


def test_jit_vmap_grad_equals_per_phenotype_grads():
    covs, _ = _data("two components")
    x = jnp.asarray(X)
    ys = jnp.asarray(Y + RNG.normal(size=(3, N)))

    def first(y):
        return core.fit(y, x, covs).sigma2[0]

    batched = jax.jit(jax.vmap(jax.grad(first)))(ys)
    # MM stops batched and single fits ~1e-7 apart; the Newton polish brings both to the optimum
    for i in range(3):
        np.testing.assert_allclose(batched[i], jax.grad(first)(ys[i]), rtol=1e-9, atol=1e-12)


def test_per_marker_p_value_derivatives():
    """d p-value / d phenotype for every marker of a scan at once (vmap over markers of the
    grad of a marker's Wald p-value), against finite differences of exact refits."""
    rng = np.random.default_rng(5)
    markers = jnp.asarray(rng.binomial(2, 0.3, size=(4, N)).astype(float))
    covs, _ = _data("two components")
    x = jnp.asarray(X)

    def p_value(y, g):
        r = core.fit(y, jnp.column_stack([x, g]), covs)
        return core.wald(r).p_value[-1]

    y = jnp.asarray(Y)
    grads = jax.jit(jax.vmap(jax.grad(p_value), in_axes=(None, 0)))(y, markers)
    dy = jnp.asarray(rng.normal(size=N))

    def exact_p(t, g):
        yy, xx = y + t * dy, jnp.column_stack([x, g])
        s = _exact(yy, xx, covs, None, "reml")
        beta, vb = core._information.gls_from_quad(core.model_quad(yy, xx, covs), s, 3)
        return float(core.wald(core.FitResult(s, beta, vb, None, None, None, None)).p_value[-1])

    for g, grad in zip(markers, grads):
        fd = (exact_p(1e-5, g) - exact_p(-1e-5, g)) / 2e-5
        np.testing.assert_allclose(float(grad @ dy), fd, rtol=1e-6)


@pytest.mark.parametrize("case", ["two components", "Z forms (Henderson)", "three components (dense)"])
def test_a_component_at_the_boundary_is_held(case):
    """A random component with no signal: its variance is estimated at 0, its sensitivity is 0
    and the other derivatives are finite -- in forward and reverse mode, with respect to y and
    every covariance -- and equal those of the model without that component."""
    covs, z = _data(case)
    rng = np.random.default_rng(1)
    x = jnp.asarray(X)
    e = rng.normal(size=N)
    if z is not None:  # no group signal: the noise without its group means, plus the Z2 effect
        e = e - Z1 @ np.linalg.solve(Z1.T @ Z1, Z1.T @ e) + Z2 @ rng.normal(size=4)
    y = jnp.asarray(X @ [1.0, 0.5] + e)
    res = core.fit(y, x, covs, z=z)
    assert float(res.sigma2[0]) < 1e-9 * float(res.sigma2[-1])  # at the boundary
    fwd = jax.jacfwd(lambda y: core.fit(y, x, covs, z=z).sigma2)(y)
    assert np.all(np.isfinite(np.asarray(fwd))) and np.all(np.asarray(fwd[0]) == 0.0)
    weights = jnp.asarray(rng.uniform(0.5, 1.5, res.sigma2.shape[0]))
    rev_y, rev_cov = jax.grad(lambda y, c: core.fit(y, x, c, z=z).sigma2 @ weights, argnums=(0, 1))(y, covs)
    np.testing.assert_allclose(rev_y, weights @ fwd, rtol=1e-8, atol=1e-12)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(rev_cov))
    others = jax.jacfwd(lambda y: core.fit(y, x, covs[1:], z=None if z is None else z[1:]).sigma2)(y)
    free = np.asarray(res.sigma2[1:]) > 1e-6 * float(res.sigma2.sum())
    np.testing.assert_allclose(np.asarray(fwd[1:])[free], np.asarray(others)[free], rtol=1e-5, atol=1e-10)


def _boundary_aware_exact(y, x, covs, z, method):
    """The optimum to machine precision, components at zero held there."""
    s = core.fit(y, x, covs, z=z, method=method).sigma2
    free = s > 1e-6 * jnp.sum(s)
    both = free[:, None] & free[None, :]
    for _ in range(3):
        h = jnp.where(both, jax.hessian(_loglik)(s, y, x, covs, z, method), jnp.eye(s.size))
        g = jnp.where(free, jax.grad(_loglik)(s, y, x, covs, z, method), 0.0)
        s = s - jnp.linalg.solve(h, g)
    return s


@pytest.mark.parametrize("case", ["four components, Z forms (Henderson)", "four components, ML, one at zero (dense)"])
def test_more_components_and_a_boundary_along_every_input(case):
    """K = 4: Henderson with three Z blocks (two grouping factors and a continuous Z); dense ML with
    a component estimated at zero -- d sigma2 along y and every covariance at once, against finite
    differences of exact refits."""
    rng = np.random.default_rng(11)
    n = 40
    z1 = np.zeros((n, 5))
    z1[np.arange(n), np.arange(n) % 5] = 1.0
    z2 = np.zeros((n, 4))
    z2[np.arange(n), rng.integers(0, 4, n)] = 1.0
    z3 = rng.normal(size=(n, 3))
    x = jnp.asarray(np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)]))
    w = rng.normal(size=(n, 10))
    kin = w @ w.T / 10 + 0.05 * np.eye(n)
    y = x @ jnp.array([1.0, 0.5, -0.3]) + 3 * z1 @ rng.normal(size=5) + 2 * z2 @ rng.normal(size=4)
    y = jnp.asarray(y + z3 @ rng.normal(size=3) + rng.normal(size=n))
    if case.startswith("four components, Z"):
        covs, z, method = [jnp.eye(5), jnp.eye(4), jnp.eye(3), None], [jnp.asarray(a) for a in (z1, z2, z3)], "reml"
    else:
        covs, z, method = jnp.asarray(np.stack([kin, z1 @ z1.T, z2 @ z2.T, np.eye(n)])), None, "ml"
    s = core.fit(y, x, covs, z=z, method=method).sigma2
    assert int(core.fit(y, x, covs, z=z, method=method).status) == 0
    if z is None:
        assert float(s[0]) < 1e-9 * float(s.sum())  # the kinship's component is at zero
    dy = jnp.asarray(rng.normal(size=n))
    dc = jax.tree_util.tree_map(lambda a: 0.1 * jnp.asarray(rng.normal(size=a.shape)), covs)
    dc = jax.tree_util.tree_map(lambda a: 0.5 * (a + jnp.swapaxes(a, -1, -2)), dc)
    _, got = jax.jvp(lambda y, c: core.fit(y, x, c, z=z, method=method).sigma2, (y, covs), (dy, dc))
    eps = 1e-5
    hi = _boundary_aware_exact(y + eps * dy, x, _plus(covs, eps, dc), z, method)
    lo = _boundary_aware_exact(y - eps * dy, x, _plus(covs, -eps, dc), z, method)
    fd = (hi - lo) / (2 * eps)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8 * float(jnp.max(jnp.abs(fd))))
