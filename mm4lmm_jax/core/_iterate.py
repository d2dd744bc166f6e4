"""One iteration protocol for every solver of the package (pure JAX).

A solver is an object with three pure methods (the shape of optimistix's ``_iterate.py``):

* ``init(x0) -> state``: the state before the first step;
* ``step(state, n) -> state``: one iteration (``n`` the number of steps already taken);
* ``terminate(state, n) -> bool``: stop now;
* ``finish(state, n) -> (value, status)``: the solution and its :class:`Status`.

:func:`iterate` runs them in one bounded ``lax.while_loop`` and returns a
:class:`Solution` ``(value, status, n_steps)``.  Solvers are written for one model and batch
with :func:`jax.vmap` (a vmapped loop runs until its slowest lane stops; every lane keeps its
own count and status).  Stopping options are one frozen, hashable :class:`Stopping`, passed
to jitted functions as a static argument.

Solvers here: :class:`Squarem` (MM iterations with squared extrapolation, MM4LMM's scheme,
anchored or not) and :class:`DampedNewton` (projected Newton ascent with step halving).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Status(enum.IntEnum):
    """Outcome of one fit; one enumeration for ``mmest``, the ``K >= 3`` scans and the GWAS
    ``status`` column (the codes are stored in checkpoints: append, never renumber)."""

    OK = 0
    ALL_MISSING = 1
    MONOMORPHIC = 2
    COLLINEAR = 3
    MAX_STEPS = 4
    NONFINITE = 5

    @property
    def label(self) -> str:
        """The words written in result tables (GWAS ``status`` column)."""
        return _LABELS[self]


_LABELS = {
    Status.OK: "ok",
    Status.ALL_MISSING: "all missing",
    Status.MONOMORPHIC: "monomorphic",
    Status.COLLINEAR: "collinear with covariates",
    Status.MAX_STEPS: "not converged",
    Status.NONFINITE: "non-finite",
}


@dataclass(frozen=True)
class Stopping:
    """MM4LMM's stopping rule (a static, hashable argument of compiled fits).

    ``crit_var``: largest change of a variance component; ``crit_loglik``: increase of the
    log-likelihood; both must hold.  ``max_iter``: iterations at most.
    """

    crit_var: float = 1e-3
    crit_loglik: float = 1e-3
    max_iter: int = 100

    def __post_init__(self):
        if not (self.crit_var > 0 and self.crit_loglik > 0):
            raise ValueError(f"crit_var and crit_loglik must be > 0, got {self.crit_var}, {self.crit_loglik}")
        if int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        object.__setattr__(self, "crit_var", float(self.crit_var))
        object.__setattr__(self, "crit_loglik", float(self.crit_loglik))
        object.__setattr__(self, "max_iter", int(self.max_iter))


class Solution(NamedTuple):
    """``value`` the solver's answer; ``status`` int32 :class:`Status` code; ``n_steps`` int32."""

    value: Any
    status: jnp.ndarray
    n_steps: jnp.ndarray


def status_of(ok, finite) -> jnp.ndarray:
    """:class:`Status` code from a converged flag and a finiteness flag (traceable)."""
    return jnp.where(finite, jnp.where(ok, Status.OK, Status.MAX_STEPS), Status.NONFINITE).astype(jnp.int32)


def iterate(solver, x0) -> Solution:
    """Run ``solver`` from ``x0`` to termination (one bounded ``while_loop``)."""

    def cond(carry):
        state, n = carry
        return ~solver.terminate(state, n)

    def body(carry):
        state, n = carry
        return solver.step(state, n), n + 1

    state, n = jax.lax.while_loop(cond, body, (solver.init(x0), jnp.int32(0)))
    value, status = solver.finish(state, n)
    return Solution(value, status, n)


# ------------------------------------------------------------------------------ SQUAREM


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


