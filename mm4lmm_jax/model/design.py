"""Fixed-effect designs, named as MM4LMM (R's ``model.matrix``) names them.

The only module that imports :mod:`formulaic`.  It turns ``cofactor`` / ``formula`` / ``x``
into numeric matrices, coefficient names (``(Intercept)``, ``V1Trial2``, ``Xeffect``,
``TrialTrial2:Xeffect11``), the term of each coefficient (``attr``, 0 = intercept) and
the term labels (``factors``), and drops aliased columns the way R's ``qr`` pivots them.

Two shapes of marker models:

* *appended*: a numeric marker matrix whose only term is ``Xeffect`` (or a list of
  numeric matrices added as main effects): every model is ``[null design | marker
  columns]``, kept as one shared ``(n, p0)`` matrix plus ``(m, n, p1)`` marker columns,
  so that scans of many markers never build ``m`` designs;
* *per model*: formulas with marker interactions or character markers: one design each.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import RankDeficiencyWarning

XNAME = "Xeffect"
ALIAS_TOL = 1e-7  # R's qr() tolerance


@dataclass(frozen=True)
class Design:
    """One fixed-effect design: ``matrix`` (n, p), ``names`` (p,), ``attr`` (p,) term index
    of each column (0 = intercept), ``factors`` term labels, ``dropped`` aliased columns."""

    matrix: np.ndarray
    names: list[str]
    attr: np.ndarray
    factors: list[str]
    dropped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MarkerDesigns:
    """The marker models' designs, in model order.

    Appended form: ``extra`` (m, n, p1) columns added to ``base``; ``extra_names`` (p1,).
    Per-model form: ``designs`` a list of :class:`Design` (``extra`` is None).
    ``names`` the model names.
    """

    names: list[str]
    base: Design | None = None
    extra: np.ndarray | None = None
    extra_names: list[str] | None = None
    extra_attr: np.ndarray | None = None
    designs: list[Design] | None = None

    def __len__(self) -> int:
        return len(self.names)


# ------------------------------------------------------------------------ helpers


def _clean_name(name: str) -> str:
    """MM4LMM strips punctuation and spaces from matrix column names."""
    return re.sub(r"[^\w]|_", "", str(name)) or "V"


def _r_column_name(col: str, var_order: dict[str, int]) -> str:
    """formulaic ``Trial[T.Trial2]:x`` -> R ``TrialTrial2:x`` (variables in formula order)."""
    if col == "Intercept":
        return "(Intercept)"
    parts = col.split(":")
    renamed = []
    for part in parts:
        m = re.fullmatch(r"(.+?)\[T\.(.*)\]", part)
        var, label = (m.group(1), m.group(1) + m.group(2)) if m else (part, part)
        renamed.append((var_order.get(var, len(var_order)), label))
    renamed.sort(key=lambda t: t[0])
    return ":".join(label for _, label in renamed)


def _split_terms(formula: str) -> list[str]:
    rhs = formula.split("~", 1)[-1]
    return [t.strip() for t in rhs.split("+") if t.strip()]


def aliased_columns(mat: np.ndarray, tol: float = ALIAS_TOL) -> np.ndarray:
    """Boolean mask of the columns R's ``qr()`` would pivot out (linearly dependent on the
    columns before them, relative tolerance ``tol``)."""
    n, p = mat.shape
    drop = np.zeros(p, dtype=bool)
    basis = np.zeros((n, 0))
    for j in range(p):
        col = mat[:, j]
        norm = np.linalg.norm(col)
        resid = col - basis @ (basis.T @ col) if basis.shape[1] else col
        rnorm = np.linalg.norm(resid)
        if norm == 0 or rnorm <= tol * norm:
            drop[j] = True
        else:
            basis = np.column_stack([basis, resid / rnorm])
    return drop


def _model_matrix(frame: pd.DataFrame, formula: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    import formulaic

    try:
        mm = formulaic.model_matrix(formula, frame, na_action="raise")
    except Exception as exc:  # formulaic raises many types; name the formula
        raise ValueError(f"could not build the design for formula {formula!r}: {exc}") from None
    var_order = {}
    for term in _split_terms(formula):
        for var in term.split(":"):
            var_order.setdefault(var.strip(), len(var_order))
    names = [_r_column_name(c, var_order) for c in mm.columns]
    attr = np.zeros(len(names), dtype=int)
    for t_idx, struct in enumerate(mm.model_spec.structure):
        for c in struct.columns:
            attr[list(mm.columns).index(c)] = t_idx if str(struct.term) != "1" else 0
    has_intercept = any(str(s.term) == "1" for s in mm.model_spec.structure)
    if not has_intercept:
        attr = attr + 1
    return np.asarray(mm, dtype=float), names, attr


def _design(frame: pd.DataFrame, formula: str, factors: list[str]) -> Design:
    mat, names, attr = _model_matrix(frame, formula)
    if not np.isfinite(mat).all():
        raise ValueError("the fixed-effect design contains NaN or infinite values")
    drop = aliased_columns(mat)
    return Design(
        mat[:, ~drop],
        [nm for nm, d in zip(names, drop) if not d],
        attr[~drop],
        factors,
        [nm for nm, d in zip(names, drop) if d],
    )


# ------------------------------------------------------------------------ cofactors


@dataclass(frozen=True)
class CofactorSpec:
    """The cofactor data frame and the formulas built from it (MM4LMM's rules)."""

    frame: pd.DataFrame
    names: list[str]
    formula: str | None


def cofactor_frame(cofactor, n: int, formula: str | None) -> CofactorSpec:
    """Cofactor as a data frame named as MM4LMM names it (``V1``... for a bare matrix)."""
    if cofactor is None:
        frame = pd.DataFrame({"V1": np.ones(n)})
    elif isinstance(cofactor, pd.DataFrame):
        frame = cofactor.reset_index(drop=True).copy()
        frame.columns = [str(c) for c in frame.columns]
    elif isinstance(cofactor, pd.Series):
        frame = pd.DataFrame({_clean_name(cofactor.name or "V1"): cofactor.to_numpy()})
    else:
        arr = np.asarray(cofactor)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"cofactor must be a matrix or a DataFrame, got shape {arr.shape}")
        frame = pd.DataFrame(arr, columns=[f"V{j + 1}" for j in range(arr.shape[1])])
        if arr.dtype.kind in "fiub":
            frame = frame.astype(float)
    if len(frame) != n:
        raise ValueError(f"cofactor has {len(frame)} rows but y has {n} observations")
    for col in frame.columns:
        s = frame[col]
        if s.isna().any():
            raise ValueError(f"cofactor column {col!r} has missing values; drop those individuals first")
        if s.dtype.kind in "fc" and not np.isfinite(s.to_numpy()).all():
            raise ValueError(f"cofactor column {col!r} has infinite values")
    return CofactorSpec(frame, list(frame.columns), formula)


