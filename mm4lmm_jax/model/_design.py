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
from functools import lru_cache

import numpy as np
import pandas as pd

from .._precision import check_float32_rounding
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


def _parse_part(part: str) -> tuple[str, str]:
    """formulaic ``Trial[T.Trial2]`` / ``N[n0]`` / ``x`` -> (variable, R's label ``TrialTrial2``,
    ``Nn0``, ``x``)."""
    m = re.fullmatch(r"(.+?)\[(?:T\.)?(.*)\]", part)
    return (m.group(1), m.group(1) + m.group(2)) if m else (part, part)


def _r_column_name(col: str, var_order: dict[str, int]) -> str:
    """formulaic ``Trial[T.Trial2]:x`` -> R ``TrialTrial2:x`` (variables in formula order)."""
    if col == "Intercept":
        return "(Intercept)"
    parts = sorted((_parse_part(p) for p in col.split(":")), key=lambda t: var_order.get(t[0], len(var_order)))
    return ":".join(label for _, label in parts)


def _mentions(name: str, text: str) -> re.Match | None:
    """Where ``name`` first stands in ``text`` as a whole identifier (not inside another)."""
    return re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w.])", text)


@lru_cache(maxsize=64)
def _variable_order(formula: str) -> dict[str, int]:
    """Each variable's rank of first appearance in the formula's right-hand side (R orders
    the variables of an interaction, in its label and its columns, this way)."""
    import formulaic

    rhs = formula.split("~", 1)[-1]
    found = {}
    for term in formulaic.Formula("~ " + rhs if rhs.strip() else "~ 1"):
        for factor in term.factors:
            name = str(factor)
            hit = _mentions(name, rhs)
            found.setdefault(name, hit.start() if hit else len(rhs))
    return {name: rank for rank, name in enumerate(sorted(found, key=found.get))}


@lru_cache(maxsize=64)
def _term_labeller(formula: str):
    """A function giving a formulaic term its label: as the user wrote it where the formula
    names that term explicitly (``Xeffect:Trial``, as MM4LMM reports it), else R's label
    (variables in order of first appearance: ``N*V`` gives ``N:V``)."""
    var_order = _variable_order(formula)
    rhs = formula.split("~", 1)[-1]
    written = {}
    for piece in rhs.split("+"):
        piece = piece.strip()
        if piece and re.fullmatch(r"[\w.]+(\s*:\s*[\w.]+)*", piece):
            written.setdefault(frozenset(v.strip() for v in piece.split(":")), re.sub(r"\s+", "", piece))

    def label(term) -> str:
        names = [str(f) for f in term.factors]
        return written.get(frozenset(names)) or ":".join(sorted(names, key=lambda v: var_order.get(v, len(var_order))))

    return label


def _split_terms(formula: str) -> list[str]:
    """R's term labels of a formula's right-hand side, expanded (``N*V`` -> ``N``, ``V``,
    ``N:V``; ``a/b`` -> ``a``, ``a:b``; ``-`` removes), in R's order (by degree, then as
    written), variables of an interaction in order of first appearance; ``"0"`` first when
    the intercept is removed."""
    import formulaic

    rhs = formula.split("~", 1)[-1]
    try:
        terms = list(formulaic.Formula("~ " + rhs))
    except Exception as exc:  # formulaic raises many types; name the formula
        raise ValueError(f"could not parse formula {formula!r}: {exc}") from None
    label = _term_labeller(formula)
    labels = [label(t) for t in terms if str(t) != "1"]
    return labels if any(str(t) == "1" for t in terms) else ["0", *labels]


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


