"""``anova_test``: MM4LMM's ``AnovaTest`` -- Wald (Type I, Type III, contrasts) and
Kenward-Roger F tests, for every model of a fit in a few batched calls."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._basis import orthonormal_columns
from ..core._batch import map_models
from ..core._kenward_roger import kr_from_crosses, kr_ingredients, kr_test, rotated_weights, trace_weights
from ..core._structures import TwoComponent
from ._checks import check_same_data, require_fit
from ._fitted import FittedModels
from ._hypotheses import as_contrasts, selection_matrix, term_columns, term_labels
from ._structures import design_chunks, layout_groups, structures_for
from ._wald import chi2_sf_array

_TYPES = {"typei": "TypeI", "type1": "TypeI", "i": "TypeI", "typeiii": "TypeIII", "type3": "TypeIII"}
_TYPES.update({"iii": "TypeIII", "kr": "KR", "kenward-roger": "KR", "kenwardroger": "KR"})
KR_COLUMNS = ["F", "ndf", "ddf", "pval"]
KR_CHUNK = 256


@dataclass(frozen=True)
class AnovaResult(Mapping):
    """Test tables of every model, in model order: a mapping model name -> DataFrame.

    ``result["SNP1"]`` or ``result[0]`` is one model's table (rows: terms or combinations;
    columns: ``"Wald (Type III)"``/``"Wald (Type I)"``/``"Wald"``, ``"pval"``, ``"df"`` for
    Wald tests, ``"F"``, ``"ndf"``, ``"ddf"``, ``"pval"`` for Kenward-Roger).  The stacked
    numbers are ``array`` (m, rows, columns); :meth:`to_frame` gives one long table.
    """

    names: list[str]
    rows: list[list[str]]
    columns: list[str]
    array: np.ndarray
    test: str

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __getitem__(self, key) -> pd.DataFrame:
        i = int(key) if isinstance(key, (int, np.integer)) else self._position(key)
        rows = self.rows[i]
        return pd.DataFrame(self.array[i, : len(rows)], index=rows, columns=self.columns)

    def _position(self, key) -> int:
        try:
            return self.names.index(str(key))
        except ValueError:
            raise KeyError(f"no model named {key!r}") from None

    def column(self, name: str) -> pd.DataFrame:
        """One column for all models: a (models x rows) DataFrame, e.g. ``column("pval")``."""
        j = self.columns.index(name)
        labels = self.rows[int(np.argmax([len(r) for r in self.rows]))]
        return pd.DataFrame(self.array[:, : len(labels), j], index=self.names, columns=labels)

    def to_frame(self) -> pd.DataFrame:
        """All tables stacked: index (model, row)."""
        frames = {nm: self[i] for i, nm in enumerate(self.names)}
        return pd.concat(frames, names=["model", "test"])

    def __repr__(self) -> str:
        head = f"AnovaResult({self.test}, {len(self)} model(s))"
        if len(self) == 0:
            return head
        return f"{head}\n{self.names[0]}:\n{self[0]!r}" + ("\n..." if len(self) > 1 else "")


def _normalise_type(type_: str) -> str:
    key = str(type_).replace(" ", "").replace("_", "").lower()
    if key not in _TYPES:
        raise ValueError(f"type must be 'TypeI', 'TypeIII' or 'KR', got {type_!r}")
    return _TYPES[key]


def _wald(beta, var_beta, lmat):
    """Batched Wald statistics: ``beta`` (b, p), ``var_beta`` (b, p, p), ``lmat`` (q, p)."""
    lb = beta @ lmat.T
    lvl = np.einsum("qa,bac,rc->bqr", lmat, var_beta, lmat)
    stat = np.einsum("bq,bq->b", lb, np.linalg.solve(lvl, lb[..., None])[..., 0])
    q = lmat.shape[0]
    return np.stack([stat, chi2_sf_array(stat, q), np.full_like(stat, q)], axis=-1)


def _type1(beta, var_beta, cols: list[np.ndarray]):
    """MM4LMM's sequential tests: squares of ``R beta`` (``R'R = var_beta^-1``, ``R`` upper
    triangular) summed over each term's coefficients."""
    prec = np.linalg.inv(var_beta)
    chol = np.linalg.cholesky(0.5 * (prec + np.swapaxes(prec, 1, 2)))  # lower L, R = L'
    comp = np.einsum("bji,bj->bi", chol, beta) ** 2
    out = []
    for c in cols:
        stat = comp[:, c].sum(axis=1)
        out.append(np.stack([stat, chi2_sf_array(stat, len(c)), np.full_like(stat, len(c))], axis=-1))
    return np.stack(out, axis=1)


def _kr_ingredients_one(quad, p, sigma2):
    return kr_ingredients(quad, sigma2, p)


