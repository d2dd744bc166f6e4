"""Cost of a gradient through ``core.fit`` relative to the fit itself, per structure.

``python bench/grad_fit.py [n] [--repeat=R]`` simulates one data set per structure and times,
warm (compiled once, then the best of R runs):

* the fit: ``core.fit(y, x, covariances)``;
* ``jax.grad`` of ``h2 = s_1 / sum(s)`` with respect to ``y`` (reverse mode: the fit, then one
  adjoint solve of the implicit derivative rule);
* ``jax.grad`` of ``h2`` with respect to the first covariance matrix (every entry).

It prints each time and the ratio gradient / fit (target: at most 3).
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from mm4lmm_jax import core  # noqa: E402


def _data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, 200))
    kin = w @ w.T / 200
    b = rng.normal(size=(n, 100))
    kin2 = b @ b.T / 100
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    q1, q2 = n // 10, n // 20
    z1 = np.zeros((n, q1))
    z1[np.arange(n), rng.integers(0, q1, n)] = 1.0
    z2 = np.zeros((n, q2))
    z2[np.arange(n), rng.integers(0, q2, n)] = 1.0
    u = rng.normal(size=n)
    y = (
        x @ [1.0, 0.5]
        + np.linalg.cholesky(kin + 1e-6 * np.eye(n)) @ u
        + w[:, :50] @ rng.normal(size=50) / 10
        + z1 @ rng.normal(size=q1)
        + z2 @ rng.normal(size=q2) * 0.7
        + rng.normal(size=n)
    )
    eye = np.eye(n)
    return {
        "one component": (y, x, jnp.asarray(eye[None]), None),
        "two components (joint diagonalisation)": (y, x, jnp.asarray(np.stack([kin, eye])), None),
        "three components (dense)": (y, x, jnp.asarray(np.stack([kin, kin2, eye])), None),
        "three components, Z forms (Henderson)": (
            y,
            x,
            [jnp.eye(q1), jnp.eye(q2), None],
            [jnp.asarray(z1), jnp.asarray(z2)],
        ),
    }


def _best(f, repeat: int) -> float:
    jax.block_until_ready(f())  # compile
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        times.append(time.perf_counter() - t0)
    return min(times)


def _h2(s):
    return s[0] / jnp.sum(s)


def _measure(y, x, covs, z, repeat: int) -> dict:
    fit = jax.jit(lambda y, c: core.fit(y, x, c, z=z).sigma2)
    grad_y = jax.jit(jax.grad(lambda y, c: _h2(core.fit(y, x, c, z=z).sigma2)))
    grad_c = jax.jit(jax.grad(lambda y, c: _h2(core.fit(y, x, c, z=z).sigma2), argnums=1))
    return dict(
        fit_s=_best(lambda: fit(y, covs), repeat),
        grad_y_s=_best(lambda: grad_y(y, covs), repeat),
        grad_cov_s=_best(lambda: grad_c(y, covs), repeat),
        status=int(core.fit(y, x, covs, z=z).status),
    )


def main(argv: list[str]) -> list[dict]:
    n = int(next((a for a in argv if not a.startswith("--")), 1000))
    repeat = int(next((a.split("=")[1] for a in argv if a.startswith("--repeat=")), 3))
    rows = []
    print(f"n = {n}, best of {repeat} warm runs; ratio = gradient / fit")
    print(f"{'structure':42s} {'fit':>9s} {'grad y':>9s} {'ratio':>6s} {'grad cov':>9s} {'ratio':>6s}")
    for name, (y, x, covs, z) in _data(n).items():
        row = _measure(jnp.asarray(y), jnp.asarray(x), covs, z, repeat)
        rows.append(dict(structure=name, n=n, **row))
        t_fit, t_y, t_c = row["fit_s"], row["grad_y_s"], row["grad_cov_s"]
        print(f"{name:42s} {t_fit:8.4f}s {t_y:8.4f}s {t_y / t_fit:5.2f}x {t_c:8.4f}s {t_c / t_fit:5.2f}x")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