class SquaremState(NamedTuple):
    """``point`` the next point to evaluate; ``anchor`` the extrapolation's start;
    ``fallback`` the plain MM point kept when an extrapolation lowers the likelihood;
    ``watched`` the variance components the stopping rule compares; ``loglik`` at the
    last evaluated point; ``phase`` 0, 1 (plain MM steps) before an extrapolation;
    ``change``, ``gain`` the last changes; ``finite``."""

    point: jnp.ndarray
    anchor: jnp.ndarray
    fallback: jnp.ndarray
    watched: jnp.ndarray
    loglik: jnp.ndarray
    phase: jnp.ndarray
    change: jnp.ndarray
    gain: jnp.ndarray
    finite: jnp.ndarray


@dataclass(frozen=True)
class Squarem:
    """MM iterations with squared extrapolation, step for step as MM4LMM 3.0.3.

    * two plain MM steps ``x1 = M(x0)``, ``x2 = M(x1)``, then the SQUAREM point
      (Varadhan & Roland 2008) ``x' = x0 - 2 a r + a^2 v``, ``r = x1 - x0``,
      ``v = x2 - 2 x1 + x0``, ``a = min(-|r| / |v|, -1)``; a non-positive or non-finite ``x'``
      falls back to ``x2``;
    * monotone safeguard: a point whose log-likelihood is below the previous one is replaced
      by the plain MM point;
    * stop when the variance components change by ``<= crit_var`` **and** the log-likelihood
      by ``<= crit_loglik``, never right after an extrapolation, or after ``max_iter``.

    ``update(x) -> (loglik, watched, next)``: the log-likelihood at ``x``, the variance
    components the stopping rule watches at ``x``, and the MM update.  ``anchored``:
    extrapolate from the starting point every time (MM4LMM's ``MM_Reml2Mat`` on the
    ratio) instead of from the previous point; the rule then compares ``watched`` at
    successive evaluations rather than the iterates themselves.
    """

    update: Callable
    stopping: Stopping
    anchored: bool = False
    watched0: Any = None

    def init(self, x0) -> SquaremState:
        x0 = jnp.asarray(x0)
        inf = jnp.asarray(jnp.inf, x0.dtype)
        watched0 = self.watched0 if self.anchored else x0
        return SquaremState(x0, x0, x0, watched0, -inf, jnp.int32(0), inf, inf, jnp.bool_(True))

    def step(self, s: SquaremState, n) -> SquaremState:
        ll, watched, nxt = self.update(s.point)
        worse = (n > 0) & (ll < s.loglik)
        cur = jnp.where(worse, s.fallback, s.point)
        before = jnp.where(worse, watched, s.watched) if self.anchored else None
        ll, watched, nxt = _restep_if(worse, lambda: self.update(cur), (ll, watched, nxt))
        nxt = jnp.atleast_1d(nxt)
        phase = s.phase + 1
        extra = phase == 2
        nxt2 = jnp.where(extra, _extrapolate(s.anchor, cur, nxt), nxt)
        finite = jnp.isfinite(ll) & jnp.all(jnp.isfinite(nxt2))
        if self.anchored:
            finite = finite & jnp.all(jnp.isfinite(watched))
            change = jnp.max(jnp.abs(watched - before))
        else:
            watched = nxt2
            change = jnp.max(jnp.abs(nxt2 - cur))
        return SquaremState(
            point=nxt2,
            anchor=s.anchor if self.anchored else cur,
            fallback=jnp.where(extra, nxt, s.fallback),
            watched=watched,
            loglik=ll,
            phase=jnp.where(extra, 0, phase),
            change=change,
            gain=ll - s.loglik,
            finite=finite,
        )

    def _met(self, s: SquaremState):
        return (s.change <= self.stopping.crit_var) & (s.gain <= self.stopping.crit_loglik)

    def terminate(self, s: SquaremState, n):
        max_iter = self.stopping.max_iter
        going = ((s.change > self.stopping.crit_var) | (s.gain > self.stopping.crit_loglik)) & (n < max_iter)
        return ~((going | (s.phase == 0)) & s.finite & (n < max_iter + 2))

    def finish(self, s: SquaremState, n):
        return s.point, status_of(self._met(s) & s.finite, s.finite)


