"""Eager validation of user inputs, before anything is traced.

Every check raises ``ValueError`` / ``TypeError`` naming the argument and the shapes
involved, so that a bad input never becomes a silent NaN inside a compiled loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .._precision import check_float32_rounding
from ..core._structures import is_identity
from ..errors import MissingDataWarning

METHOD_ALIASES = {"reml": "reml", "ml": "ml"}


def normalise_method(method) -> str:
    """Accept ``"reml"``/``"ml"`` in any case (MM4LMM spells them ``"Reml"``/``"ML"``)."""
    if not isinstance(method, str) or method.lower() not in METHOD_ALIASES:
        raise ValueError(f"method must be 'reml' or 'ml' (or MM4LMM's 'Reml'/'ML'), got {method!r}")
    return METHOD_ALIASES[method.lower()]


def as_response(y) -> tuple[np.ndarray, list[str] | None]:
    """``y`` as a float vector (n,) and its individual names (a Series' index), if any."""
    names = None
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise ValueError(f"y must be one column, got a DataFrame of shape {y.shape}")
        y = y.iloc[:, 0]
    if isinstance(y, pd.Series):
        if not isinstance(y.index, pd.RangeIndex):
            names = [str(i) for i in y.index]
        y = y.to_numpy()
    check_float32_rounding(y, "y", "response", stacklevel=4)
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"y must be numeric, got {type(y).__name__}: {exc}") from None
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {arr.shape}")
    if arr.size < 2:
        raise ValueError(f"y needs at least 2 observations, got {arr.size}")
    if np.isinf(arr).any():
        raise ValueError("y contains infinite values")
    seen = arr[~np.isnan(arr)]
    if seen.size and np.all(seen == seen[0]):
        raise ValueError(
            f"y is constant (all {seen.size} observed values equal {seen[0]:g}): there is no variance to decompose"
        )
    return arr, names


def named_list(obj, arg: str, prefix: str = "Var") -> tuple[list[str], list]:
    """A dict (keys name the items) or a list/tuple (names ``prefix1``, ...) as (names, items)."""
    if isinstance(obj, Mapping):
        return [str(k) for k in obj], list(obj.values())
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return [f"{prefix}{i + 1}" for i in range(len(obj))], list(obj)
    if isinstance(obj, np.ndarray) and obj.ndim == 3:
        return [f"{prefix}{i + 1}" for i in range(obj.shape[0])], list(obj)
    raise TypeError(f"{arg} must be a dict or a list of matrices, got {type(obj).__name__}")


