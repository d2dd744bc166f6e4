"""MM iterations with squared extrapolation, as a bounded ``lax.while_loop`` (pure JAX).

The loop reproduces MM4LMM 3.0.3's iteration scheme step for step, so that results
at MM4LMM's default stopping rule agree with its numbers, not only at the optimum:

* two plain MM steps ``x1 = M(x0)``, ``x2 = M(x1)``, then a squared extrapolation
  (SQUAREM, Varadhan & Roland 2008) ``x' = x0 - 2 a r + a^2 v`` with ``r = x1 - x0``,
  ``v = x2 - 2 x1 + x0``, ``a = min(-|r| / |v|, -1)``; a non-positive (or non-finite)
  ``x'`` falls back to ``x2``;
* monotone safeguard: when the log-likelihood at the new point is below the previous
  one, the extrapolated point is discarded for ``x2``;
* stop when ``max |sigma2_new - sigma2_old| <= crit_var`` **and** the log-likelihood
  increase ``<= crit_loglik``, never right after an extrapolation, or after ``max_iter``.

Two variants: :func:`solve_mm` iterates on the variance components themselves;
:func:`solve_profiled` iterates on the ratio ``delta = s1 / s2`` of the two-component
ReML path, where (as in MM4LMM's ``MM_Reml2Mat``) the extrapolation is anchored at
the starting ratio and the stopping rule watches the profiled variance components.

Both are written for one model and batch with :func:`jax.vmap` (a vmapped loop runs
until its slowest lane stops; every lane keeps its own iteration count and status).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class SolverResult(NamedTuple):
    """Outcome of one MM run.

    Fields
    ------
    theta : (K,) final variance components (or (1,) ratio for :func:`solve_profiled`).
    n_iter : int32, iterations done (MM4LMM's ``NbIt``).
    converged : bool, the stopping rule was met (False: ``max_iter`` reached).
    finite : bool, every quantity stayed finite.
    """

    theta: jnp.ndarray
    n_iter: jnp.ndarray
    converged: jnp.ndarray
    finite: jnp.ndarray


def _extrapolate(anchor, old, new):
    """SQUAREM point from ``anchor -> old -> new``; falls back to ``new`` if invalid."""
    r = old - anchor
    v = new - old - r
    alpha = -jnp.sqrt(jnp.sum(r**2) / jnp.sum(v**2))
    alpha = jnp.minimum(alpha, -1.0)
    cand = anchor - 2.0 * alpha * r + alpha**2 * v
    ok = jnp.all(cand > 0) & jnp.all(jnp.isfinite(cand))
    return jnp.where(ok, cand, new)


def _restep_if(worse, restep: Callable, outputs):
    """``restep()`` where ``worse``, else ``outputs``.

    Written as a loop of at most one pass rather than ``lax.cond``: under ``vmap`` a
    ``cond`` with a per-lane predicate evaluates both branches for every lane (a second,
    wasted MM step per iteration), while the loop runs only when some lane needs it.
    """

    def body(carry):
        return jnp.bool_(True), restep()

    return jax.lax.while_loop(lambda c: ~c[0], body, (~worse, outputs))[1]


class _State(NamedTuple):
    new: jnp.ndarray
    anc: jnp.ndarray
    bis: jnp.ndarray
    sig: jnp.ndarray  # variance components watched by the stopping rule
    ll_prev: jnp.ndarray
    it: jnp.ndarray
    iteration: jnp.ndarray
    crit: jnp.ndarray
    crit_ll: jnp.ndarray
    finite: jnp.ndarray


def _init_state(theta0, sig0) -> _State:
    dt = theta0.dtype
    inf = jnp.asarray(jnp.inf, dt)
    return _State(theta0, theta0, theta0, sig0, -inf, jnp.int32(0), jnp.int32(0), inf, inf, jnp.bool_(True))


def _cond(crit_var, crit_loglik, max_iter):
    def cond(s: _State):
        going = ((s.crit > crit_var) | (s.crit_ll > crit_loglik)) & (s.iteration < max_iter)
        return (going | (s.it == 0)) & s.finite & (s.iteration < max_iter + 2)

    return cond


def solve_mm(
    step: Callable,
    theta0: jnp.ndarray,
    crit_var: float,
    crit_loglik: float,
    max_iter: int,
) -> SolverResult:
    """Iterate ``step(theta) -> (loglik, M(theta))`` from ``theta0`` (K,)."""
    theta0 = jnp.asarray(theta0)

    def body(s: _State) -> _State:
        ll, nxt = step(s.new)
        worse = (s.iteration > 0) & (ll < s.ll_prev)
        cur = jnp.where(worse, s.bis, s.new)
        ll, nxt = _restep_if(worse, lambda: step(cur), (ll, nxt))
        it = s.it + 1
        extra = it == 2
        nxt2 = jnp.where(extra, _extrapolate(s.anc, cur, nxt), nxt)
        bis = jnp.where(extra, nxt, s.bis)
        finite = jnp.isfinite(ll) & jnp.all(jnp.isfinite(nxt2))
        return _State(
            new=nxt2,
            anc=cur,
            bis=bis,
            sig=nxt2,
            ll_prev=ll,
            it=jnp.where(extra, 0, it),
            iteration=s.iteration + 1,
            crit=jnp.max(jnp.abs(nxt2 - cur)),
            crit_ll=ll - s.ll_prev,
            finite=finite,
        )

    s = jax.lax.while_loop(_cond(crit_var, crit_loglik, max_iter), body, _init_state(theta0, theta0))
    converged = (s.crit <= crit_var) & (s.crit_ll <= crit_loglik) & s.finite
    return SolverResult(s.new, s.iteration, converged, s.finite)


def solve_profiled(
    step: Callable,
    sigma0: jnp.ndarray,
    crit_var: float,
    crit_loglik: float,
    max_iter: int,
) -> SolverResult:
    """Iterate ``step(delta) -> (loglik, sigma2_at_delta, M(delta))`` from ``sigma0`` (2,).

    Starts at ``delta0 = sigma0[0] / sigma0[1]``; returns the final ratio as ``theta`` (1,).
    """
    sigma0 = jnp.asarray(sigma0)
    delta0 = jnp.atleast_1d(sigma0[0] / sigma0[1])

    def body(s: _State) -> _State:
        ll, sig, nxt = step(s.new[0])
        worse = (s.iteration > 0) & (ll < s.ll_prev)
        cur = jnp.where(worse, s.bis, s.new)
        sig_old = jnp.where(worse, sig, s.sig)
        ll, sig, nxt = _restep_if(worse, lambda: step(cur[0]), (ll, sig, nxt))
        nxt = jnp.atleast_1d(nxt)
        it = s.it + 1
        extra = it == 2
        # MM4LMM anchors the ratio's extrapolation at the starting ratio (s.anc never moves).
        nxt2 = jnp.where(extra, _extrapolate(s.anc, cur, nxt), nxt)
        bis = jnp.where(extra, nxt, s.bis)
        finite = jnp.isfinite(ll) & jnp.all(jnp.isfinite(nxt2)) & jnp.all(jnp.isfinite(sig))
        return _State(
            new=nxt2,
            anc=s.anc,
            bis=bis,
            sig=sig,
            ll_prev=ll,
            it=jnp.where(extra, 0, it),
            iteration=s.iteration + 1,
            crit=jnp.max(jnp.abs(sig - sig_old)),
            crit_ll=ll - s.ll_prev,
            finite=finite,
        )

    s = jax.lax.while_loop(_cond(crit_var, crit_loglik, max_iter), body, _init_state(delta0, sigma0))
    converged = (s.crit <= crit_var) & (s.crit_ll <= crit_loglik) & s.finite
    return SolverResult(s.new, s.iteration, converged, s.finite)
