"""Likelihood-ratio tests between nested fits (beyond MM4LMM).

* Fixed effects (same variance components, the null's coefficients a subset of the
  alternative's): ML fits only -- ReML likelihoods of different fixed effects are not
  comparable.  ``stat ~ chi2(df)``, ``df`` = number of added coefficients.
* Variance components (same fixed effects, the null's components a subset): ReML or ML.
  The null puts the added variances on the boundary (0), so the reference distribution
  is the 50:50 mixture of ``chi2(df - 1)`` and ``chi2(df)`` (Self & Liang 1987; Stram &
  Lee 1994) -- exact for one added component, the usual approximation for more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._fitted import FittedModel, FittedModels
from ._wald import chi2_sf


def _as_table(fit, role: str):
    """(names, coef names, component names, loglik (m,), method, n_obs, y or None)."""
    if isinstance(fit, FittedModel):
        return [fit.name], [list(fit.beta.index)], list(fit.sigma2.index), np.array([fit.loglik]), fit.method, fit.n_obs
    if isinstance(fit, FittedModels):
        return list(fit.names), fit.coef_names, list(fit.component_names), fit.loglik_array, fit.method, fit.n_obs
    raise TypeError(f"{role} must be a ModelFit or an MMEstResult, got {type(fit).__name__}")


def _same_data(null, alt) -> bool:
    if isinstance(null, FittedModels) and isinstance(alt, FittedModels):
        a, b = null.problem, alt.problem
        if a is not None and b is not None:
            return a.y.shape == b.y.shape and np.allclose(a.y, b.y, rtol=1e-12, atol=0)
    return True


def boundary_mixture_sf(stat, df: int):
    """``P(X > stat)`` for ``X ~ 1/2 chi2(df - 1) + 1/2 chi2(df)`` (``chi2(0)`` = point mass 0)."""
    stat = np.asarray(stat, dtype=float)
    upper = np.asarray(chi2_sf(stat, df))
    lower = np.asarray(chi2_sf(stat, df - 1)) if df > 1 else np.where(stat > 0, 0.0, 1.0)
    return 0.5 * upper + 0.5 * lower


def likelihood_ratio_test(null, alt) -> pd.DataFrame:
    """Likelihood-ratio test of ``null`` within ``alt``.

    Parameters
    ----------
    null, alt : :class:`ModelFit` or :class:`MMEstResult` on the same observations.  An
        ``alt`` result with ``m`` models (e.g. a marker scan fitted by ML) is tested model
        by model against one null model (or against ``m`` null models).

    Returns
    -------
    DataFrame
        One row per alternative model: ``loglik_null``, ``loglik_alt``, ``stat``
        (``2 (l_alt - l_null)``, floored at 0), ``df``, ``pval`` and ``test``
        (``"fixed"`` or ``"variance (boundary mixture)"``).
    """
    n_names, n_coefs, n_comps, n_ll, n_method, n_obs0 = _as_table(null, "null")
    a_names, a_coefs, a_comps, a_ll, a_method, n_obs1 = _as_table(alt, "alt")
    if n_method != a_method:
        raise ValueError(f"both fits must use the same method, got {n_method!r} and {a_method!r}")
    if n_obs0 != n_obs1 or not _same_data(null, alt):
        raise ValueError("the two fits were not computed on the same observations")
    if len(n_ll) not in (1, len(a_ll)):
        raise ValueError(f"null has {len(n_ll)} models and alt {len(a_ll)}: give one null model or one per alt model")
    if not set(n_comps) <= set(a_comps):
        raise ValueError(f"null components {n_comps} are not a subset of alt components {a_comps}")
    extra_comps = len(a_comps) - len(n_comps)
    rows = []
    for j, name in enumerate(a_names):
        i = 0 if len(n_ll) == 1 else j
        nc, ac = n_coefs[i], a_coefs[j]
        if not set(nc) <= set(ac):
            raise ValueError(f"model {name!r}: null coefficients {nc} are not a subset of alt coefficients {ac}")
        extra_coefs = len(ac) - len(nc)
        stat = max(0.0, 2.0 * (float(a_ll[j]) - float(n_ll[i])))
        if extra_coefs and extra_comps:
            raise ValueError("the fits differ in both fixed effects and variance components: test one at a time")
        if extra_coefs:
            if a_method != "ml":
                raise ValueError(
                    "testing fixed effects needs ML fits (method='ml'): ReML likelihoods of different "
                    "fixed-effect designs are not comparable"
                )
            df, pval, kind = extra_coefs, float(chi2_sf(stat, extra_coefs)), "fixed"
        elif extra_comps:
            df, pval, kind = extra_comps, float(boundary_mixture_sf(stat, extra_comps)), "variance (boundary mixture)"
        else:
            raise ValueError(f"model {name!r}: the two fits have the same parameters; nothing to test")
        rows.append((name, float(n_ll[i]), float(a_ll[j]), stat, df, pval, kind))
    cols = ["model", "loglik_null", "loglik_alt", "stat", "df", "pval", "test"]
    return pd.DataFrame(rows, columns=cols).set_index("model")


__all__ = ["boundary_mixture_sf", "likelihood_ratio_test"]
