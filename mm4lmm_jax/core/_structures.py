"""Covariance structures: one pytree type per way of computing with ``V(sigma2)`` (pure JAX).

``V = sum_k sigma2_k Z_k G_k Z_k'`` with the last component the error (or residual).  A
structure is built once per data set by ``prepare(y, z_list, g_list, covariances)`` and then
offers, as pure functions of its arrays, every operation its consumers need:

* ``transform(x)``: the structure's linear map of designs (rotation, whitening, identity),
  on (n, p) or a batch (c, n, p); :meth:`fit` takes transformed designs so a scan maps its
  shared columns once;
* ``fit(x_t, sigma0, method=, stopping=)``: one model's MM fit (a :class:`~.fit.FitOutput`);
* ``quad(x)``: ``sigma2 -> (A'V^-1A, log|V|)`` with ``A = [x | y]``: the quadratic form behind
  log-likelihoods, information matrices and Kenward-Roger (:mod:`._information`);
* ``v_inv_times(sigma2, r)``: ``V^-1 r`` (BLUPs);
* ``chunk_size()``: models per compiled batch; class attributes ``methods`` (what
  :meth:`fit` supports), ``stable_at_boundary`` (whether ``quad``'s derivatives stay accurate
  when a component is near zero), ``batch_by_vmap`` (per-model algebra small enough to vmap).

:class:`Henderson` and :class:`Dense` also give the Newton family ``A(psi)`` of
:mod:`._newton_scan` (``family``, ``newton_columns``).  :func:`choose` is MM4LMM's choice of
structure; a new structure is one class here (added to :data:`STRUCTURES` and :func:`choose`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular

from ._fit import FitOutput, fit_dense, fit_reduced, fit_rotated, fit_single
from ._newton_scan import Family
from ._quad import dense_quad, henderson_quad, pushthrough_quad, rotated_quad
from ._reduced import ReducedShared, reduced_shared, reduced_system
from ._transforms import joint_diagonalise


def _pytree(cls):
    """A frozen dataclass registered as a pytree; fields with ``metadata={"static": True}``
    are static (part of the compiled program's key)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    static = [f.name for f in fields if f.metadata.get("static")]
    data = [f.name for f in fields if not f.metadata.get("static")]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=static)


def _static(default=None):
    return dataclasses.field(default=default, metadata={"static": True})


def _concat(x, y):
    return jnp.concatenate([x, y[:, None]], axis=1)


def _apply(m, x):
    """``m @ x`` for a design (n, p) or a batch of designs (c, n, p)."""
    if x.ndim == 2:
        return m @ x
    return jnp.einsum("ij,cjk->cik", m, x)


def is_identity(v: np.ndarray) -> bool:
    """Exactly the identity matrix (checked on the host, without building an n x n identity)."""
    v = np.asarray(v)
    if v.ndim != 2 or v.shape[0] != v.shape[1]:
        return False
    diagonal = np.diagonal(v)
    return np.count_nonzero(v) == np.count_nonzero(diagonal) and bool(np.all(diagonal == 1.0))


class Structure:
    """Interface of every covariance structure (see the module docstring)."""

    key: ClassVar[str] = ""  # short name (``MMEstResult.structure``)
    name: ClassVar[str] = ""  # readable name
    methods: ClassVar[tuple[str, ...]] = ("reml", "ml")
    stable_at_boundary: ClassVar[bool] = True
    batch_by_vmap: ClassVar[bool] = False

    @classmethod
    def prepare(cls, y, z_list, g_list, covariances, *, newton: bool = False):  # pragma: no cover
        """Build from ``y`` (n,), ``Z_k`` (n, q_k) or None (identity), ``G_k`` (q_k, q_k) and
        the dense ``V_k = Z_k G_k Z_k'`` (n, n) (the last component the error); ``newton``:
        also the Newton family (:meth:`family`), where the structure has one."""
        raise NotImplementedError

    def for_inference(self):
        """The structure with what ``quad`` and ``v_inv_times`` need (built on first use by
        inference, so that fits alone do not pay for it)."""
        return self

    def transform(self, x):
        return x

    def fit(self, x_t, sigma0, *, method: str, stopping) -> FitOutput:  # pragma: no cover
        raise NotImplementedError

    def quad(self, x):  # pragma: no cover - interface
        raise NotImplementedError

    def quad_data(self, a):  # pragma: no cover - interface
        """``sigma2 -> (A'V^-1A, log|V|)`` of raw columns ``a`` (n, c), differentiable in ``a``
        and ``sigma2`` and smooth at zero random components (the implicit derivatives)."""
        raise NotImplementedError

    def v_inv_times(self, sigma2, r):  # pragma: no cover - interface
        raise NotImplementedError

    def chunk_size(self) -> int:
        return 64


