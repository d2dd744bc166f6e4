"""Fits on a well-conditioned basis of the fixed-effect columns, reported in the user's columns.

A cofactor coded as a date (``20230101 + days``), or in unscaled units, makes the design's
cross-products lose their digits to cancellation: every fitter (MM replay, exact Newton,
rotated grid) then reports variance components and p-values off by percents, silently.  The
likelihood, the MM iterates and the Wald tests depend on the design only through the space its
columns span, so the fits run on ``X S^-1`` with ``S`` upper triangular (an orthonormal basis of
the shared columns, per-model columns scaled or orthonormalised), and the estimates are mapped
back: ``beta = S^-1 beta_S``, ``var_beta = S^-1 V_S S^-T``, ReML
``loglik = loglik_S - log|det S|`` (ML unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .core._fit import FitOutput

#: columns whose root-mean-square lies in this range are fitted as given (no copy of the block)
_WELL_SCALED = (1e-3, 1e3)
#: a per-model design whose unit-norm columns leave a QR pivot below this is rank deficient:
#: fitted as given, so the inner fitter flags it as before
_RANK_TOL = 1e-10


def _triangular_inverse(r: np.ndarray) -> np.ndarray:
    """Inverses of (..., p, p) upper-triangular matrices (inf/nan where singular)."""
    p = r.shape[-1]
    eye = np.broadcast_to(np.eye(p), r.shape)
    with np.errstate(all="ignore"):
        return np.linalg.solve(r, eye) if p else np.zeros(r.shape)


def _positive_qr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a = Q R`` (n, c) with ``R``'s diagonal made non-negative (one basis per ``a``)."""
    if not a.shape[1]:
        return a, np.zeros((0, 0))
    q, r = np.linalg.qr(a)
    sign = np.where(np.diag(r) < 0, -1.0, 1.0)
    return q * sign, r * sign[:, None]


@dataclass(frozen=True)
class OrthonormalBasis:
    """A fitter (``fit(base, extra, sigma0, *, chunk_size, progress)``, ``fit_null``) run on
    a well-conditioned basis of each model's columns ``[base | extra[i]]``.

    ``base`` (n, c): replaced by ``Q`` of ``base = Q R``.  ``extra`` (m, n, p1): with shared
    columns, each column scaled to unit root-mean-square where it is far from it; without
    (per-model designs), each model's columns orthonormalised (:func:`orthonormal_columns`)."""

    inner: Any
    method: str

    def fit(self, base, extra, sigma0, *, chunk_size=None, progress=None) -> FitOutput:
        base = np.asarray(base, dtype=float)
        extra = np.asarray(extra, dtype=float)
        m, n, p1 = extra.shape
        c = base.shape[1]
        q, r = _positive_qr(base)
        extra_fit, r_extra = self._extra_basis(extra, c)
        fits = self.inner.fit(q, extra_fit, sigma0, chunk_size=chunk_size, progress=progress)
        s = np.zeros((m, c + p1, c + p1))
        s[:, :c, :c] = r
        s[:, c:, c:] = r_extra
        return self._back(fits, s)

    def fit_null(self, design, sigma0=None) -> FitOutput:
        """The model ``design`` (n, c) alone, by the inner fitter's ``fit_null``."""
        q, r = _positive_qr(np.asarray(design, dtype=float))
        return self._back(self.inner.fit_null(q, sigma0), r[None])

    def _back(self, fits: FitOutput, s: np.ndarray) -> FitOutput:
        """Estimates on ``X S^-1`` (``s`` (m, p, p)) expressed in the columns of ``X``."""
        s_inv = _triangular_inverse(s)
        sigma2, beta_s, vb_s, loglik, n_steps, status = (np.asarray(a) for a in fits)
        beta = np.einsum("mij,mj->mi", s_inv, beta_s)
        var_beta = np.einsum("mij,mjk,mlk->mil", s_inv, vb_s, s_inv)
        if self.method == "reml":
            with np.errstate(divide="ignore"):
                loglik = loglik - np.sum(np.log(np.abs(np.diagonal(s, axis1=1, axis2=2))), axis=1)
        return FitOutput(sigma2, beta, var_beta, loglik, n_steps, status)

    @staticmethod
    def _extra_basis(extra: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        """The per-model columns to fit and their (m, p1, p1) upper-triangular ``S`` blocks."""
        m, n, p1 = extra.shape
        if c == 0:  # whole designs per model: orthonormalise each
            return orthonormal_columns(extra)
        rms = _rms(extra)
        lo, hi = _WELL_SCALED
        if np.all((rms >= lo) & (rms <= hi)):
            return extra, np.broadcast_to(np.eye(p1), (m, p1, p1)).copy()
        return extra / rms[:, None, :], rms[:, :, None] * np.eye(p1)


def _rms(x: np.ndarray) -> np.ndarray:
    """(m, p) root-mean-square of each column of (m, n, p) designs (1 for a zero column)."""
    rms = np.sqrt(np.einsum("mnp,mnp->mp", x, x) / max(x.shape[1], 1))
    return np.where(rms > 0, rms, 1.0)


def orthonormal_columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x[i] = Q[i] S[i]`` for (m, n, p) designs: ``Q`` orthonormal columns, ``S`` (m, p, p)
    upper triangular with a positive diagonal.  A rank-deficient design (a pivot of its
    unit-norm columns below ``1e-10``) is returned as given with ``S = I``."""
    m, n, p = x.shape
    if not p:
        return x, np.zeros((m, 0, 0))
    rms = _rms(x)
    q, r = np.linalg.qr(x / rms[:, None, :])
    diag = np.diagonal(r, axis1=1, axis2=2)
    ok = np.abs(diag).min(axis=1) > _RANK_TOL * np.sqrt(n)
    sign = np.where(diag < 0, -1.0, 1.0)
    q, r = q * sign[:, None, :], r * sign[:, :, None] * rms[:, None, :]
    return np.where(ok[:, None, None], q, x), np.where(ok[:, None, None], r, np.eye(p))


__all__ = ["OrthonormalBasis", "orthonormal_columns"]
