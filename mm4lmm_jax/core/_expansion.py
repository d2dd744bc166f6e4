"""Quadratic forms and log-determinant of an affine matrix family, expanded around a centre.

A marker scan with ``K >= 3`` variance components needs, for every marker model and at that
model's own variance parameters, quantities of one symmetric positive-definite family

    ``A(delta) = A0 + sum_k delta_k E_k``        (d, d),  ``E_k`` symmetric PSD,

namely the quadratic forms ``h_a' A^-1 h_b`` of the model's columns and ``log |A|``.  Every
marker model's optimum lies close to the null model's, so one factorisation of ``A0`` (the
null optimum) serves all of them:

* Neumann words: ``U^w = A0^-1 E_w1 A0^-1 E_w2 ... A0^-1 h`` for every word ``w`` over
  ``{0..K'-1}`` of length ``<= order``, computed once per column as GEMMs with ``A0^-1``
  (``sum_i (-A0^-1 Delta)^i A0^-1 h = A^-1 h``).
* The variational estimate ``h_a'U_b + U_a'h_b - U_a' A U_b`` (``U`` the truncated series)
  of ``h_a' A^-1 h_b`` has error ``-e_a' A e_b`` with ``e = O(delta^(order+1))``: it is a
  polynomial of degree ``2 order + 1`` in ``delta``, exact to that order, whose
  coefficients are inner products of the words (:func:`form_coefficients`).
* ``log|A| - log|A0| = sum_j (-1)^(j+1)/j tr((A0^-1 Delta)^j)``: the homogeneous parts are
  fitted from traces of matrix powers along a few fixed directions (:func:`logdet_series`).

Both series converge geometrically with ratio ``rho(A0^-1 Delta) <= sum_k |delta_k| lam_k``,
``lam_k = lambda_max(A0^-1/2 E_k A0^-1/2)``; callers pass ``E_k / lam_k`` so that the
coordinates ``u_k = delta_k lam_k`` have ``r = sum_k |u_k|`` as that bound.

``E`` is given either as ``(K', d)`` (diagonal matrices, e.g. Henderson's block selectors)
or as ``(K', d, d)`` (dense).  Everything here is pure JAX and static in shape.
"""

from __future__ import annotations

import itertools
import math
from functools import cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Words(NamedTuple):
    """Words over ``{0..k-1}`` of length ``<= order``, breadth first (static NumPy).

    ``first[i]`` the first letter (-1 for the empty word), ``parent[i]`` the index of the
    word without its first letter, ``counts[i]`` (k,) how often each letter occurs,
    ``length[i]``.  Level ``l`` lists ``(j,) + w`` for the words ``w`` of level ``l - 1``
    in order, ``j`` fastest.
    """

    first: np.ndarray
    parent: np.ndarray
    counts: np.ndarray
    length: np.ndarray


@cache
def words(k: int, order: int) -> Words:
    level: list[tuple[int, ...]] = [()]
    all_words: list[tuple[int, ...]] = [()]
    for _ in range(order):
        level = [(j, *w) for w in level for j in range(k)]
        all_words += level
    index = {w: i for i, w in enumerate(all_words)}
    first = np.array([w[0] if w else -1 for w in all_words])
    parent = np.array([index[w[1:]] if w else -1 for w in all_words])
    counts = np.array([[w.count(j) for j in range(k)] for w in all_words], dtype=int).reshape(-1, k)
    return Words(first, parent, counts, counts.sum(axis=1))


@cache
def monomial_exponents(k: int, degree: int) -> np.ndarray:
    """All exponent vectors ``alpha`` (n_mono, k) with ``|alpha| <= degree``, by degree."""
    out = [a for d in range(degree + 1) for a in _exponents_of_degree(k, d)]
    return np.array(out, dtype=int).reshape(-1, k)


def _exponents_of_degree(k: int, d: int) -> list[tuple[int, ...]]:
    return [a for a in itertools.product(range(d + 1), repeat=k) if sum(a) == d][::-1]


def monomials(u: jnp.ndarray, exponents: np.ndarray) -> jnp.ndarray:
    """``prod_k u_k^alpha_k`` for every row of ``exponents``; (n_mono,).  Powers by repeated
    products (differentiable at ``u = 0``)."""
    degree = int(exponents.max(initial=0))
    powers = [jnp.ones_like(u)]
    for _ in range(degree):
        powers.append(powers[-1] * u)
    table = jnp.stack(powers, axis=1)  # (k, degree + 1)
    k = u.shape[0]
    return jnp.prod(table[jnp.arange(k)[None, :], exponents], axis=1)


