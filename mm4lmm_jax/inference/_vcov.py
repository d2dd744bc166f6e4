"""``mmvcov``: MM4LMM's ``MMVcov`` -- the covariance of the variance-component estimates
from the inverse expected, average or observed information (computed by autodiff)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..core._batch import map_models
from ..core._information import average_information, expected_information, observed_information
from ..errors import BoundaryWarning
from ._checks import check_same_data, require_fit
from ._fitted import FittedModels
from ._structures import components_at_zero, design_chunks, layout_groups, model_design, structures_for

_INFORMATION = {"expected": "expected", "fisher": "expected", "ai": "ai", "average": "ai", "observed": "observed"}


@dataclass(frozen=True)
class VcovResult:
    """``vcov`` (K x K DataFrame) and ``se`` (Series) of the variance components of one
    model, from the ``information`` kind (``"expected"``, ``"ai"`` or ``"observed"``);
    ``information_matrix`` is the matrix that was inverted."""

    vcov: pd.DataFrame
    se: pd.Series
    information: str
    information_matrix: pd.DataFrame
    boundary: tuple = ()

    def __repr__(self) -> str:
        edge = f", boundary={list(self.boundary)}" if self.boundary else ""
        return f"VcovResult(information={self.information!r}{edge})\n{self.vcov!r}"


def _expected_reml(quad, p, sigma2):
    return expected_information(quad, sigma2, p, "reml")


def _expected_ml(quad, p, sigma2):
    return expected_information(quad, sigma2, p, "ml")


def _average(quad, p, sigma2):
    return average_information(quad, sigma2, p)


def _observed_reml(quad, p, sigma2, n):
    return observed_information(quad, sigma2, n, p, "reml")


def _observed_ml(quad, p, sigma2, n):
    return observed_information(quad, sigma2, n, p, "ml")


def information_array(fit: FittedModels, information: str = "expected", models=None, chunk: int = 256) -> np.ndarray:
    """Information matrices (m, K, K) of the variance components for ``models`` (default:
    all), in batched calls; ``information`` is ``"expected"``, ``"ai"`` or ``"observed"``."""
    index = np.arange(len(fit)) if models is None else np.asarray(models, dtype=int)
    k = len(fit.component_names)
    out = np.full((len(fit), k, k), np.nan)  # by model index
    for layout in layout_groups(fit):
        layout = layout[np.isin(layout, index)]
        if layout.size == 0:
            continue
        for struct, group in structures_for(fit, layout):
            for ch in design_chunks(fit, group, chunk):
                sigma2 = jnp.asarray(fit.sigma2_array[ch.index])
                x = jnp.asarray(ch.x)
                if information == "expected":
                    fn = _expected_reml if fit.method == "reml" else _expected_ml
                    res = map_models(fn, struct, x, sigma2)
                elif information == "ai":
                    res = map_models(_average, struct, x, sigma2)
                else:
                    fn = _observed_reml if fit.method == "reml" else _observed_ml
                    n = jnp.full((len(ch.index),), fit.problem.y.shape[0])
                    res = map_models(fn, struct, x, sigma2, n)
                out[ch.index[: ch.n_valid]] = np.asarray(res)[: ch.n_valid]
    return out[index]


def _mm4lmm_expected(fit: FittedModels, i: int) -> np.ndarray:
    """MM4LMM 3.0.3's ``MMVcov(information="Expected")`` matrix, dense algebra (see
    ``convention`` in :func:`mmvcov`)."""
    covs = fit.problem.components.covariances()
    v = sum(s * c for s, c in zip(fit.sigma2_array[i], covs))
    v_inv = np.linalg.inv(v)
    if fit.method == "reml":
        x = model_design(fit, i)
        vx = v_inv @ x
        v_inv = v_inv - vx @ np.linalg.solve(x.T @ vx, vx.T)
    vp = [c @ v_inv for c in covs]
    k = len(covs)
    info = np.array([[0.5 * np.sum(vp[a] * vp[b].T) for b in range(k)] for a in range(k)])
    info[np.diag_indices(k)] = [0.5 * np.sum(a * a) for a in vp]
    return info


def mmvcov(
    fit: FittedModels,
    y=None,
    cofactor=None,
    formula: str | None = None,
    z_list=None,
    var_list=None,
    information: str = "expected",
    *,
    model: int | str = 0,
    convention: str = "exact",
) -> VcovResult:
    """Covariance of the variance-component estimates (MM4LMM's ``MMVcov``).

    Parameters
    ----------
    fit : the result of :func:`mmest`.
    y, cofactor, formula, z_list, var_list : optional, MM4LMM-style; checked against the
        data the fit was computed from (a different data set is a ``ValueError``).
    information : ``"expected"`` (Fisher information of the fit's method, ReML or ML),
        ``"ai"`` (average information, ReML fits only) or ``"observed"``.
    model : which model of the fit (position or name; MM4LMM uses the first).
    convention : ``"exact"`` (default): the expected information ``1/2 tr(P V_i P V_j)``.
        ``"mm4lmm"``: MM4LMM 3.0.3's expected information, whose diagonal is
        ``1/2 tr((V_i P)'(V_i P))`` instead of ``1/2 tr(V_i P V_i P)`` (``V^-1`` for ``P`` in
        ML).  The two agree when ``V_i P`` is symmetric in trace, e.g. one kinship plus an
        identity error; they differ with three or more components (by 18% on MM4LMM's
        hybrid example).  Use it only to reproduce MM4LMM's numbers.

    Returns
    -------
    VcovResult
        ``vcov`` the inverse information (K x K, by component name) and ``se`` its
        square-root diagonal; ``boundary`` the components estimated at zero (a warning says
        so: their SE is not a valid measure of uncertainty there).
    """
    require_fit(fit, "mmvcov")
    key = str(information).lower()
    if key not in _INFORMATION:
        raise ValueError(f"information must be 'expected', 'ai' or 'observed', got {information!r}")
    kind = _INFORMATION[key]
    if kind == "ai" and fit.method != "reml":
        raise ValueError(
            "mmvcov: the average information (information='ai') is defined for ReML fits; "
            "this fit is ML: use information='expected' or 'observed'"
        )
    if convention not in ("exact", "mm4lmm"):
        raise ValueError(f"convention must be 'exact' or 'mm4lmm', got {convention!r}")
    check_same_data(fit, "mmvcov", y=y, cofactor=cofactor, formula=formula, var_list=var_list, z_list=z_list)
    i = fit._index(model)
    if convention == "mm4lmm" and kind == "expected":
        info = _mm4lmm_expected(fit, i)
    else:
        info = information_array(fit, kind, [i])[0]
    names = fit.component_names
    edge = tuple(names[k] for k in components_at_zero(fit.sigma2_array[i]))
    if edge:
        warnings.warn(
            f"mmvcov: variance component(s) {list(edge)} of model {fit.names[i]!r} are at the boundary (estimate "
            "~ 0): the inverse information describes the fit as if they were interior",
            BoundaryWarning,
            stacklevel=2,
        )
    try:
        chol = np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"mmvcov: the {kind} information matrix of model {fit.names[i]!r} is not positive definite "
            "(a variance component at or near zero?): its inverse is not a covariance"
        ) from None
    inv = np.linalg.inv(chol)
    vcov = inv.T @ inv
    frame = pd.DataFrame(vcov, index=names, columns=names)
    return VcovResult(
        frame,
        pd.Series(np.sqrt(np.diag(vcov)), index=names, name="se"),
        kind,
        pd.DataFrame(info, index=names, columns=names),
        edge,
    )


__all__ = ["VcovResult", "information_array", "mmvcov"]
