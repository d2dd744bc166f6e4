"""Linear hypotheses ``L beta = 0``: term selections (Type I / III) and user contrasts."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def term_labels(attr: np.ndarray, factors: Sequence[str]) -> list[str]:
    """Row labels of Type I / III tables: ``(Intercept)`` then the terms, in order."""
    labels = []
    for a in unique_in_order(attr):
        labels.append("(Intercept)" if a == 0 else str(factors[a - 1]))
    return labels


def unique_in_order(attr) -> list[int]:
    seen: list[int] = []
    for a in np.asarray(attr, dtype=int).ravel():
        if a not in seen:
            seen.append(int(a))
    return seen


def term_columns(attr) -> list[np.ndarray]:
    """Coefficient indices of each term (in order of first appearance)."""
    attr = np.asarray(attr, dtype=int).ravel()
    return [np.flatnonzero(attr == a) for a in unique_in_order(attr)]


def selection_matrix(columns: np.ndarray, p: int) -> np.ndarray:
    """``L`` (len(columns), p) selecting those coefficients."""
    mat = np.zeros((len(columns), p))
    mat[np.arange(len(columns)), columns] = 1.0
    return mat


def full_row_rank(mat: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Rows of ``mat`` kept greedily, in order, while they add to its rank."""
    kept: list[int] = []
    for i in range(mat.shape[0]):
        trial = mat[[*kept, i]]
        if np.linalg.matrix_rank(trial, tol=tol * max(1.0, np.abs(mat).max())) == len(kept) + 1:
            kept.append(i)
    return mat[kept]


def as_contrasts(tested_combination) -> list[tuple[str, np.ndarray]]:
    """``(name, L)`` pairs from a matrix, a list or a dict of matrices.

    A rank-deficient ``L`` is reduced to a full-row-rank one (with a warning), as MM4LMM
    does; a matrix without rows or with non-finite entries is an error.
    """
    if isinstance(tested_combination, Mapping):
        items = [(str(k), v) for k, v in tested_combination.items()]
    elif isinstance(tested_combination, (list, tuple)):
        items = [(f"C{i + 1}", v) for i, v in enumerate(tested_combination)]
    else:
        items = [("C1", tested_combination)]
    out = []
    for name, raw in items:
        arr = raw.to_numpy() if isinstance(raw, (pd.DataFrame, pd.Series)) else raw
        try:
            mat = np.atleast_2d(np.asarray(arr, dtype=float))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"tested_combination {name!r} must be a numeric matrix: {exc}") from None
        if mat.ndim != 2 or mat.shape[0] == 0 or mat.shape[1] == 0:
            raise ValueError(f"tested_combination {name!r} must be a non-empty (r, p) matrix, got shape {mat.shape}")
        if not np.isfinite(mat).all():
            raise ValueError(f"tested_combination {name!r} has non-finite entries")
        reduced = full_row_rank(mat)
        if reduced.shape[0] == 0:
            raise ValueError(f"tested_combination {name!r} is all zeros")
        if reduced.shape[0] < mat.shape[0]:
            warnings.warn(
                f"tested_combination {name!r} ({mat.shape[0]} rows) has rank {reduced.shape[0]}: "
                "it was reduced to its first linearly independent rows",
                stacklevel=3,
            )
        out.append((name, reduced))
    return out


__all__ = ["as_contrasts", "full_row_rank", "selection_matrix", "term_columns", "term_labels"]
