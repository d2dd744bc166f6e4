"""Readable summaries of one fitted model, in the spirit of lme4's and statsmodels'."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._fitted import FittedModel
from ._structures import components_at_zero
from ._vcov import information_array
from ._wald import chi2_sf


@dataclass(frozen=True)
class Summary:
    """Tables of a :class:`ModelFit`: ``coefficients`` (estimate, SE, z, p), ``variance``
    (estimate, SE from the expected information, share of the total) and ``info`` (method,
    observations, log-likelihood, AIC, BIC, iterations, convergence).  ``str()`` renders them."""

    title: str
    coefficients: pd.DataFrame
    variance: pd.DataFrame
    info: dict
    notes: tuple = ()

    def __str__(self) -> str:
        width = 78
        lines = [self.title.center(width), "=" * width]
        items = list(self.info.items())
        half = (len(items) + 1) // 2
        for left, right in zip(items[:half], items[half:] + [("", "")] * (2 * half - len(items))):
            lk, lv = left
            rk, rv = right
            lines.append(f"{lk + ':':<16}{_fmt(lv):>20}    {rk + ':' if rk else '':<16}{_fmt(rv):>20}")
        lines += ["-" * width, "Fixed effects (Wald z tests):"]
        lines.append(self.coefficients.to_string(float_format=lambda v: f"{v:.6g}"))
        lines += ["-" * width, "Variance components (SE from the expected information):"]
        lines.append(self.variance.to_string(float_format=lambda v: f"{v:.6g}"))
        lines += [f"Note: {note}" for note in self.notes]
        lines.append("=" * width)
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.10g}"
    return str(v)


def summarize(fit: FittedModel) -> Summary:
    """Build the :class:`Summary` of ``fit`` (variance-component SEs need ``fit.source``)."""
    beta = fit.beta.to_numpy()
    se = fit.se.to_numpy()
    z = beta / se
    pval = np.asarray(chi2_sf(z**2, 1))
    coefs = pd.DataFrame({"estimate": beta, "se": se, "z": z, "pval": pval}, index=fit.beta.index)
    var = fit.sigma2.to_numpy()
    var_se = np.full(var.size, np.nan)
    if fit.source is not None and fit.source.problem is not None:
        info = information_array(fit.source, "expected", [fit.position])[0]
        try:
            var_se = np.sqrt(np.diag(np.linalg.inv(info)))
        except np.linalg.LinAlgError:
            pass
    variance = pd.DataFrame(
        {"estimate": var, "se": var_se, "share": var / var.sum()},
        index=fit.sigma2.index,
    )
    k_par = beta.size + var.size
    method = "ReML" if fit.method == "reml" else "ML"
    info = {
        "Model": fit.name,
        "Method": method,
        "Observations": fit.n_obs,
        "Log-likelihood": fit.loglik,
        "AIC": -2.0 * fit.loglik + 2.0 * k_par,
        "BIC": -2.0 * fit.loglik + np.log(fit.n_obs) * k_par,
        "Iterations": fit.n_iter,
        "Converged": fit.converged,
    }
    at_zero = [str(fit.sigma2.index[k]) for k in components_at_zero(var)]
    notes = ()
    if at_zero:
        info["Boundary"] = ", ".join(at_zero)
        notes = (
            f"variance component(s) {at_zero} at the boundary (estimate ~ 0): the fit is on the edge of the "
            "parameter space; their SE is not a valid measure of uncertainty there (compare models with "
            "and without them by a likelihood-ratio test)",
        )
    title = f"Linear mixed model fit by {method} (mm4lmm_jax)"
    if fit.method == "reml":
        title += "; AIC/BIC from the ReML criterion"
    return Summary(title, coefs, variance, info, notes)


__all__ = ["Summary", "summarize"]