def as_matrix(a, arg: str) -> np.ndarray:
    """A finite float matrix (2-D); a ``scipy.sparse`` matrix or array is made dense (the
    structures the fits use are built from it once)."""
    if isinstance(a, pd.DataFrame):
        a = a.to_numpy()
    elif hasattr(a, "toarray") and type(a).__module__.startswith("scipy.sparse"):
        a = a.toarray()
    try:
        m = np.asarray(a, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{arg} must be a numeric matrix: {exc}") from None
    if m.ndim != 2:
        raise ValueError(f"{arg} must be a 2-D matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{arg} contains NaN or infinite values (shape {m.shape})")
    return m


def check_covariance(v: np.ndarray, arg: str, tol: float = 1e-8) -> None:
    """Square, symmetric and positive semi-definite, or a ``ValueError`` naming ``arg``."""
    if v.shape[0] != v.shape[1]:
        raise ValueError(f"{arg} must be square, got shape {v.shape}")
    scale = max(np.abs(v).max(), 1e-300)
    diagonal = is_diagonal(v)
    asym = 0.0 if diagonal else np.abs(v - v.T).max()
    if asym > tol * scale:
        raise ValueError(f"{arg} ({v.shape[0]}x{v.shape[1]}) is not symmetric (max |V - V'| = {asym:.3g})")
    if diagonal:
        eig_min = np.diagonal(v).min()
    elif is_positive_definite(v + 1e-6 * scale * np.eye(v.shape[0])):  # then eig_min > -1e-6 scale
        return
    else:
        eig_min = np.linalg.eigvalsh(v).min()
    if eig_min < -1e-6 * scale:
        raise ValueError(
            f"{arg} ({v.shape[0]}x{v.shape[1]}) is not positive semi-definite (smallest eigenvalue {eig_min:.3g})"
        )


def is_diagonal(v: np.ndarray) -> bool:
    return v.shape[0] == v.shape[1] and np.count_nonzero(v) == np.count_nonzero(np.diagonal(v))


def is_positive_definite(v: np.ndarray) -> bool:
    """Symmetric part positive definite (a Cholesky factorisation succeeds)."""
    if is_diagonal(v):
        return bool(np.all(np.diagonal(v) > 0))
    try:
        np.linalg.cholesky(0.5 * (v + v.T))
        return True
    except np.linalg.LinAlgError:
        return False


@dataclass(frozen=True)
class Components:
    """Validated variance components, in the caller's order (the last one is the error).

    ``v_list[k]`` (q_k, q_k) correlation matrices; ``z_list[k]`` (n, q_k) incidence
    matrices or ``None`` for the identity; ``names`` their labels;
    ``level_names[k]`` the rows' names of ``v_list[k]`` when known.
    """

    names: list[str]
    v_list: list[np.ndarray]
    z_list: list[np.ndarray | None]
    level_names: list[list[str] | None]

    def covariances(self) -> list[np.ndarray]:
        """The ``n x n`` matrices ``Z_k R_k Z_k'`` (computed once)."""
        return list(self._covariances)

    @cached_property
    def _covariances(self) -> tuple[np.ndarray, ...]:
        return tuple(v if z is None else z @ v @ z.T for z, v in zip(self.z_list, self.v_list))

    def henderson_covariances_pd(self) -> bool:
        """Every random ``R_k`` and the last covariance positive definite (Henderson's
        equations need their inverses or Cholesky factors)."""
        return all(is_positive_definite(v) for v in self.v_list[:-1]) and is_positive_definite(self.covariances()[-1])

    def drop_rows(self, keep: np.ndarray) -> Components:
        """Remove individuals: rows of ``Z_k``, or rows and columns of ``V_k`` without ``Z``."""
        v_list, z_list, levels = [], [], []
        for z, v, lev in zip(self.z_list, self.v_list, self.level_names):
            if z is None:
                v_list.append(v[np.ix_(keep, keep)])
                z_list.append(None)
                levels.append(None if lev is None else [nm for nm, kept in zip(lev, keep) if kept])
            else:
                v_list.append(v)
                z_list.append(z[keep])
                levels.append(lev)
        return Components(self.names, v_list, z_list, levels)


def validate_components(var_list, z_list, n: int) -> Components:
    """Check ``var_list`` / ``z_list`` against ``n`` observations."""
    if var_list is None:
        raise ValueError("var_list is required: a dict or list of covariance matrices")
    names, raw_v = named_list(var_list, "var_list")
    if len(raw_v) == 0:
        raise ValueError("var_list is empty: give at least one covariance matrix")
    if z_list is None:
        raw_z = [None] * len(raw_v)
    else:
        z_names, raw_z = named_list(z_list, "z_list")
        if len(raw_z) != len(raw_v):
            raise ValueError(
                f"z_list has {len(raw_z)} elements but var_list has {len(raw_v)}: give one Z per component"
            )
        if isinstance(z_list, Mapping) and isinstance(var_list, Mapping) and z_names != names:
            raise ValueError(f"z_list keys {z_names} do not match var_list keys {names} (same order)")
    v_list, zs, levels = [], [], []
    for name, v, z in zip(names, raw_v, raw_z):
        lev = [str(i) for i in v.index] if isinstance(v, pd.DataFrame) else None
        if v is None:
            q = n if z is None else as_matrix(z, f"z_list[{name!r}]").shape[1]
            vm = np.eye(q)
        else:
            vm = as_matrix(v, f"var_list[{name!r}]")
            check_covariance(vm, f"var_list[{name!r}]")
        if z is None:
            if vm.shape[0] != n:
                raise ValueError(
                    f"var_list[{name!r}] is {vm.shape[0]}x{vm.shape[1]} but y has {n} observations "
                    "(give a z_list to map levels to observations)"
                )
            zm = None
        else:
            zm = as_matrix(z, f"z_list[{name!r}]")
            if zm.shape[0] != n:
                raise ValueError(f"z_list[{name!r}] has {zm.shape[0]} rows but y has {n} observations")
            if zm.shape[1] != vm.shape[0]:
                raise ValueError(
                    f"z_list[{name!r}] has {zm.shape[1]} columns but var_list[{name!r}] is {vm.shape[0]}x{vm.shape[1]}"
                )
            if zm.shape == vm.shape and is_identity(zm):
                zm = None
        v_list.append(vm)
        zs.append(zm)
        levels.append(lev)
    return Components(names, v_list, zs, levels)


def subset_rows(obj, keep: np.ndarray):
    """``obj`` (array, DataFrame/Series, or a list/dict of them) restricted to the rows ``keep``
    (bool (n,)); None and all-True masks return ``obj`` itself."""
    if obj is None or keep.all():
        return obj
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return obj.iloc[keep]
    if isinstance(obj, Mapping):
        return {k: subset_rows(v, keep) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return [subset_rows(v, keep) for v in obj]
    return np.asarray(obj)[keep]


def drop_missing(y: np.ndarray, what: str = "y") -> np.ndarray:
    """Boolean mask of the observations kept; warns when some are dropped."""
    keep = ~np.isnan(y)
    if not keep.all():
        warnings.warn(
            f"{int((~keep).sum())} of {y.size} observations have a missing {what} and were dropped "
            "from y, the cofactors, the markers and every covariance matrix",
            MissingDataWarning,
            stacklevel=3,
        )
    if keep.sum() < 2:
        raise ValueError(f"fewer than 2 observations left after dropping missing {what}")
    return keep


__all__ = [
    "Components",
    "METHOD_ALIASES",
    "as_matrix",
    "as_response",
    "check_covariance",
    "drop_missing",
    "is_diagonal",
    "is_positive_definite",
    "named_list",
    "normalise_method",
    "subset_rows",
    "validate_components",
]
