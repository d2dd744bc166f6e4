"""The ``(X'V^-1X, log|V|)`` structures agree with each other and with dense algebra, and
the Kenward-Roger derivatives by autodiff equal their closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mm4lmm_jax.core._kenward_roger import kr_ingredients
from mm4lmm_jax.core._quad import dense_quad, henderson_quad, rotated_quad
from mm4lmm_jax.core._transforms import henderson_system, joint_diagonalise


def _problem(seed=0, n=60, q=(7, 5), p=3):
    rng = np.random.default_rng(seed)
    zs = [np.eye(qk)[rng.integers(0, qk, n)] for qk in q]
    gs = []
    for qk in q:
        a = rng.normal(size=(qk, qk + 3))
        gs.append(a @ a.T / (qk + 3) + 0.1 * np.eye(qk))
    x = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    y = rng.normal(size=n)
    return zs, gs, x, y


def test_henderson_quad_equals_dense():
    zs, gs, x, y = _problem()
    n = y.size
    covs = jnp.stack([z @ g @ z.T for z, g in zip(zs, gs)] + [np.eye(n)])
    a = jnp.asarray(np.column_stack([x, y]))
    sh = henderson_system(a, jnp.asarray(y), [jnp.asarray(z) for z in zs], [jnp.asarray(g) for g in gs], jnp.eye(n))
    sigma2 = jnp.array([0.7, 1.3, 0.9])
    m_d, ld_d = dense_quad(sigma2, a, covs)
    m_h, ld_h = henderson_quad(
        sigma2, sh.xrx, sh.xrz, sh.zrz, sh.g_inv, sh.block, sh.logdet_g, sh.q_k, sh.logdet_r, sh.n_obs
    )
    np.testing.assert_allclose(m_h, m_d, rtol=1e-10)
    np.testing.assert_allclose(ld_h, ld_d, rtol=1e-12)


def test_rotated_quad_equals_dense_with_general_second_matrix():
    rng = np.random.default_rng(1)
    n = 40
    a1 = rng.normal(size=(n, n))
    k1 = a1 @ a1.T / n
    a2 = rng.normal(size=(n, n))
    k2 = a2 @ a2.T / n + np.eye(n)
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n)
    rot = joint_diagonalise(jnp.asarray(k1), jnp.asarray(k2))
    a = np.column_stack([x, y])
    sigma2 = jnp.array([0.4, 1.7])
    m_r, ld_r = rotated_quad(sigma2, rot.t @ a, rot.d, rot.logdet_k2)
    m_d, ld_d = dense_quad(sigma2, jnp.asarray(a), jnp.stack([k1, k2]))
    np.testing.assert_allclose(m_r, m_d, rtol=1e-9)
    np.testing.assert_allclose(ld_r, ld_d, rtol=1e-10)


def test_kr_derivatives_equal_closed_forms():
    """``P_i = -X'V^-1 V_i V^-1 X`` and ``W`` = inverse of ``1/2 tr(P V_i P V_j)``."""
    zs, gs, x, y = _problem(seed=2)
    n = y.size
    covs = np.stack([z @ g @ z.T for z, g in zip(zs, gs)] + [np.eye(n)])
    sigma2 = np.array([0.5, 1.1, 0.8])
    a = jnp.asarray(np.column_stack([x, y]))
    p = x.shape[1]
    ing = jax.jit(lambda s, c: kr_ingredients(lambda t: dense_quad(t, a, c), s, p))(jnp.asarray(sigma2), covs)
    v_inv = np.linalg.inv(np.tensordot(sigma2, covs, axes=1))
    vx = v_inv @ x
    p_ref = np.stack([-vx.T @ c @ vx for c in covs])
    np.testing.assert_allclose(ing.p_mats, p_ref, rtol=1e-9)
    phi = np.linalg.inv(x.T @ vx)
    np.testing.assert_allclose(ing.phi, phi, rtol=1e-10)
    p_mat = v_inv - vx @ phi @ vx.T
    info = np.array([[0.5 * np.trace(p_mat @ ci @ p_mat @ cj) for cj in covs] for ci in covs])
    np.testing.assert_allclose(ing.w, np.linalg.inv(info), rtol=1e-8)
    # Phi_A = Phi + 2 Phi U Phi with U = sum W_ij (Q_ij - P_i Phi P_j), Q_ij = X'V^-1 V_i V^-1 V_j V^-1 X
    k = len(covs)
    u = sum(
        ing.w[i, j] * (vx.T @ covs[i] @ v_inv @ covs[j] @ vx - p_ref[i] @ phi @ p_ref[j])
        for i in range(k)
        for j in range(k)
    )
    np.testing.assert_allclose(ing.phi_adj, phi + 2 * phi @ u @ phi, rtol=1e-8)