def null_design(spec: CofactorSpec, x_terms: Sequence[str] = ()) -> Design:
    """The cofactor-only design (MM4LMM's ``formulaCof``); rank deficiency is an error,
    except cofactor columns constant like the intercept, which MM4LMM drops silently."""
    if spec.formula is None:
        factors = list(spec.names)
        formula = "~ " + " + ".join(factors)
    else:
        factors = _split_terms(spec.formula)
        cof_terms = [t for t in factors if not any(x in t for x in x_terms) and XNAME not in t]
        formula = "~ " + (" + ".join(cof_terms) if cof_terms else "1")
    d = _design(spec.frame, formula, factors)
    bad = [nm for nm in d.dropped if nm != "(Intercept)" and not _is_constant(spec.frame, nm)]
    if bad:
        raise ValueError(
            f"the fixed-effect design ({d.matrix.shape[0]}x{d.matrix.shape[1] + len(d.dropped)}) "
            f"is rank-deficient: column(s) {bad} are linear combinations of the others; remove them"
        )
    constant = [nm for nm in d.dropped if nm != "(Intercept)" and _is_constant(spec.frame, nm)]
    if constant:
        warnings.warn(
            f"cofactor column(s) {constant} are constant, hence aliased with the intercept, and were dropped "
            "(as MM4LMM does)",
            RankDeficiencyWarning,
            stacklevel=4,
        )
    return d


def _is_constant(frame: pd.DataFrame, name: str) -> bool:
    return name in frame.columns and frame[name].nunique() <= 1


# --------------------------------------------------------------------------- markers


def _warn_dropped(model: str, dropped: list[str]) -> None:
    warnings.warn(
        f"model {model!r}: column(s) {dropped} are aliased with the others and were dropped (as MM4LMM does)",
        RankDeficiencyWarning,
        stacklevel=4,
    )