@jax.jit
def _kr_tests(beta, ing, lmats):
    """KR tests of ``lmats[i] beta[i] = 0`` for every model ``i`` of a chunk."""
    return jax.vmap(lambda b, g, lm: kr_test(b, g, contrast=lm))(beta, ing, lmats)


_kr_from_crosses = jax.jit(kr_from_crosses)


def _rotated_crosses(base_rot, x_rot, d, sigma2):
    """The crosses of :func:`~mm4lmm_jax.core._kenward_roger.kr_from_crosses` on the host
    (NumPy's batched products are several times faster than XLA's on the CPU here): the
    designs ``[base_rot | x_rot[i]]`` (n, c), (m, n, p1); ``d`` (n,); ``sigma2`` (m, 2)."""
    m, n, p1 = x_rot.shape
    c = base_rot.shape[1]
    p = c + p1
    weights = np.asarray(rotated_weights(np.asarray(d), sigma2))  # (6, m, n)
    cross = np.empty((6, m, p, p))
    if c:
        pairs = (base_rot[:, :, None] * base_rot[:, None, :]).reshape(n, c * c)
        cross[:, :, :c, :c] = (weights.reshape(6 * m, n) @ pairs).reshape(6, m, c, c)
    prods = np.concatenate(
        [x_rot[..., :, None] * base_rot[None, :, None, :], x_rot[..., :, None] * x_rot[..., None, :]], -1
    )
    per_model = np.matmul(np.ascontiguousarray(np.swapaxes(weights, 0, 1)), prods.reshape(m, n, p1 * p))
    per_model = np.swapaxes(per_model.reshape(m, 6, p1, p), 0, 1)
    cross[:, :, c:, :] = per_model
    cross[:, :, :c, c:] = np.swapaxes(per_model[..., :c], -1, -2)
    return cross, np.asarray(trace_weights(weights, np.asarray(d)))


class _RotatedDesigns:
    """Designs of a fit's models on a well-conditioned basis, rotated by a
    :class:`TwoComponent` structure, chunk by chunk: ``(base_rot, x_rot, s)`` with
    ``T x = [base_rot | x_rot] s`` per model (``s`` (c, p, p) upper triangular).  With shared
    columns, their orthonormal basis is rotated once and each chunk's per-model columns (scaled
    to unit root-mean-square) by one matrix product; per-model designs are orthonormalised,
    then rotated by one product."""

    def __init__(self, fit: FittedModels, struct: TwoComponent):
        self.t = np.asarray(struct.t)
        mk = fit.problem.markers
        self.extra = mk.extra if mk is not None and mk.extra is not None else None
        if self.extra is not None:
            q, r = np.linalg.qr(mk.base.matrix)
            self.base_rot, self.base_r = self.t @ q, r

    def _rotate(self, x: np.ndarray) -> np.ndarray:
        size, n, p = x.shape
        flat = np.ascontiguousarray(np.moveaxis(x, 1, 0)).reshape(n, size * p)
        return np.moveaxis((self.t @ flat).reshape(n, size, p), 0, 1)

    def __call__(self, ch) -> tuple[np.ndarray, np.ndarray]:
        if self.extra is None:
            q, s = orthonormal_columns(ch.x)
            return np.zeros((ch.x.shape[1], 0)), self._rotate(q), s
        extra = self.extra[ch.index]
        size, n, p1 = extra.shape
        c = self.base_rot.shape[1]
        rms = np.sqrt(np.einsum("mnp,mnp->mp", extra, extra) / n)
        rms = np.where(rms > 0, rms, 1.0)
        s = np.zeros((size, c + p1, c + p1))
        s[:, :c, :c] = self.base_r
        s[:, c:, c:] = rms[:, :, None] * np.eye(p1)
        return self.base_rot, self._rotate(extra / rms[:, None]), s


def _kr(fit: FittedModels, index: np.ndarray, lmats: list[np.ndarray], chunk: int) -> np.ndarray:
    """KR tables (len(index), len(lmats), 4) for models sharing one layout."""
    out = np.full((len(fit), len(lmats), len(KR_COLUMNS)), np.nan)  # by model index
    p = len(fit.coef_names[int(index[0])])
    for struct, group in structures_for(fit, index):
        rotate = _RotatedDesigns(fit, struct) if isinstance(struct, TwoComponent) else None
        for ch in design_chunks(fit, group, chunk):
            sigma2 = jnp.asarray(fit.sigma2_array[ch.index])
            # on an orthonormal basis X = Q S (beta_Q = S beta, L_Q = L S^-1; the F test is
            # invariant): a date-coded cofactor would otherwise cost the KR algebra its digits
            if rotate is not None:  # closed form on the rotated designs
                base_rot, x_rot, s = rotate(ch)
                ing = _kr_from_crosses(*_rotated_crosses(base_rot, x_rot, struct.d, np.asarray(sigma2)))
            else:
                q, s = orthonormal_columns(ch.x)
                ing = map_models(_kr_ingredients_one, struct, jnp.asarray(q), sigma2)
            s_inv = np.linalg.solve(s, np.broadcast_to(np.eye(p), s.shape))
            beta = jnp.asarray(np.einsum("mij,mj->mi", s, fit.beta_array[ch.index, :p]))
            valid = ch.index[: ch.n_valid]
            for t, lmat in enumerate(lmats):
                res = _kr_tests(beta, ing, jnp.asarray(np.einsum("ij,mjk->mik", lmat, s_inv)))
                table = np.stack(
                    [np.asarray(res.f), np.asarray(res.ndf), np.asarray(res.ddf), np.asarray(res.pval)], -1
                )
                out[valid, t] = table[: ch.n_valid]
    return out[index]


