"""Result objects of :func:`mmest`: labelled views over stacked arrays.

:class:`MMEstResult` keeps every model's estimates as stacked NumPy arrays (cheap for
scans of 10^5 markers) and builds a labelled :class:`ModelFit` only when one is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .inference._summary import summarize


@dataclass(frozen=True, eq=False)
class ModelFit:
    """One fitted model (MM4LMM's per-model list element).

    Attributes
    ----------
    name : model name (marker / list element name, or ``"NullModel"``).
    beta : pandas Series of fixed effects, named as MM4LMM names them.
    sigma2 : pandas Series of variance components, by component name.
    var_beta : pandas DataFrame (p x p), ``(X' V^-1 X)^-1`` at ``sigma2``.
    loglik : full log-likelihood (ReML or ML, with its ``2 pi`` constant, as lme4).
    loglik_mm4lmm : MM4LMM's reported value (ReML without ``(n-p)/2 log 2 pi``).
    n_iter : MM iterations (MM4LMM's ``NbIt``).  converged : stopping rule met.
    method : ``"reml"`` or ``"ml"``.  n_obs : observations used.
    attr : term index of each coefficient (0 = intercept).  factors : term labels.
    source, position : the :class:`MMEstResult` this model comes from and its index there
    (used by :meth:`summary` for the variance components' standard errors).
    """

    name: str
    beta: pd.Series
    sigma2: pd.Series
    var_beta: pd.DataFrame
    loglik: float
    loglik_mm4lmm: float
    n_iter: int
    converged: bool
    method: str
    n_obs: int
    attr: np.ndarray
    factors: list[str]
    source: Any = field(default=None, repr=False, compare=False)
    position: int = 0

    def summary(self):
        """A readable summary (estimates, SEs, Wald tests, variance components with SEs,
        log-likelihood, AIC/BIC, iterations, convergence); ``print()`` it."""
        return summarize(self)

    @property
    def se(self) -> pd.Series:
        """Standard errors of ``beta``."""
        return pd.Series(np.sqrt(np.diag(self.var_beta.to_numpy())), index=self.beta.index, name="se")

    def __repr__(self) -> str:
        return (
            f"ModelFit({self.name!r}, method={self.method!r}, loglik={self.loglik:.6g}, "
            f"sigma2={ {k: round(float(v), 6) for k, v in self.sigma2.items()} }, "
            f"n_iter={self.n_iter}, converged={self.converged})"
        )


@dataclass(frozen=True, eq=False)
class MMEstResult(Sequence):
    """All fitted models of one :func:`mmest` call, in model order.

    Index by position (``res[0]``) or by model name (``res["SNP1"]``); iterate over
    :class:`ModelFit`.  Stacked arrays for scans: ``sigma2_array`` (m, K), ``beta_array``
    (m, p_max) (NaN where a model has fewer coefficients), ``var_beta_array``
    (m, p_max, p_max), ``loglik_array`` (m,), ``n_iter_array`` (m,), ``converged_array`` (m,).
    ``structure`` the covariance structure of the fit (``"single"``, ``"rotated"``,
    ``"henderson"`` or ``"dense"``; ``path`` is its former name); ``algorithm`` ``"mm"`` or
    ``"newton"``; ``status_array`` (m,) each model's :class:`~mm4lmm_jax.core._iterate.Status`
    code (``converged_array`` is ``status == OK``).
    """

    names: list[str]
    component_names: list[str]
    coef_names: list[list[str]]
    sigma2_array: np.ndarray
    beta_array: np.ndarray
    var_beta_array: np.ndarray
    loglik_array: np.ndarray
    loglik_mm4lmm_array: np.ndarray
    n_iter_array: np.ndarray
    converged_array: np.ndarray
    method: str
    n_obs: int
    attrs: list[np.ndarray]
    factors: list[str]
    structure: str
    problem: Any = field(default=None, repr=False, compare=False)
    algorithm: str = "mm"
    status_array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def _index(self, key) -> int:
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"model {i} out of range ({len(self)} models)")
            return i % len(self)
        try:
            return self.names.index(str(key))
        except ValueError:
            raise KeyError(f"no model named {key!r}; models are {self.names[:5]}...") from None

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        i = self._index(key)
        names = self.coef_names[i]
        p = len(names)
        return ModelFit(
            name=self.names[i],
            beta=pd.Series(self.beta_array[i, :p], index=names, name="beta"),
            sigma2=pd.Series(self.sigma2_array[i], index=self.component_names, name="sigma2"),
            var_beta=pd.DataFrame(self.var_beta_array[i, :p, :p], index=names, columns=names),
            loglik=float(self.loglik_array[i]),
            loglik_mm4lmm=float(self.loglik_mm4lmm_array[i]),
            n_iter=int(self.n_iter_array[i]),
            converged=bool(self.converged_array[i]),
            method=self.method,
            n_obs=self.n_obs,
            attr=self.attrs[i],
            factors=self.factors,
            source=self,
            position=i,
        )

    @property
    def path(self) -> str:
        """Former name of :attr:`structure` (kept for code written against earlier versions)."""
        return self.structure

    def keys(self) -> list[str]:
        return list(self.names)

    def to_frame(self) -> pd.DataFrame:
        """One row per model: variance components, coefficients and their SEs,
        log-likelihoods, iterations and convergence (columns ``beta[name]``, ``se[name]``)."""
        out = {f"sigma2[{c}]": self.sigma2_array[:, k] for k, c in enumerate(self.component_names)}
        all_names: list[str] = []
        for names in self.coef_names:
            all_names.extend(nm for nm in names if nm not in all_names)
        m = len(self)
        index_of = {}
        for i, names in enumerate(self.coef_names):
            index_of.setdefault(tuple(names), []).append(i)
        se_all = np.sqrt(np.diagonal(self.var_beta_array, axis1=1, axis2=2))
        for nm in all_names:
            b = np.full(m, np.nan)
            s = np.full(m, np.nan)
            for names, rows in index_of.items():
                if nm in names:
                    j = names.index(nm)
                    b[rows] = self.beta_array[rows, j]
                    s[rows] = se_all[rows, j]
            out[f"beta[{nm}]"] = b
            out[f"se[{nm}]"] = s
        out.update(
            loglik=self.loglik_array,
            loglik_mm4lmm=self.loglik_mm4lmm_array,
            n_iter=self.n_iter_array,
            converged=self.converged_array,
        )
        return pd.DataFrame(out, index=pd.Index(self.names, name="model"))

    def __repr__(self) -> str:
        return (
            f"MMEstResult({len(self)} model(s), method={self.method!r}, structure={self.structure!r}, "
            f"components={self.component_names}, converged={int(self.converged_array.sum())}/{len(self)})"
        )


__all__ = [
    "MMEstResult",
    "ModelFit",
]