def squarem(update: Callable, x0, stopping: Stopping) -> Solution:
    """MM iterations of ``update(x) -> (loglik, next)`` from ``x0`` (K,) (see :class:`Squarem`)."""

    def full(x):
        ll, nxt = update(x)
        return ll, x, nxt

    return iterate(Squarem(full, stopping), x0)


def squarem_anchored(update: Callable, x0, watched0, stopping: Stopping) -> Solution:
    """Anchored MM iterations of ``update(x) -> (loglik, watched, next)`` (MM4LMM's ratio
    iterations); ``watched0`` the watched components at ``x0``."""
    return iterate(Squarem(update, stopping, anchored=True, watched0=watched0), x0)


# --------------------------------------------------------------------------- Newton


class NewtonState(NamedTuple):
    """``x`` the point, ``value`` the function there, ``done``, ``ok`` (converged)."""

    x: jnp.ndarray
    value: jnp.ndarray
    done: jnp.ndarray
    ok: jnp.ndarray


@dataclass(frozen=True)
class DampedNewton:
    """Damped, projected Newton ascent of ``f`` within ``[lower, upper]``.

    Coordinates at a bound whose gradient points outwards are held; a step that lowers
    ``f`` is halved (``max_halvings`` at most).  Where the Hessian is not negative definite
    the step is the gradient, scaled to length 1.  Converged when an accepted step is below
    ``tol`` in every coordinate and the Hessian on the free coordinates is negative definite.
    ``derivatives(x) -> (value, gradient, Hessian)``; ``skip`` (traced bool): return ``x0``
    untouched (padding in batched calls).
    """

    f: Callable
    derivatives: Callable
    lower: jnp.ndarray
    upper: jnp.ndarray
    tol: float
    max_iter: int
    max_halvings: int
    skip: Any = False

    def init(self, x0) -> NewtonState:
        val0 = self.f(x0)
        return NewtonState(x0, val0, ~jnp.isfinite(val0) | self.skip, jnp.zeros((), bool))

    def _direction(self, x):
        lo, hi = self.lower, self.upper
        val, g, h = self.derivatives(x)
        held = ((x <= lo) & (g < 0)) | ((x >= hi) & (g > 0))
        g = jnp.where(held, 0.0, g)
        h = jnp.where(held[:, None] | held[None, :], 0.0, h) - jnp.diag(jnp.where(held, 1.0, 0.0))
        evals = jnp.linalg.eigvalsh(0.5 * (h + h.T))
        concave = evals[-1] < 0
        newton = -jnp.linalg.solve(h, g)
        grad_step = g / jnp.maximum(jnp.linalg.norm(g), 1e-300)
        return val, jnp.where(concave, newton, grad_step), concave

    def step(self, s: NewtonState, n) -> NewtonState:
        lo, hi, x = self.lower, self.upper, s.x
        val, step, concave = self._direction(x)

        def try_cond(c):
            scale, new_val, j = c
            return (~(new_val >= val - 1e-12 * jnp.abs(val))) & (j < self.max_halvings)

        def try_body(c):
            scale, _, j = c
            scale = 0.5 * scale
            return scale, self.f(jnp.clip(x + scale * step, lo, hi)), j + 1

        first = self.f(jnp.clip(x + step, lo, hi))
        scale, new_val, _ = jax.lax.while_loop(try_cond, try_body, (jnp.ones(()), first, 0))
        x_new = jnp.clip(x + scale * step, lo, hi)
        ok = jnp.isfinite(new_val) & (new_val >= val - 1e-12 * jnp.abs(val))
        x_new = jnp.where(ok, x_new, x)
        small = jnp.max(jnp.abs(x_new - x)) < self.tol
        return NewtonState(x_new, jnp.where(ok, new_val, val), small | ~ok, small & concave)

    def terminate(self, s: NewtonState, n):
        return s.done | (n >= self.max_iter)

    def finish(self, s: NewtonState, n):
        return s.x, status_of(s.ok, jnp.isfinite(s.value))


__all__ = [
    "DampedNewton",
    "Solution",
    "Squarem",
    "Status",
    "Stopping",
    "iterate",
    "squarem",
    "squarem_anchored",
    "status_of",
]
