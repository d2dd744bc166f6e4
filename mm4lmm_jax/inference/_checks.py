"""Argument checks shared by the inference functions.

MM4LMM's ``AnovaTest``/``MMVcov``/``MMBlup`` take the data again; here the fit keeps it,
so data passed again are only compared with what the fit was computed from: a fit from
another data set is an error, never a silent wrong answer.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..model._data import as_response, subset_rows, validate_components
from ..model._design import XNAME, cofactor_frame, marker_designs, null_design
from ._fitted import FittedModels
from ._structures import model_design

_RTOL = 1e-8


def require_fit(fit, func: str) -> FittedModels:
    if not isinstance(fit, FittedModels):
        raise TypeError(f"{func}: fit must be the result of mmest (an MMEstResult), got {type(fit).__name__}")
    if fit.problem is None:
        raise ValueError(f"{func}: this result carries no data; refit it with mmest")
    return fit


def _mismatch(func: str, what: str, detail: str) -> ValueError:
    return ValueError(f"{func}: {what} does not match the data the fit was computed from ({detail})")


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=_RTOL, atol=_RTOL * max(1.0, float(np.abs(b).max(initial=0))))


def check_same_data(
    fit: FittedModels, func: str, *, y=None, cofactor=None, x=None, formula=None, var_list=None, z_list=None
) -> None:
    """Raise ``ValueError`` when any data given differ from the fit's own."""
    prob = fit.problem
    keep = prob.keep
    n_all, n = keep.size, prob.y.size
    if y is not None:
        arr, _ = as_response(y)
        if arr.size != n_all:
            raise _mismatch(func, "y", f"{arr.size} observations, the fit used {n_all}")
        if not np.array_equal(np.isnan(arr), ~keep) or not _close(arr[keep], prob.y):
            raise _mismatch(func, "y", "different values")
    if var_list is not None:
        comps = validate_components(var_list, z_list, n_all).drop_rows(keep)
        mine = prob.components.covariances()
        theirs = comps.covariances()
        if len(theirs) != len(mine):
            raise _mismatch(func, "var_list", f"{len(theirs)} components, the fit has {len(mine)}")
        for k, (a, b) in enumerate(zip(theirs, mine)):
            if not _close(a, b):
                raise _mismatch(func, "var_list", f"component {prob.components.names[k]!r} differs")
    elif z_list is not None:
        warnings.warn(f"{func}: z_list without var_list is ignored", stacklevel=3)
    if formula is not None or cofactor is not None:
        spec = cofactor_frame(subset_rows(cofactor, keep), n, _as_formula(formula))
        design = null_design(spec, (XNAME,))
        if not _close(design.matrix, prob.null.matrix):
            raise _mismatch(func, "cofactor/formula", "a different fixed-effect design")
    if x is not None:
        if prob.markers is None:
            raise _mismatch(func, "x", "the fit has no marker models")
        spec = cofactor_frame(subset_rows(cofactor, keep), n, _as_formula(formula))
        markers = marker_designs(subset_rows(x, keep), spec, n)
        if len(markers) != len(fit):
            raise _mismatch(func, "x", f"{len(markers)} models, the fit has {len(fit)}")
        for i in range(len(fit)):
            if markers.extra is not None:
                mat = np.concatenate([markers.base.matrix, markers.extra[i]], axis=1)
            else:
                mat = markers.designs[i].matrix
            if not _close(mat, model_design(fit, i)):
                raise _mismatch(func, "x", f"model {fit.names[i]!r} has a different design")


def _as_formula(formula: str | None) -> str | None:
    if formula is None:
        return None
    f = formula.strip()
    return f if f.startswith("~") else "~ " + f


__all__ = ["check_same_data", "require_fit"]
