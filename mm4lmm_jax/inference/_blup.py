"""``mmblup``: MM4LMM's ``MMBlup`` -- best linear unbiased predictions of the random effects.

For component ``k``: ``u_k = sigma2_k R_k Z_k' V^-1 (y - X beta)`` at the fitted variance
components and fixed effects (the error component included, with ``Z = R = I``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._checks import check_same_data, require_fit
from ._fitted import FittedModels
from ._structures import model_design, structure_of


def v_inverse_times(fit: FittedModels, sigma2: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``V^-1 r`` at ``sigma2`` through the fit's covariance structure."""
    structure = structure_of(fit)
    return np.asarray(structure.v_inv_times(jnp.asarray(sigma2), jnp.asarray(r)))


def mmblup(
    y=None,
    cofactor=None,
    x=None,
    formula: str | None = None,
    z_list=None,
    var_list=None,
    fit: FittedModels | None = None,
    *,
    model: int | str = 0,
) -> dict[str, pd.Series]:
    """BLUPs of every random component (MM4LMM's ``MMBlup``).

    Parameters
    ----------
    y, cofactor, x, formula, z_list, var_list : optional, MM4LMM-style; the fit keeps its
        data and anything passed is checked against it (a different data set is a
        ``ValueError``).
    fit : the result of :func:`mmest` (required).
    model : which model of the fit (position or name; MM4LMM uses the null model, the
        first).

    Returns
    -------
    dict
        Component name -> Series of predictions in the order of that component's ``Z``
        columns (the kinship's rows), indexed by their names when known (a DataFrame
        kinship's index, or ``y``'s index for components without ``Z``).
    """
    if fit is None:
        raise TypeError("mmblup: fit= (the result of mmest) is required")
    require_fit(fit, "mmblup")
    check_same_data(fit, "mmblup", y=y, cofactor=cofactor, x=x, formula=formula, var_list=var_list, z_list=z_list)
    i = fit._index(model)
    prob = fit.problem
    p = len(fit.coef_names[i])
    sigma2 = fit.sigma2_array[i]
    resid = prob.y - model_design(fit, i) @ fit.beta_array[i, :p]
    v_inv_r = v_inverse_times(fit, sigma2, resid)
    comps = prob.components
    out = {}
    for k, name in enumerate(comps.names):
        z, r = comps.z_list[k], comps.v_list[k]
        zt = v_inv_r if z is None else z.T @ v_inv_r
        values = sigma2[k] * (r @ zt)
        labels = comps.level_names[k] or (prob.y_names if z is None else None)
        index = pd.Index(labels) if labels is not None and len(labels) == values.size else None
        out[name] = pd.Series(values, index=index, name=name)
    return out


__all__ = ["mmblup"]