def _model_matrix(frame: pd.DataFrame, formula: str) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """The design of ``formula`` as R's ``model.matrix`` lays it out: matrix, column names,
    each column's term (0 = intercept) and the term labels.  Terms in R's order, each
    interaction's variables in order of first appearance and its columns with the first
    variable varying fastest."""
    import formulaic

    _warn_ordered(frame, formula)
    try:
        mm = formulaic.model_matrix(formula, frame, na_action="raise")
    except Exception as exc:  # formulaic raises many types; name the formula
        raise ValueError(f"could not build the design for formula {formula!r}: {exc}") from None
    var_order = _variable_order(formula)
    label = _term_labeller(formula)
    columns = list(mm.columns)
    order: list[int] = []
    attr: list[int] = []
    labels: list[str] = []
    for struct in mm.model_spec.structure:
        idx = [columns.index(c) for c in struct.columns]
        if str(struct.term) == "1":
            order += idx
            attr += [0] * len(idx)
            continue
        labels.append(label(struct.term))
        parts = [dict(_parse_part(p) for p in columns[i].split(":")) for i in idx]
        variables = sorted(parts[0], key=lambda v: var_order.get(v, len(var_order))) if parts else []
        levels = {v: list(dict.fromkeys(pp[v] for pp in parts)) for v in variables}
        keys = [tuple(levels[v].index(pp[v]) for v in reversed(variables)) for pp in parts]
        order += [i for _, i in sorted(zip(keys, idx))]
        attr += [len(labels)] * len(idx)
    names = [_r_column_name(columns[i], var_order) for i in order]
    attr_arr = np.asarray(attr, dtype=int)
    return np.asarray(mm, dtype=float)[:, order], names, attr_arr, labels


def _warn_ordered(frame: pd.DataFrame, formula: str) -> None:
    """Ordered factors are coded like unordered ones (treatment contrasts); R would use
    polynomial contrasts: the tests of the term are the same, the coefficients differ."""
    ordered = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype) and frame[c].cat.ordered]
    used = [c for c in ordered if _mentions(str(c), formula)]
    if used:
        warnings.warn(
            f"ordered factor(s) {used} are coded with treatment contrasts, as unordered factors (R uses "
            "polynomial contrasts): the tests of their terms are the same as R's, their coefficients are not",
            UserWarning,
            stacklevel=5,
        )


def _design(frame: pd.DataFrame, formula: str) -> Design:
    """The design of ``formula`` (aliased columns dropped as R's ``qr`` pivots them); its
    ``factors`` are the design's own term labels."""
    mat, names, attr, labels = _model_matrix(frame, formula)
    if not np.isfinite(mat).all():
        raise ValueError("the fixed-effect design contains NaN or infinite values")
    drop = aliased_columns(mat)
    return Design(
        mat[:, ~drop],
        [nm for nm, d in zip(names, drop) if not d],
        attr[~drop],
        labels,
        [nm for nm, d in zip(names, drop) if d],
    )


# ------------------------------------------------------------------------ cofactors


@dataclass(frozen=True)
class CofactorSpec:
    """The cofactor data frame and the formulas built from it (MM4LMM's rules)."""

    frame: pd.DataFrame
    names: list[str]
    formula: str | None
    #: no cofactor was given: ``V1`` is MM4LMM's column of ones, dropped silently
    implicit: bool = False


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
    if isinstance(cofactor, pd.DataFrame):
        given = [cofactor[c].to_numpy() for c in cofactor.columns]
    elif isinstance(cofactor, pd.Series):
        given = [cofactor.to_numpy()]
    else:
        arr = np.asarray(cofactor) if cofactor is not None else np.empty((n, 0))
        given = list(arr.reshape(n, -1).T)
    for col, values in zip(frame.columns, given):  # the values as given, before any cast
        check_float32_rounding(values, str(col), "cofactor", stacklevel=4)
    for col in frame.columns:
        s = frame[col]
        if s.isna().any():
            raise ValueError(f"cofactor column {col!r} has missing values; drop those individuals first")
        if s.dtype.kind in "fc" and not np.isfinite(s.to_numpy()).all():
            raise ValueError(f"cofactor column {col!r} has infinite values")
    return CofactorSpec(frame, list(frame.columns), formula, implicit=cofactor is None)


def null_design(spec: CofactorSpec, x_terms: Sequence[str] = ()) -> Design:
    """The cofactor-only design (MM4LMM's ``formulaCof``); rank deficiency is an error,
    except cofactor columns constant like the intercept, dropped as MM4LMM does (with a warning)."""
    if spec.formula is None:
        factors = list(spec.names)
        formula = "~ " + " + ".join(factors)
    else:
        factors = _split_terms(spec.formula)
        cof_terms = [t for t in factors if not any(x in t for x in x_terms) and XNAME not in t]
        formula = "~ " + (" + ".join(cof_terms) if cof_terms else "1")
    d = _design(spec.frame, formula)
    bad = [nm for nm in d.dropped if nm != "(Intercept)" and not _is_constant(spec.frame, nm)]
    if bad:
        raise ValueError(
            f"the fixed-effect design ({d.matrix.shape[0]}x{d.matrix.shape[1] + len(d.dropped)}) "
            f"is rank-deficient: column(s) {bad} are linear combinations of the others; remove them"
        )
    constant = [nm for nm in d.dropped if nm != "(Intercept)" and _is_constant(spec.frame, nm)]
    if constant and not spec.implicit:
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
        values = arr.astype(float, copy=False) if numeric else arr.astype(str).astype(object)
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
        d = _design(frame, "~ " + " + ".join(terms))
        if d.dropped and any(XNAME in nm for nm in d.dropped):
            _warn_dropped(name, d.dropped)
        designs.append(d)
    return MarkerDesigns(names=names, designs=designs)


