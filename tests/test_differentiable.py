"""``core.fit`` is differentiable: implicit derivatives of the optimum (and of everything computed
from it) equal central finite differences of exact refits, in forward and reverse mode, under
``jit`` and ``vmap``, with the boundary held."""

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
Y = X @ [1.0, 0.5] + W @ RNG.normal(size=8) / 2 + B @ RNG.normal(size=5) / 3 + RNG.normal(size=N)
R = np.diag(RNG.uniform(0.5, 2.0, N))

CASES = {
    "one component": [np.eye(N)],
    "two components": [KIN, np.eye(N)],
    "two, general second matrix": [KIN, R],
    "three components (dense)": [KIN, KIN2, np.eye(N)],
}


@partial(jax.jit, static_argnames=("method",))
def _exact(y, x, covs, method):
    """The optimum to machine precision: the fit, then Newton on the log-likelihood."""
    s = core.fit(y, x, covs, method=method).sigma2
    for _ in range(3):
        g = jax.grad(core.loglik_dense)(s, y, x, covs, method)
        h = jax.hessian(core.loglik_dense)(s, y, x, covs, method)
        s = s - jnp.linalg.solve(h, g)
    return s


def _directions(k):
    rng = np.random.default_rng(k)
    dy = rng.normal(size=N)
    dx = np.zeros((N, 2))
    dx[:, 1] = rng.normal(size=N)  # the intercept stays an intercept
    a = rng.normal(size=(N, N))
    dc = np.zeros((k, N, N))
    dc[0] = 0.1 * (a + a.T)  # a symmetric perturbation of the first matrix
    return jnp.asarray(dy), jnp.asarray(dx), jnp.asarray(dc)


@pytest.mark.parametrize(
    "case, method",
    [(c, "reml") for c in CASES] + [("two, general second matrix", "ml"), ("three components (dense)", "ml")],
)
def test_implicit_derivatives_equal_finite_differences(case, method):
    covs = jnp.asarray(np.stack(CASES[case]))
    y, x = jnp.asarray(Y), jnp.asarray(X)
    res = core.fit(y, x, covs, method=method)
    assert int(res.status) == 0 and np.all(np.asarray(res.sigma2) > 1e-3)
    dy, dx, dc = _directions(covs.shape[0])

    def outputs(y, x, c):
        r = core.fit(y, x, c, method=method)
        return r.sigma2, r.beta, r.loglik

    _, tangent = jax.jvp(outputs, (y, x, covs), (dy, dx, dc))
    eps = 1e-5

    def exact_outputs(t):
        yy, xx, cc = y + t * dy, x + t * dx, covs + t * dc
        s = _exact(yy, xx, cc, method)
        a = jnp.concatenate([xx, yy[:, None]], axis=1)
        beta, _ = core._information.gls_from_quad(lambda v: core.dense_quad(v, a, cc), s, 2)
        return s, beta, core.loglik_dense(s, yy, xx, cc, method)

    plus, minus = exact_outputs(eps), exact_outputs(-eps)
    for got, hi, lo in zip(tangent, plus, minus):
        fd = (np.asarray(hi) - np.asarray(lo)) / (2 * eps)
        np.testing.assert_allclose(np.asarray(got), fd, rtol=1e-6, atol=1e-8 * np.max(np.abs(fd)))


def test_reverse_mode_equals_forward_mode():
    covs = jnp.asarray(np.stack(CASES["two components"]))

    def h2(y):
        s = core.fit(y, jnp.asarray(X), covs).sigma2
        return s[0] / jnp.sum(s)

    y = jnp.asarray(Y)
    np.testing.assert_allclose(jax.jacrev(h2)(y), jax.jacfwd(h2)(y), rtol=1e-9, atol=1e-12)
    kin_grad = jax.grad(lambda c: core.fit(y, jnp.asarray(X), c).sigma2[0])(covs)
    assert np.all(np.isfinite(np.asarray(kin_grad)))


def test_jit_vmap_grad_equals_per_phenotype_grads():
    covs = jnp.asarray(np.stack(CASES["two components"]))
    x = jnp.asarray(X)
    ys = jnp.asarray(Y + RNG.normal(size=(3, N)))

    def first(y):
        return core.fit(y, x, covs).sigma2[0]

    batched = jax.jit(jax.vmap(jax.grad(first)))(ys)
    # MM stops within its 1e-10 criterion: batched and single fits stop ~1e-9 apart
    for i in range(3):
        np.testing.assert_allclose(batched[i], jax.grad(first)(ys[i]), rtol=1e-6, atol=1e-10)


def test_a_component_at_the_boundary_is_held():
    """A kinship with no signal: its variance is estimated at 0; its sensitivity is 0 and the
    error's derivative is finite (and equals the one-component model's)."""
    rng = np.random.default_rng(1)
    y = jnp.asarray(X @ [1.0, 0.5] + rng.normal(size=N))
    covs = jnp.asarray(np.stack([KIN, np.eye(N)]))
    res = core.fit(y, jnp.asarray(X), covs)
    assert float(res.sigma2[0]) < 1e-9 * float(res.sigma2[1])  # at the boundary
    grad = jax.jacfwd(lambda y: core.fit(y, jnp.asarray(X), covs).sigma2)(y)
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad[0]) == 0.0)
    alone = jax.jacfwd(lambda y: core.fit(y, jnp.asarray(X), jnp.eye(N)[None]).sigma2)(y)
    np.testing.assert_allclose(grad[1], alone[0], rtol=1e-5, atol=1e-10)