def marker_designs(x, spec: CofactorSpec, n: int) -> MarkerDesigns:
    """Designs of the marker models described by ``x`` (see :func:`mmest`)."""
    if isinstance(x, Mapping) or (isinstance(x, Sequence) and not isinstance(x, (str, bytes))):
        return _list_designs(x, spec, n)
    if isinstance(x, pd.Series):
        x = x.to_frame()
    if isinstance(x, pd.DataFrame):
        names = [str(c) for c in x.columns]
        numeric = all(x[c].dtype.kind in "fiub" for c in x.columns)
        values = x.to_numpy(dtype=float) if numeric else x.to_numpy(dtype=object)
    else:
        arr = np.asarray(x)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"x must be a matrix (n x markers), got shape {arr.shape}")
        numeric = arr.dtype.kind in "fiub"
        values = arr.astype(float) if numeric else arr.astype(str).astype(object)
        names = [f"X{j + 1}" for j in range(arr.shape[1])]
    if values.shape[0] != n:
        raise ValueError(f"x has {values.shape[0]} rows but y has {n} observations")
    if numeric and not np.isfinite(values).all():
        bad = [names[j] for j in np.where(~np.isfinite(values).all(axis=0))[0][:5]]
        raise ValueError(f"x has NaN or infinite values (markers {bad}...); impute them first")
    terms = _split_terms(spec.formula) if spec.formula else [*spec.names, XNAME]
    x_terms = [t for t in terms if XNAME in t]
    if numeric and x_terms == [XNAME]:
        return _appended(values, names, spec, terms)
    designs = []
    for j, name in enumerate(names):
        frame = spec.frame.copy()
        frame[XNAME] = values[:, j]
        d = _design(frame, "~ " + " + ".join(terms), terms)
        if d.dropped and any(XNAME in nm for nm in d.dropped):
            _warn_dropped(name, d.dropped)
        designs.append(d)
    return MarkerDesigns(names=names, designs=designs)


def _appended(values: np.ndarray, names: list[str], spec: CofactorSpec, terms: list[str]) -> MarkerDesigns:
    base = null_design(spec, (XNAME,))
    base = Design(base.matrix, base.names, base.attr, terms, base.dropped)
    q, _ = np.linalg.qr(base.matrix)
    resid = values - q @ (q.T @ values)
    alias = np.linalg.norm(resid, axis=0) <= ALIAS_TOL * np.linalg.norm(values, axis=0)
    for j in np.where(alias)[0]:
        _warn_dropped(names[j], [XNAME])
    extra = values.T[:, :, None].copy()
    if alias.any():
        return _per_model_from_appended(base, extra, names, alias, terms)
    return MarkerDesigns(
        names=names,
        base=base,
        extra=extra,
        extra_names=[XNAME],
        extra_attr=np.array([terms.index(XNAME) + 1]),
    )


def _per_model_from_appended(base, extra, names, alias, terms) -> MarkerDesigns:
    designs = []
    for j in range(len(names)):
        if alias[j]:
            designs.append(Design(base.matrix, base.names, base.attr, terms, [XNAME]))
        else:
            designs.append(
                Design(
                    np.column_stack([base.matrix, extra[j]]),
                    [*base.names, XNAME],
                    np.append(base.attr, terms.index(XNAME) + 1),
                    terms,
                )
            )
    return MarkerDesigns(names=names, designs=designs)


def _list_designs(x, spec: CofactorSpec, n: int) -> MarkerDesigns:
    if isinstance(x, Mapping):
        names, mats = [str(k) for k in x], list(x.values())
    else:
        names, mats = [f"X{j + 1}" for j in range(len(x))], list(x)
    if not mats:
        raise ValueError("x is an empty list")
    designs = []
    first_cols = None
    for name, m in zip(names, mats):
        if isinstance(m, pd.DataFrame):
            cols = [_clean_name(c) for c in m.columns]
            arr = m.to_numpy()
        else:
            arr = np.asarray(m)
            if arr.ndim == 1:
                arr = arr[:, None]
            cols = None
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ValueError(f"x[{name!r}] has shape {arr.shape}; expected ({n}, k)")
        if cols is None:
            cols = first_cols or [f"X{j + 1}" for j in range(arr.shape[1])]
        first_cols = first_cols or cols
        if arr.dtype.kind in "fiub" and not np.isfinite(arr.astype(float)).all():
            raise ValueError(f"x[{name!r}] has NaN or infinite values")
        frame = spec.frame.copy()
        for c, j in zip(cols, range(arr.shape[1])):
            frame[c] = arr[:, j]
        terms = _split_terms(spec.formula) if spec.formula else [*spec.names, *cols]
        d = _design(frame, "~ " + " + ".join(terms), terms)
        if any(nm not in spec.names and nm != "(Intercept)" for nm in d.dropped):
            _warn_dropped(name, d.dropped)
        designs.append(d)
    return MarkerDesigns(names=names, designs=designs)