@_pytree
class Single(Structure):
    """One component ``V = s V_1``, ``V_1 = L L'``: closed form on whitened data."""

    key: ClassVar[str] = "single"
    name: ClassVar[str] = "one component (closed form)"
    l_inv: jnp.ndarray
    y_w: jnp.ndarray
    logdet_v1: jnp.ndarray

    @classmethod
    def prepare(cls, y, z_list, g_list, covariances, *, newton: bool = False):
        v1 = jnp.asarray(covariances[0])
        n = v1.shape[0]
        chol = jnp.linalg.cholesky(0.5 * (v1 + v1.T))
        l_inv = solve_triangular(chol, jnp.eye(n), lower=True)
        return cls(l_inv, l_inv @ jnp.asarray(y), 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))))

    def transform(self, x):
        return _apply(self.l_inv, x)

    def fit(self, x_t, sigma0, *, method, stopping):
        del sigma0, stopping  # closed form
        return fit_single(self.y_w, x_t, self.logdet_v1, method=method)

    def quad(self, x):
        return self._quad_w(_concat(self.l_inv @ x, self.y_w))

    def quad_data(self, a):
        return self._quad_w(self.l_inv @ a)

    def _quad_w(self, a_w):
        n = a_w.shape[0]

        def quad(sigma2):
            m = (a_w.T @ a_w) / sigma2[0]
            return 0.5 * (m + m.T), n * jnp.log(sigma2[0]) + self.logdet_v1

        return quad

    def v_inv_times(self, sigma2, r):
        return self.l_inv.T @ (self.l_inv @ r) / sigma2[0]

    def chunk_size(self):
        return 256


@_pytree
class TwoComponent(Structure):
    """``V = s1 K1 + s2 K2`` (``K2`` positive definite) after one joint diagonalisation
    ``T K1 T' = diag(d)``, ``T K2 T' = I``: every model costs O(n p^2)."""

    key: ClassVar[str] = "rotated"
    name: ClassVar[str] = "two-component (joint diagonalisation)"
    batch_by_vmap: ClassVar[bool] = True
    t: jnp.ndarray
    d: jnp.ndarray
    logdet_k2: jnp.ndarray
    y_rot: jnp.ndarray

    @classmethod
    def prepare(cls, y, z_list, g_list, covariances, *, newton: bool = False):
        k1, k2 = (jnp.asarray(c) for c in covariances)
        is_eye = bool(jnp.array_equal(k2, jnp.eye(k2.shape[0])))
        rot = joint_diagonalise(k1, None if is_eye else k2)
        return cls(rot.t, rot.d, rot.logdet_k2, rot.t @ jnp.asarray(y))

    def transform(self, x):
        return _apply(self.t, x)

    def fit(self, x_t, sigma0, *, method, stopping):
        return fit_rotated(self.y_rot, x_t, self.d, sigma0, method=method, stopping=stopping, logdet_k2=self.logdet_k2)

    def quad(self, x):
        a_rot = _concat(self.t @ x, self.y_rot)
        return lambda sigma2: rotated_quad(sigma2, a_rot, self.d, self.logdet_k2)

    def quad_data(self, a):
        a_rot = self.t @ a
        return lambda sigma2: rotated_quad(sigma2, a_rot, self.d, self.logdet_k2)

    def v_inv_times(self, sigma2, r):
        return self.t.T @ ((self.t @ r) / (sigma2[0] * self.d + sigma2[1]))