def anova_test(
    fit: FittedModels,
    tested_combination=None,
    type: str = "TypeIII",  # noqa: A002 - MM4LMM's argument name
    cofactor=None,
    x=None,
    formula: str | None = None,
    var_list=None,
    z_list=None,
    *,
    chunk_size: int = KR_CHUNK,
) -> AnovaResult:
    """Tests of fixed effects for every model of ``fit`` (MM4LMM's ``AnovaTest``).

    Parameters
    ----------
    fit : the result of :func:`mmest`.
    tested_combination : None, a matrix ``L`` (r, p), or a list / dict of matrices: each
        tests ``L beta = 0`` jointly.  A rank-deficient ``L`` is reduced to full row rank
        (warning); a width other than a model's number of coefficients gives NaN for that
        model (warning).
    type : ``"TypeI"`` (sequential Wald), ``"TypeIII"`` (marginal Wald, one row per term)
        or ``"KR"`` (Kenward-Roger F tests of the Type III terms, or of the combinations).
        With combinations and a Wald type, the combinations are tested (MM4LMM's rule).
    cofactor, x, formula, var_list, z_list : optional, MM4LMM-style: the fit keeps its data;
        anything passed is checked against it (a different data set is a ``ValueError``).
    chunk_size : models per compiled batch for KR.

    Returns
    -------
    AnovaResult
        A mapping model name -> DataFrame, in model order (see :class:`AnovaResult`).
    """
    require_fit(fit, "anova_test")
    test = _normalise_type(type)
    check_same_data(fit, "anova_test", cofactor=cofactor, x=x, formula=formula, var_list=var_list, z_list=z_list)
    if test == "KR" and fit.method != "reml":
        raise ValueError("anova_test: Kenward-Roger tests need a ReML fit (method='reml'); this fit is ML")
    contrasts = as_contrasts(tested_combination) if tested_combination is not None else None
    m = len(fit)
    rows: list[list[str]] = [[] for _ in range(m)]
    if test == "KR":
        columns = KR_COLUMNS
    elif contrasts is not None:
        columns = ["Wald", "pval", "df"]
    else:
        columns = [f"Wald ({'Type I' if test == 'TypeI' else 'Type III'})", "pval", "df"]
    n_rows = len(contrasts) if contrasts is not None else max(len(set(np.asarray(a).tolist())) for a in fit.attrs)
    values = np.full((m, n_rows, len(columns)), np.nan)
    skipped = 0
    for index in layout_groups(fit):
        first = int(index[0])
        p = len(fit.coef_names[first])
        beta = fit.beta_array[index, :p]
        vb = fit.var_beta_array[index, :p, :p]
        if contrasts is not None:
            labels = [name for name, _ in contrasts]
            usable = [t for t, (_, mat) in enumerate(contrasts) if mat.shape[1] == p]
            skipped += (len(contrasts) - len(usable)) * len(index)
            lmats = [contrasts[t][1] for t in usable]
        else:
            labels = term_labels(fit.attrs[first], fit.factors)
            cols = term_columns(fit.attrs[first])
            usable = list(range(len(cols)))
            lmats = [selection_matrix(c, p) for c in cols]
        for i in index:
            rows[int(i)] = labels
        if not lmats:
            continue
        if test == "KR":
            table = _kr(fit, index, lmats, chunk_size)
        elif test == "TypeI" and contrasts is None:
            table = _type1(beta, vb, cols)
        else:
            table = np.stack([_wald(beta, vb, lm) for lm in lmats], axis=1)
        values[np.ix_(index, usable)] = table
    if skipped:
        warnings.warn(
            f"anova_test: {skipped} test(s) were not performed (NaN) because the combination's width "
            "does not match the model's number of coefficients",
            stacklevel=2,
        )
    return AnovaResult(list(fit.names), rows, list(columns), values, test)


__all__ = ["AnovaResult", "anova_test"]
