"""The exact ``K >= 3`` marker scan: Newton's method on an expansion shared by every model.

Set-up once per data set (:class:`NewtonScan`): the family ``A(psi)`` of
:mod:`mm4lmm_jax.core._newton_scan` in Henderson form (``sum q_k < n``) or dense form, the
null model's exact optimum ``psi0`` (Newton, from MM's fit only where a plain start
fails), then at ``psi0`` one
factorisation, the log-determinant series and the words of the shared columns
``[cofactors, y]``.  Per chunk of markers (one compiled program, padded): the words of the
marker columns (GEMMs with ``A0^-1``), the polynomial coefficients of their forms, and a
vmapped Newton ascent of each model's surrogate log-likelihood from ``psi0``.  A model whose
optimum lies further than ``r_max`` from ``psi0`` (where the series' error could exceed
1e-10 relative) is refitted exactly (one Cholesky per Newton step), gathered in small
padded batches.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._expansion import (
    WordSet,
    form_coefficients,
    logdet_series,
    monomial_exponents,
    spectral_scales,
    word_set,
)
from ._fit import FitOutput
from ._iterate import Solution, Status, status_of
from ._newton_scan import (
    PSI_BOUNDS,
    Estimates,
    Expansion,
    Family,
    exact_loglik,
    family_matrix,
    newton_exact,
    newton_surrogate,
    surrogate_loglik,
)
from ._structures import Structure

ORDER = 4  # words up to length 4: forms exact to degree 9 in the offsets
LOGDET_ORDER = 10
R_MAX = 0.05  # r^(2 ORDER + 2) <= 1e-13: series error far below the optimum's sharpness
FALLBACK_BATCH = 8


class NewtonScan:
    """Shared set-up of an exact ``K >= 3`` scan (see the module docstring).

    Parameters
    ----------
    y : (n,) response.  structure : a prepared :class:`~.structures.Henderson` or
    :class:`~.structures.Dense` (the family ``A(psi)`` of the last component's ratios).
    method : ``"reml"`` or ``"ml"``.
    """

    def __init__(self, y: np.ndarray, structure: Structure, method: str):
        self.method = method
        self.structure = structure
        self.inverse_ratio = type(structure).newton_inverse_ratio
        self.n = y.shape[0]
        self.fam = structure.family()
        self.k = self.fam.q.shape[0]
        self.y = np.asarray(y, float)

    # -------------------------------------------------------------- columns
    def columns(self, a: np.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``h`` (d, c) and the columns in the family's coordinates (n, c)."""
        return self.structure.newton_columns(a)

    def s_matrix(self, a_w, b_w):
        """The part of ``[X|y]' V^-1 [X|y]`` outside the family (zeros in dense form)."""
        return self.structure.newton_cross(a_w, b_w)

    # -------------------------------------------------------------- psi <-> sigma2
    def psi_from_sigma2(self, sigma2: np.ndarray) -> np.ndarray:
        sigma2 = np.maximum(np.asarray(sigma2, float), 1e-300)
        ratio = sigma2[:-1] / sigma2[-1]
        psi = 1.0 / ratio if self.inverse_ratio else ratio
        return np.clip(psi, np.exp(PSI_BOUNDS[0]), np.exp(PSI_BOUNDS[1]))

    # -------------------------------------------------------------- exact fits
    def fit_exact(self, design: np.ndarray, sigma_start: np.ndarray) -> tuple[FitOutput, np.ndarray]:
        """Exact optimum of one model with design (n, p); returns the fit and ``log psi``."""
        f = np.column_stack([design, self.y])
        h, a_w = self.columns(f)
        s = self.s_matrix(a_w, a_w)
        t0 = jnp.log(jnp.asarray(self.psi_from_sigma2(sigma_start)))
        out, t = self._exact([t0], [h], [s])
        return FitOutput(*(np.asarray(a)[0] for a in out)), np.asarray(t)[0]

    def _exact(self, t0s, hs, ss):
        """Exact Newton fits of up to ``FALLBACK_BATCH`` models (one compiled shape)."""
        pad = FALLBACK_BATCH - len(hs)
        skip = jnp.asarray(np.arange(FALLBACK_BATCH) >= len(hs))
        stack = [jnp.stack([*a, *[a[-1]] * pad]) for a in (t0s, hs, ss)]
        out, t = _exact_batch(
            *stack[:1], self.fam, *stack[1:], skip, n=self.n, method=self.method, inverse_ratio=self.inverse_ratio
        )
        return jax.device_get(out), jax.device_get(t)

    # -------------------------------------------------------------- the scan
    def prepare(self, base: np.ndarray, log_psi0: np.ndarray) -> None:
        """Centre the expansion at ``psi0`` with the shared columns ``[base, y]``."""
        shared = np.column_stack([base, self.y])
        h, a_w = self.columns(shared)
        self.log_psi0 = jnp.asarray(log_psi0)
        self.expansion, self.a0_inv, self.e_scaled, self.shared_words, self.shared_coef = _centre(
            self.fam, self.log_psi0, h, k=self.k
        )
        self.shared_w = a_w
        self.shared_s = self.s_matrix(a_w, a_w)
        self.p0 = base.shape[1]

    def fit(self, extra: np.ndarray, chunk: int, progress: Callable | None = None) -> FitOutput:
        """Models ``[base | extra[i]]`` for ``extra`` (m, n, p1), in padded chunks."""
        m = extra.shape[0]
        chunk = max(1, min(chunk, 1 << max(m - 1, 0).bit_length()))  # few distinct compiled shapes
        outs, valid = [], []
        args = (
            self.structure, self.fam, self.expansion, self.a0_inv, self.e_scaled, self.shared_words,
            self.shared_coef, self.shared_s, self.shared_w, jnp.asarray(R_MAX),
        )  # fmt: skip
        static = dict(n=self.n, method=self.method, p0=self.p0)
        for start in range(0, m, chunk):
            block = extra[start : start + chunk]
            if block.shape[0] < chunk:
                block = np.concatenate([block, np.repeat(block[-1:], chunk - block.shape[0], axis=0)], axis=0)
            out, ok = _surrogate_chunk(jnp.asarray(block, float), *args, **static)
            outs.append(out)
            valid.append(ok)
            if progress is not None:
                progress(min(chunk, m - start))
        host, ok = jax.device_get((outs, valid))
        fits = [np.concatenate(parts, axis=0)[:m] for parts in zip(*host)]
        ok = np.concatenate(ok)[:m]
        redo = np.flatnonzero(~ok)
        self.n_fallback = int(redo.size)
        if redo.size:
            self._refit_exact(extra, redo, fits)
        return FitOutput(*fits)

    def _refit_exact(self, extra: np.ndarray, idx: np.ndarray, fits: list[np.ndarray]) -> None:
        """Models outside the expansion's radius: exact Newton, in padded batches."""
        base = np.asarray(self.shared_w)  # whitened [base, y]
        for start in range(0, idx.size, FALLBACK_BATCH):
            sel = idx[start : start + FALLBACK_BATCH]
            hs, ss = [], []
            for i in sel:
                _, g_w = self.columns(extra[i])
                f_w = jnp.asarray(np.column_stack([base[:, : self.p0], np.asarray(g_w), base[:, self.p0 :]]))
                hs.append(self.structure.newton_h(f_w))
                ss.append(self.s_matrix(f_w, f_w))
            out, _ = self._exact([self.log_psi0] * sel.size, hs, ss)
            for field, values in zip(fits, out):
                field[sel] = np.asarray(values)[: sel.size]


DEFAULT_CHUNK = 128


class NewtonFitPath:
    """:class:`NewtonScan` behind the interface of the MM paths (``fit(base, extra, sigma0,
    ...)``), for :func:`mmest`'s ``algorithm="newton"``.

    Every model is fitted to its exact optimum (Newton steps below 1e-10 in ``log psi``), so
    ``crit_var``, ``crit_loglik`` and ``max_iter`` (MM4LMM's stopping rule) do not apply;
    ``n_iter`` counts Newton iterations.
    """

    name = "Newton on the expansion around the null optimum"

    def __init__(self, y: np.ndarray, structure: Structure, method: str):
        self.scan = NewtonScan(y, structure, method)
        self._centre: tuple | None = None
        self._optima: dict[bytes, np.ndarray] = {}  # design bytes -> log psi of its exact optimum

    def fit_null(self, design: np.ndarray, sigma_start: np.ndarray) -> FitOutput:
        """Exact fit of one model, stacked over a model axis of length 1."""
        out, log_psi = self.scan.fit_exact(design, sigma_start)
        if bool(out.converged):
            self._optima[np.asarray(design, float).tobytes()] = log_psi
        return FitOutput(*(np.asarray(a)[None] for a in out))

    def fit(
        self,
        base: np.ndarray,
        extra: np.ndarray,
        sigma0: np.ndarray,
        *,
        chunk_size: int | None = None,
        progress: Callable | None = None,
    ) -> FitOutput:
        """Models ``[base | extra[i]]`` (extra (m, n, p1)), centred at the optimum of the
        model ``base`` (or at ``sigma0`` when ``base`` has no column)."""
        base = np.asarray(base, float)
        log_psi0 = np.log(self.scan.psi_from_sigma2(sigma0))
        if base.shape[1]:
            if base.tobytes() not in self._optima:
                self.fit_null(base, sigma0)
            log_psi0 = self._optima.get(base.tobytes(), log_psi0)
        key = (base.tobytes(), log_psi0.tobytes())
        if self._centre != key:
            self.scan.prepare(base, log_psi0)
            self._centre = key
        return self.scan.fit(np.asarray(extra, float), chunk_size or DEFAULT_CHUNK, progress)


def _estimates_to_fit(est: Estimates, sigma2, sol: Solution) -> FitOutput:
    var_beta = est.s2 * est.cov_unscaled
    finite = (
        jnp.all(jnp.isfinite(sigma2))
        & jnp.all(jnp.isfinite(est.beta))
        & jnp.all(jnp.isfinite(var_beta))
        & jnp.isfinite(est.loglik)
    )
    return FitOutput(sigma2, est.beta, var_beta, est.loglik, sol.n_steps, status_of(sol.status == Status.OK, finite))


def _sigma2(psi, s2, inverse_ratio: bool):
    ratio = 1.0 / psi if inverse_ratio else psi
    return jnp.concatenate([ratio * s2, s2[None]])


@partial(jax.jit, static_argnames=("k",))
def _centre(fam: Family, log_psi0, h, *, k: int):
    """At ``psi0``: ``A0^-1``, the spectral scales, the log-determinant series and the words
    and form coefficients of the shared columns ``h``."""
    psi0 = jnp.exp(log_psi0)
    a0 = family_matrix(fam, psi0)
    chol = jnp.linalg.cholesky(a0)
    a0_inv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(a0.shape[0], dtype=a0.dtype))
    a0_inv = 0.5 * (a0_inv + a0_inv.T)
    lam = jnp.maximum(spectral_scales(a0_inv, fam.e), 1e-300)
    e_scaled = fam.e / (lam[:, None] if fam.e.ndim == 2 else lam[:, None, None])
    ld = logdet_series(a0_inv, e_scaled, LOGDET_ORDER)
    expansion = Expansion(psi0, lam, 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))), ld)
    words = word_set(a0_inv, e_scaled, h, ORDER)
    return expansion, a0_inv, e_scaled, words, form_coefficients(words, words, k, ORDER)