def apply_e(e: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """``E_k v`` for every ``k``: ``v`` (L, d, c) -> (K', L, d, c)."""
    if e.ndim == 2:
        return e[:, None, :, None] * v[None]
    return jnp.einsum("kij,ljc->klic", e, v)


def neumann_words(a0_inv: jnp.ndarray, e: jnp.ndarray, h: jnp.ndarray, order: int):
    """Words of ``h`` (d, c): ``U`` (n_w, d, c) and ``EU`` (K', n_w, d, c) = ``E_k U^w``."""
    k = e.shape[0]
    level = (a0_inv @ h)[None]
    us, eus = [level], []
    for _ in range(order):
        eu = apply_e(e, level)
        eus.append(eu)
        nxt = jnp.einsum("ij,lkjc->lkic", a0_inv, jnp.swapaxes(eu, 0, 1))
        level = nxt.reshape(-1, *nxt.shape[2:])
        us.append(level)
    eus.append(apply_e(e, level))
    del k
    return jnp.concatenate(us, axis=0), jnp.concatenate(eus, axis=1)


class WordSet(NamedTuple):
    """Columns ``h`` (d, c) with their words ``u`` (n_w, d, c) and ``eu`` (K', n_w, d, c)."""

    h: jnp.ndarray
    u: jnp.ndarray
    eu: jnp.ndarray


def word_set(a0_inv, e, h, order: int) -> WordSet:
    u, eu = neumann_words(a0_inv, e, h, order)
    return WordSet(h, u, eu)


@cache
def _form_map(k: int, order: int):
    """Static map from the inner products of words to polynomial coefficients.

    Terms, in order: ``lin[w]`` (n_w), ``a0[t, s]`` (n_w * n_w: ``U_a^s' A0 U_b^t``),
    ``g[k, s, t]`` (K' n_w n_w: ``U_a^s' E_k U_b^t``).  Returns the monomial exponents, the
    segment (monomial index) and the sign of every term.
    """
    w = words(k, order)
    n_w = len(w.first)
    degree = 2 * order + 1
    exps = monomial_exponents(k, degree)
    index = {tuple(a): i for i, a in enumerate(exps)}
    seg, sign = [], []
    for s in range(n_w):  # linear terms c_s (h_a'U_b^s + U_a^s'h_b)
        seg.append(index[tuple(w.counts[s])])
        sign.append((-1.0) ** w.length[s])
    for t in range(n_w):  # - c_s c_t U_a^s' A0 U_b^t
        for s in range(n_w):
            seg.append(index[tuple(w.counts[s] + w.counts[t])])
            sign.append(-((-1.0) ** (w.length[s] + w.length[t])))
    unit = np.eye(k, dtype=int)
    for j in range(k):  # - c_s c_t delta_j U_a^s' E_j U_b^t
        for s in range(n_w):
            for t in range(n_w):
                seg.append(index[tuple(w.counts[s] + w.counts[t] + unit[j])])
                sign.append(-((-1.0) ** (w.length[s] + w.length[t])))
    return exps, np.array(seg), np.array(sign)


def form_coefficients(a: WordSet, b: WordSet, k: int, order: int) -> jnp.ndarray:
    """Coefficients (n_mono, c_a, c_b) of the polynomial ``Q(u) ~ h_a' A(u)^-1 h_b``.

    ``Q(u) = sum_alpha coef[alpha] u^alpha`` with the exponents of
    ``monomial_exponents(k, 2 order + 1)``; exact to that order.
    """
    w = words(k, order)
    n_w = len(w.first)
    hu = jnp.einsum("ia,sib->sab", a.h, b.u)  # h_a' U_b^s
    uh = jnp.einsum("sia,ib->sab", a.u, b.h)  # U_a^s' h_b
    g = jnp.einsum("sia,ktib->kstab", a.u, b.eu)  # U_a^s' E_k U_b^t
    first, parent = w.first[1:], w.parent[1:]
    a0 = jnp.concatenate([uh[None], g[first, :, parent]], axis=0)  # [t, s]: U_a^s' A0 U_b^t
    terms = jnp.concatenate(
        [(hu + uh), a0.reshape(n_w * n_w, *uh.shape[1:]), g.reshape(k * n_w * n_w, *uh.shape[1:])], axis=0
    )
    exps, seg, sign = _form_map(k, order)
    signed = terms * jnp.asarray(sign, terms.dtype)[:, None, None]
    return jax.ops.segment_sum(signed, jnp.asarray(seg), num_segments=exps.shape[0])


def spectral_scales(a0_inv: jnp.ndarray, e: jnp.ndarray) -> jnp.ndarray:
    """``lam_k = lambda_max(A0^-1/2 E_k A0^-1/2)`` (K',), from the symmetric
    ``E_k^1/2 A0^-1 E_k^1/2`` (diagonal ``E``) or ``F' E_k F`` with ``A0^-1 = F F'``."""
    if e.ndim == 2:
        root = jnp.sqrt(jnp.maximum(e, 0.0))
        mats = root[:, :, None] * a0_inv[None] * root[:, None, :]
    else:
        f = jnp.linalg.cholesky(a0_inv)
        mats = jnp.einsum("ji,kjl,lm->kim", f, e, f)
    return jax.vmap(lambda m: jnp.linalg.eigvalsh(0.5 * (m + m.T))[-1])(mats)


@cache
def _directions(k: int, order: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Directions on the unit sphere and, per degree ``j``, the pseudo-inverse of the
    matrix of degree-``j`` monomials at those directions."""
    if k == 1:
        dirs = np.ones((1, 1))
    elif k == 2:
        phi = np.pi * np.arange(order + 1) / (order + 1)
        dirs = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    else:
        n_dir = 2 * math.comb(order + k - 1, k - 1)
        raw = np.random.default_rng(0).normal(size=(n_dir, k))
        dirs = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    pinvs = []
    for j in range(1, order + 1):
        exps = np.array(_exponents_of_degree(k, j)).reshape(-1, k)
        vand = np.prod(dirs[:, None, :] ** exps[None], axis=2)
        pinvs.append(np.linalg.pinv(vand))
    return dirs, pinvs


def _power_traces(b: jnp.ndarray, order: int) -> jnp.ndarray:
    """``tr(B^j)`` for ``j = 1..order`` from powers up to ``ceil(order / 2)``."""
    half = (order + 1) // 2
    powers = [b]
    for _ in range(half - 1):
        powers.append(powers[-1] @ b)
    out = []
    for j in range(1, order + 1):
        lo, hi = j // 2, j - j // 2
        if lo == 0:
            out.append(jnp.trace(b))
        else:
            out.append(jnp.sum(powers[lo - 1] * powers[hi - 1].T))
    return jnp.stack(out)


def logdet_series(a0_inv: jnp.ndarray, e: jnp.ndarray, order: int) -> jnp.ndarray:
    """Coefficients (n_mono,) of ``log|A0 + sum_k u_k E_k| - log|A0|`` on
    ``monomial_exponents(K', order)``: Taylor polynomial of degree ``order``."""
    k = e.shape[0]
    dirs, pinvs = _directions(k, order)

    def traces(direction):
        if e.ndim == 2:
            b = a0_inv * jnp.tensordot(direction, e, axes=1)[None, :]
        else:
            b = a0_inv @ jnp.tensordot(direction, e, axes=1)
        return _power_traces(b, order)

    t = jax.lax.map(traces, jnp.asarray(dirs, a0_inv.dtype))  # (n_dir, order)
    coefs = [jnp.zeros((1,), a0_inv.dtype)]
    for j in range(1, order + 1):
        c_j = jnp.asarray(pinvs[j - 1], a0_inv.dtype) @ t[:, j - 1]
        coefs.append(((-1.0) ** (j + 1) / j) * c_j)
    return jnp.concatenate(coefs)


def evaluate(coef: jnp.ndarray, u: jnp.ndarray, exponents: np.ndarray) -> jnp.ndarray:
    """``sum_alpha coef[alpha] u^alpha`` (coef (n_mono, ...))."""
    return jnp.tensordot(monomials(u, exponents), coef, axes=1)


@cache
def _derivative_tables(exponents_key: tuple) -> tuple[np.ndarray, ...]:
    exps = np.array(exponents_key[1], dtype=int).reshape(-1, exponents_key[0])
    n_mono, k = exps.shape
    index = {tuple(a): i for i, a in enumerate(exps)}
    unit = np.eye(k, dtype=int)
    idx1, mult1 = np.zeros((k, n_mono), int), np.zeros((k, n_mono))
    idx2, mult2 = np.zeros((k, k, n_mono), int), np.zeros((k, k, n_mono))
    for i, a in enumerate(exps):
        for j in range(k):
            if a[j] > 0:
                idx1[j, i], mult1[j, i] = index[tuple(a - unit[j])], a[j]
            for m in range(k):
                b = a - unit[j] - unit[m]
                if b.min() >= 0:
                    idx2[j, m, i], mult2[j, m, i] = index[tuple(b)], a[j] * (a[m] - (j == m))
    return idx1, mult1, idx2, mult2


def evaluate_derivatives(coef: jnp.ndarray, u: jnp.ndarray, exponents: np.ndarray):
    """Value, gradient (K', ...) and Hessian (K', K', ...) of ``sum_alpha coef[alpha] u^alpha``
    from the monomials and static tables of their derivatives (no autodiff)."""
    idx1, mult1, idx2, mult2 = _derivative_tables((exponents.shape[1], tuple(exponents.ravel().tolist())))
    mono = monomials(u, exponents)
    d1 = mono[idx1] * jnp.asarray(mult1, u.dtype)
    d2 = mono[idx2] * jnp.asarray(mult2, u.dtype)
    return (
        jnp.tensordot(mono, coef, axes=1),
        jnp.tensordot(d1, coef, axes=1),
        jnp.tensordot(d2, coef, axes=1),
    )


__all__ = [
    "WordSet",
    "Words",
    "apply_e",
    "evaluate",
    "evaluate_derivatives",
    "form_coefficients",
    "logdet_series",
    "monomial_exponents",
    "monomials",
    "neumann_words",
    "spectral_scales",
    "word_set",
    "words",
]