def _relabelled(d: Design, labels: list[str]) -> Design:
    """``d`` with its terms numbered as in ``labels`` (the full model's term labels)."""
    attr = np.array([0 if a == 0 else labels.index(d.factors[a - 1]) + 1 for a in d.attr], dtype=int)
    return Design(d.matrix, d.names, attr, labels, d.dropped)


def _appended(values: np.ndarray, names: list[str], spec: CofactorSpec, terms: list[str]) -> MarkerDesigns:
    # R's term order of the full model (by degree, then as written): the null design's terms
    # are renumbered into it
    full_order = _split_terms("~ " + " + ".join(terms))
    labels = [t for t in full_order if t != "0"]
    base = _relabelled(null_design(spec, (XNAME,)), labels)
    q, _ = np.linalg.qr(base.matrix)
    # |residual|^2 = |x|^2 - |Q'x|^2 without an (n, m) residual; the columns near the
    # threshold, where that difference loses digits, are checked on their residual itself
    sq = np.einsum("ij,ij->j", values, values)
    proj = q.T @ values
    approx = np.clip(sq - np.einsum("ij,ij->j", proj, proj), 0.0, None)
    alias = approx <= (1e4 * ALIAS_TOL) ** 2 * sq
    if alias.any():
        near = values[:, alias]
        exact = np.linalg.norm(near - q @ (q.T @ near), axis=0) <= ALIAS_TOL * np.linalg.norm(near, axis=0)
        alias[np.where(alias)[0]] = exact
    for j in np.where(alias)[0]:
        _warn_dropped(names[j], [XNAME])
    # our own copy (the caller may change ``x`` later), contiguous as given: (m, n, 1) is a
    # view of it, so the fitters' slabs (n, k) read contiguous rows
    extra = np.array(values, dtype=float, order="C").T[:, :, None]
    x_attr = labels.index(XNAME) + 1
    if alias.any():
        return _per_model_from_appended(base, extra, names, alias, x_attr)
    return MarkerDesigns(names=names, base=base, extra=extra, extra_names=[XNAME], extra_attr=np.array([x_attr]))


def _per_model_from_appended(base: Design, extra, names, alias, x_attr: int) -> MarkerDesigns:
    designs = []
    for j in range(len(names)):
        if alias[j]:
            designs.append(Design(base.matrix, base.names, base.attr, base.factors, [XNAME]))
        else:
            designs.append(
                Design(
                    np.column_stack([base.matrix, extra[j]]),
                    [*base.names, XNAME],
                    np.append(base.attr, x_attr),
                    base.factors,
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
        if cols is None:  # unnamed: the first element's names where the widths agree
            same = first_cols is not None and len(first_cols) == arr.shape[1]
            cols = first_cols if same else [f"X{j + 1}" for j in range(arr.shape[1])]
        first_cols = first_cols or cols
        if arr.dtype.kind in "fiub" and not np.isfinite(arr.astype(float)).all():
            raise ValueError(f"x[{name!r}] has NaN or infinite values")
        frame = spec.frame.copy()
        for c, j in zip(cols, range(arr.shape[1])):
            frame[c] = arr[:, j]
        terms = _split_terms(spec.formula) if spec.formula else [*spec.names, *cols]
        d = _design(frame, "~ " + " + ".join(terms))
        if any(nm not in spec.names and nm != "(Intercept)" for nm in d.dropped):
            _warn_dropped(name, d.dropped)
        designs.append(d)
    return MarkerDesigns(names=names, designs=designs)


__all__ = [
    "ALIAS_TOL",
    "CofactorSpec",
    "Design",
    "MarkerDesigns",
    "XNAME",
    "aliased_columns",
    "cofactor_frame",
    "marker_designs",
    "null_design",
]