@partial(jax.jit, static_argnames=("n", "method", "inverse_ratio"))
def _exact_batch(t0, fam: Family, h, s, skip, *, n: int, method: str, inverse_ratio: bool):
    """Exact Newton fits of a batch, one model after the other (``lax.map``: XLA's CPU
    runtime has been seen to stall on a vmapped loop of large Cholesky factorisations);
    models flagged in ``skip`` (padding) cost nothing."""

    def one(args):
        t_start, h_i, s_i, skip_i = args
        res = newton_exact(t_start, fam, h_i, s_i, n, method, skip=skip_i)
        est = exact_loglik(res.value, fam, h_i, s_i, n, method)
        return _estimates_to_fit(est, _sigma2(jnp.exp(res.value), est.s2, inverse_ratio), res), res.value

    return jax.lax.map(one, (t0, h, s, skip))


@partial(jax.jit, static_argnames=("n", "method", "p0"))
def _surrogate_chunk(
    extra, structure: Structure, fam: Family, exp_: Expansion, a0_inv, e_scaled, shared: WordSet, shared_coef,
    shared_s, shared_w, r_max, *, n: int, method: str, p0: int,
):  # fmt: skip
    c, _, p1 = extra.shape
    k = exp_.psi0.shape[0]
    inverse_ratio = type(structure).newton_inverse_ratio
    g_w = structure.transform(extra)
    flat = jnp.transpose(g_w, (1, 0, 2)).reshape(n, c * p1)
    h = structure.newton_h(flat)
    words_all = word_set(a0_inv, e_scaled, h, ORDER)

    def per_model(x):  # (..., c * p1) -> (c, ..., p1)
        return jnp.moveaxis(x.reshape(*x.shape[:-1], c, p1), -2, 0)

    mine = WordSet(per_model(words_all.h), per_model(words_all.u), per_model(words_all.eu))
    coef_gs = jax.vmap(lambda w: form_coefficients(w, shared, k, ORDER))(mine)  # (c, n_mono, p1, p0 + 1)
    coef_gg = jax.vmap(lambda w: form_coefficients(w, w, k, ORDER))(mine)  # (c, n_mono, p1, p1)
    if inverse_ratio:
        s_gs = jnp.einsum("cip,iq->cpq", g_w, shared_w)
        s_gg = jnp.einsum("cip,ciq->cpq", g_w, g_w)
    else:
        s_gs = jnp.zeros((c, p1, p0 + 1))
        s_gg = jnp.zeros((c, p1, p1))
    form_exps = monomial_exponents(k, 2 * ORDER + 1)
    ld_exps = monomial_exponents(k, LOGDET_ORDER)

    def assemble(ss, gs, gg):  # blocks -> columns [base, g, y]
        top = jnp.concatenate([ss[..., :p0, :p0], jnp.swapaxes(gs[..., :p0], -1, -2), ss[..., :p0, p0:]], axis=-1)
        mid = jnp.concatenate([gs[..., :p0], gg, gs[..., p0:]], axis=-1)
        bot = jnp.concatenate([ss[..., p0:, :p0], jnp.swapaxes(gs[..., p0:], -1, -2), ss[..., p0:, p0:]], axis=-1)
        return jnp.concatenate([top, mid, bot], axis=-2)

    def one(cgs, cgg, sgs, sgg):
        coef = assemble(shared_coef, cgs, cgg)
        s_mat = assemble(shared_s, sgs, sgg)
        res = newton_surrogate(s_mat, coef, form_exps, exp_, ld_exps, fam, n, method, r_max=r_max, tol=1e-10)
        est = surrogate_loglik(res.value, s_mat, coef, form_exps, exp_, ld_exps, fam, n, method)
        psi = exp_.psi0 + res.value / exp_.lam
        fit = _estimates_to_fit(est, _sigma2(psi, est.s2, inverse_ratio), res)
        # inside the series' radius, and psi inside the ratio bounds of the exact fits (near a
        # zero component the offsets can carry psi below 1e-8, where the series is not the model)
        log_psi = jnp.log(jnp.maximum(psi, 1e-300))
        inside = (jnp.sum(jnp.abs(res.value)) < r_max) & jnp.all(
            (log_psi >= PSI_BOUNDS[0] - 1e-9) & (log_psi <= PSI_BOUNDS[1] + 1e-9)
        )
        return fit, fit.converged & inside

    return jax.vmap(one)(coef_gs, coef_gg, s_gs, s_gg)


__all__ = ["NewtonFitPath", "NewtonScan"]