@_pytree
class Dense(Structure):
    """Any number of components with dense ``n x n`` algebra."""

    key: ClassVar[str] = "dense"
    name: ClassVar[str] = "dense"
    y: jnp.ndarray
    covs: jnp.ndarray

    @classmethod
    def prepare(cls, y, z_list, g_list, covariances, *, newton: bool = False):
        return cls(jnp.asarray(y), jnp.stack([jnp.asarray(c) for c in covariances]))

    def fit(self, x_t, sigma0, *, method, stopping):
        return fit_dense(self.y, x_t, self.covs, sigma0, method=method, stopping=stopping)

    def quad(self, x):
        a = _concat(x, self.y)
        return lambda sigma2: dense_quad(sigma2, a, self.covs)

    def quad_data(self, a):
        return lambda sigma2: dense_quad(sigma2, a, self.covs)

    def v_inv_times(self, sigma2, r):
        v = jnp.tensordot(sigma2, self.covs, axes=1)
        chol = jnp.linalg.cholesky(0.5 * (v + v.T))
        return cho_solve((chol, True), r)

    def chunk_size(self):
        n = self.covs.shape[1]
        return int(max(1, min(64, 2e8 // (8 * 6 * n * n))))

    # ------------------------------------------------------------- Newton family
    newton_inverse_ratio: ClassVar[bool] = False

    def family(self) -> Family:
        """``A(psi) = V_K + sum_k psi_k V_k`` (``psi`` the ratios to the last component)."""
        k = self.covs.shape[0] - 1
        return Family(self.covs[-1], self.covs[:-1], jnp.asarray(1.0), jnp.zeros(k), jnp.asarray(0.0))

    def newton_columns(self, a):
        """``h`` (d, c) and the columns in the family's coordinates (n, c)."""
        a = jnp.asarray(np.asarray(a, dtype=float))
        return a, a

    def newton_h(self, a_w):
        """The family's columns ``h`` of columns already in its coordinates."""
        return a_w

    def newton_cross(self, a_w, b_w):
        """The part of ``A'V^-1B`` outside the family: none in dense form."""
        return jnp.zeros((a_w.shape[1], b_w.shape[1]))


@_pytree
class Henderson(Structure):
    """``V = s_e R + sum_k s_k Z_k G_k Z_k'`` through Henderson's mixed-model equations
    (``sum q_k + p < n``).  The data are whitened by ``R = L L'`` (when ``R`` is not the
    identity) and every block by ``G_k = C_k C_k'``: ``W_k = L^-1 Z_k C_k``.  The MM fit works
    on the reduced system of :mod:`._reduced` (first block eliminated in closed form); ``quad``
    and ``v_inv_times`` use the Woodbury identity on the whitened blocks.  ReML only."""

    key: ClassVar[str] = "henderson"
    name: ClassVar[str] = "Henderson mixed-model equations"
    methods: ClassVar[tuple[str, ...]] = ("reml",)
    stable_at_boundary: ClassVar[bool] = False
    l_inv: jnp.ndarray  # (n, n), or (0, 0) when R is the identity
    y_w: jnp.ndarray
    reduced: ReducedShared
    whiten: bool = _static(False)
    w1w1: jnp.ndarray | None = None  # (q1, q1) W_1'W_1 of the rotated first block (inference)
    zt: jnp.ndarray | None = None  # (n, q) whitened blocks, unrotated (the Newton family)
    ztzt: jnp.ndarray | None = None  # (q, q) zt'zt (the Newton family)

    @classmethod
    def prepare(cls, y, z_list, g_list, covariances, *, newton: bool = False):
        n = np.shape(y)[0]
        r = np.asarray(covariances[-1], dtype=float)
        whiten = not is_identity(r)
        if whiten:
            chol = np.linalg.cholesky(0.5 * (r + r.T))
            l_inv = np.linalg.solve(chol, np.eye(n))
            logdet_r = 2.0 * np.sum(np.log(np.diag(chol)))
        else:
            l_inv, logdet_r = np.zeros((0, 0)), 0.0
        zs = [np.eye(n) if z is None else np.asarray(z, float) for z in z_list[:-1]]
        y_w = l_inv @ y if whiten else np.asarray(y, dtype=float)
        z_w = [l_inv @ z if whiten else z for z in zs]
        reduced = reduced_shared(
            jnp.asarray(y_w), [jnp.asarray(z) for z in z_w], [jnp.asarray(g) for g in g_list[:-1]], logdet_r
        )
        out = cls(jnp.asarray(l_inv), jnp.asarray(y_w), reduced, whiten)
        if not newton:
            return out
        blocks = []
        for z, g in zip(zs, g_list[:-1]):
            g = np.asarray(g, float)
            c = np.linalg.cholesky(0.5 * (g + g.T))
            blocks.append(l_inv @ (z @ c) if whiten else z @ c)
        zt = np.concatenate(blocks, axis=1)
        return dataclasses.replace(out, zt=jnp.asarray(zt), ztzt=jnp.asarray(zt.T @ zt))

    def for_inference(self):
        if self.w1w1 is not None:
            return self
        return dataclasses.replace(self, w1w1=self.reduced.w1.T @ self.reduced.w1)

    def transform(self, x):
        return _apply(self.l_inv, x) if self.whiten else x

    def fit(self, x_t, sigma0, *, method, stopping):
        del method  # ReML only (checked by choose)
        return fit_reduced(reduced_system(x_t, self.y_w, self.reduced), sigma0, stopping=stopping)

    def chunk_size(self):
        q = self.reduced.wr.shape[1]
        return int(max(1, min(64, 2e8 // (8 * 4 * (q + 8) ** 2))))

    def _blocks(self):
        sh = self.reduced
        w = jnp.concatenate([sh.w1, sh.wr], axis=1)
        ww = jnp.block([[self.w1w1, sh.b], [sh.b.T, sh.wrwr]])
        block = jnp.concatenate([jnp.zeros(sh.w1.shape[1], jnp.int32), sh.block_r])
        return w, 0.5 * (ww + ww.T), block

    def quad(self, x):
        sh = self.reduced
        w, ww, block = self._blocks()
        a_w = _concat(self.transform(x), self.y_w)
        ara = a_w.T @ a_w
        q = w.shape[1]
        return lambda sigma2: henderson_quad(
            sigma2,
            ara=0.5 * (ara + ara.T),
            arz=a_w.T @ w,
            zrz=ww,
            g_inv=jnp.eye(q, dtype=ww.dtype),
            block=block,
            logdet_g=jnp.zeros_like(sh.logdet_g),
            q_k=sh.q_k,
            logdet_r=sh.logdet_r,
            n_obs=sh.n_obs,
        )

    def quad_data(self, a):
        w, ww, block = self._blocks()
        a_w = self.transform(a)
        aa, az = a_w.T @ a_w, a_w.T @ w
        n, logdet_r = self.reduced.n_obs, self.reduced.logdet_r
        return lambda sigma2: pushthrough_quad(
            sigma2, 0.5 * (aa + aa.T), az, ww, jnp.diag(sigma2[:-1][block]), n, logdet_r
        )

    def v_inv_times(self, sigma2, r):
        w, ww, block = self._blocks()
        s_e = sigma2[-1]
        r_w = self.transform(r[:, None])[:, 0]
        c = ww + jnp.diag(s_e / sigma2[:-1][block])
        chol = jnp.linalg.cholesky(0.5 * (c + c.T))
        out = (r_w - w @ cho_solve((chol, True), w.T @ r_w)) / s_e
        return self.l_inv.T @ out if self.whiten else out

    # ------------------------------------------------------------- Newton family
    newton_inverse_ratio: ClassVar[bool] = True

    def family(self) -> Family:
        """``A(psi) = W'W + diag(psi_k)`` on the whitened blocks (``psi`` the inverse ratios);
        needs a structure prepared with ``newton=True``."""
        if self.zt is None:
            raise ValueError("this Henderson structure was prepared without the Newton family (newton=True)")
        sh = self.reduced
        sizes = np.asarray(sh.q_k, dtype=int)
        masks = np.zeros((sizes.size, int(sizes.sum())))
        start = 0
        for j, size in enumerate(sizes):
            masks[j, start : start + size] = 1.0
            start += size
        return Family(self.ztzt, jnp.asarray(masks), jnp.asarray(-1.0), jnp.asarray(sizes, float), sh.logdet_r)

    def newton_columns(self, a):
        """``h = W'a_w`` (q, c) and the whitened columns ``a_w`` (n, c) (host input)."""
        a = np.asarray(a, dtype=float)
        a_w = jnp.asarray(np.asarray(self.l_inv) @ a if self.whiten else a)
        return self.zt.T @ a_w, a_w

    def newton_h(self, a_w):
        return self.zt.T @ a_w

    def newton_cross(self, a_w, b_w):
        return a_w.T @ b_w


#: Every structure, in MM4LMM's order of preference.
STRUCTURES = (Single, TwoComponent, Henderson, Dense)


def choose(
    k: int, method: str, last_pd: bool, n: int, q: int, n_cof: int, henderson_pd: bool, henderson: bool | None
) -> tuple[type[Structure], list[str]]:
    """MM4LMM's choice of structure, and notes for the user where a request is overridden.

    ``k`` components; ``last_pd`` whether the last covariance is positive definite; ``q``
    the random levels of the first ``k - 1`` components; ``n_cof`` cofactor columns;
    ``henderson_pd`` whether Henderson's covariances are positive definite; ``henderson``
    the user's request (None: automatic).
    """
    notes: list[str] = []
    if k == 1:
        return Single, notes
    if k == 2:
        return (TwoComponent if last_pd else Dense), notes
    if method not in Henderson.methods:
        if henderson:
            notes.append("Henderson's trick is not available for ML; the dense path is used")
        return Dense, notes
    use = henderson if henderson is not None else n > q + n_cof
    if use and not henderson_pd:
        if henderson:
            notes.append("Henderson's equations need positive-definite covariance matrices; the dense path is used")
        use = False
    return (Henderson if use else Dense), notes


def choose_newton(n: int, q: int, n_cof: int, henderson_pd: bool, henderson: bool | None):
    """Structure of an exact ``K >= 3`` Newton scan (ReML and ML alike), with notes."""
    if henderson is False:
        return Dense, []
    if q + n_cof < n and henderson_pd:
        return Henderson, []
    notes = []
    if henderson:
        notes.append(
            "Henderson's equations need sum(q_k) + p < n and positive-definite covariance matrices; "
            "the dense form is used"
        )
    return Dense, notes


__all__ = [
    "STRUCTURES",
    "Dense",
    "Henderson",
    "Single",
    "Structure",
    "TwoComponent",
    "choose",
    "choose_newton",
    "is_identity",
]