def test_kr_ingredients_vmap_over_models():
    zs, gs, x, y = _problem(seed=3)
    n = y.size
    covs = jnp.asarray(np.stack([z @ g @ z.T for z, g in zip(zs, gs)] + [np.eye(n)]))
    rng = np.random.default_rng(4)
    xs = jnp.asarray(np.stack([np.column_stack([x, rng.normal(size=n)]) for _ in range(5)]))
    s = jnp.array([0.5, 1.1, 0.8])

    def one(xi):
        a = jnp.concatenate([xi, jnp.asarray(y)[:, None]], axis=1)
        return kr_ingredients(lambda t: dense_quad(t, a, covs), s, xi.shape[1])

    batched = jax.jit(jax.vmap(one))(xs)
    single = jax.jit(one)(xs[3])
    np.testing.assert_allclose(batched.phi_adj[3], single.phi_adj, rtol=1e-12)


def test_reduced_henderson_step_equals_plain_henderson():
    """The reduced MME (first block eliminated, blocks whitened and rotated) gives the same
    MM step, log-likelihood, beta and var_beta as the plain Henderson system: three random
    blocks and a non-identity residual covariance (whitened first)."""
    from mm4lmm_jax.core._mm import henderson_solve, step_henderson
    from mm4lmm_jax.core._reduced import reduced_shared, reduced_solve, reduced_system, step_reduced

    zs, gs, x, y = _problem(seed=5, n=80, q=(9, 6, 4))
    n = y.size
    rng = np.random.default_rng(6)
    a = rng.normal(size=(n, n))
    r = a @ a.T / n + np.eye(n)
    hs = henderson_system(
        jnp.asarray(x), jnp.asarray(y), [jnp.asarray(z) for z in zs], [jnp.asarray(g) for g in gs], jnp.asarray(r)
    )
    chol = np.linalg.cholesky(r)
    l_inv = np.linalg.inv(chol)
    red = reduced_shared(
        jnp.asarray(l_inv @ y),
        [jnp.asarray(l_inv @ z) for z in zs],
        [jnp.asarray(g) for g in gs],
        2 * np.sum(np.log(np.diag(chol))),
    )
    rs = reduced_system(jnp.asarray(l_inv @ x), jnp.asarray(l_inv @ y), red)
    sigma2 = jnp.array([0.6, 1.4, 0.3, 0.9])
    ll_h, next_h = step_henderson(sigma2, hs)
    ll_r, next_r = step_reduced(sigma2, rs)
    np.testing.assert_allclose(ll_r, ll_h, rtol=1e-10)
    np.testing.assert_allclose(next_r, next_h, rtol=1e-9)
    sol_h, sol_r = henderson_solve(sigma2, hs), reduced_solve(sigma2, rs)
    np.testing.assert_allclose(sol_r.beta, sol_h.beta, rtol=1e-9)
    np.testing.assert_allclose(sol_r.t_inv_xx, sol_h.c_inv[: x.shape[1], : x.shape[1]], rtol=1e-9)
