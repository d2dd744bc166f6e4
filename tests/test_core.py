"""The pure JAX core: gradients against finite differences, jit/vmap, paths' likelihoods agree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mm4lmm_jax.core._likelihood import loglik_dense, loglik_rotated
from mm4lmm_jax.core._mm import henderson_loglik, henderson_solve, step_dense, step_henderson
from mm4lmm_jax.core._transforms import henderson_system, joint_diagonalise

RNG = np.random.default_rng(3)
N = 60
A = RNG.normal(size=(N, N))
K1 = A @ A.T / N + 0.1 * np.eye(N)
X = np.column_stack([np.ones(N), RNG.normal(size=N)])
Y = X @ np.array([1.0, 0.5]) + RNG.multivariate_normal(np.zeros(N), K1 + np.eye(N))
COVS = np.stack([K1, np.eye(N)])
SIGMA = np.array([0.7, 1.3])


def _fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_grad_dense_matches_finite_differences(method):
    f = lambda s: float(loglik_dense(s, Y, X, COVS, method))  # noqa: E731
    g = jax.grad(loglik_dense)(jnp.asarray(SIGMA), Y, X, COVS, method)
    np.testing.assert_allclose(g, _fd_grad(f, SIGMA), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_grad_rotated_matches_finite_differences_and_dense(method):
    rot = joint_diagonalise(K1)
    yr, xr = rot.t @ Y, rot.t @ X
    f = lambda s: float(loglik_rotated(s, yr, xr, rot.d, method))  # noqa: E731
    g = jax.grad(loglik_rotated)(jnp.asarray(SIGMA), yr, xr, rot.d, method)
    np.testing.assert_allclose(g, _fd_grad(f, SIGMA), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(f(SIGMA), float(loglik_dense(SIGMA, Y, X, COVS, method)), rtol=1e-12)
    np.testing.assert_allclose(g, jax.grad(loglik_dense)(jnp.asarray(SIGMA), Y, X, COVS, method), rtol=1e-8)


def test_mm_step_is_fixed_point_at_zero_gradient_direction():
    """At a stationary point of the ReML likelihood the MM map leaves sigma2 unchanged."""
    s = jnp.asarray(SIGMA)
    for _ in range(3000):
        _, s = step_dense(s, Y, X, COVS, "reml")
    g = jax.grad(loglik_dense)(s, Y, X, COVS, "reml")
    assert np.max(np.abs(np.asarray(g) * np.asarray(s))) < 1e-6
    _, s2 = step_dense(s, Y, X, COVS, "reml")
    np.testing.assert_allclose(s2, s, rtol=1e-7)


def test_jit_and_vmap_over_phenotypes():
    ys = np.stack([Y, Y[::-1], 2 * Y])
    f = jax.jit(jax.vmap(loglik_dense, in_axes=(None, 0, None, None, None)), static_argnums=4)
    out = f(jnp.asarray(SIGMA), ys, X, COVS, "reml")
    loop = [float(loglik_dense(SIGMA, yy, X, COVS, "reml")) for yy in ys]
    np.testing.assert_allclose(out, loop, rtol=1e-12)


def test_henderson_matches_dense_likelihood_and_update():
    q1, q2 = 8, 5
    z1 = np.eye(q1)[RNG.integers(0, q1, N)]
    z2 = np.eye(q2)[RNG.integers(0, q2, N)]
    b = RNG.normal(size=(q1, q1))
    g1 = b @ b.T / q1 + np.eye(q1)
    g2 = np.eye(q2)
    r = np.diag(np.linspace(0.5, 2.0, N))
    sigma = jnp.array([0.6, 0.9, 1.4])
    covs = np.stack([z1 @ g1 @ z1.T, z2 @ g2 @ z2.T, r])
    hs = henderson_system(X, Y, [z1, z2], [g1, g2], r)
    ll_h = henderson_loglik(sigma, henderson_solve(sigma, hs), hs)
    ll_d, nxt_d = step_dense(sigma, Y, X, covs, "reml")
    ll_h2, nxt_h = step_henderson(sigma, hs)
    np.testing.assert_allclose(ll_h, ll_d, rtol=1e-12)
    np.testing.assert_allclose(ll_h2, ll_d, rtol=1e-12)
    np.testing.assert_allclose(nxt_h, nxt_d, rtol=1e-10)
