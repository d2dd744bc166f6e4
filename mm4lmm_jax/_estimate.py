"""``mmest``: the Python counterpart of MM4LMM's ``MMEst``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._results import MMEstResult
from .core._batch import fit_models
from .core._fit import FitOutput
from .core._iterate import Status, Stopping
from .core._likelihood import LOG_2PI
from .core._newton_path import NewtonFitPath
from .core._rotated_scan import RotatedFits, rotated_fits
from .core._structures import Structure, TwoComponent, choose, choose_newton
from .errors import ConvergenceWarning, NumericalError
from .model._data import (
    Components,
    as_response,
    drop_missing,
    is_positive_definite,
    normalise_method,
    subset_rows,
    validate_components,
)
from .model._design import XNAME, Design, MarkerDesigns, cofactor_frame, marker_designs, null_design


@dataclass(frozen=True)
class Problem:
    """What a fit was computed from (kept on the result for later inference): the response,
    components and designs, and the prepared covariance ``structure``."""

    y: np.ndarray
    components: Components
    null: Design
    markers: MarkerDesigns | None
    keep: np.ndarray
    structure: Structure
    y_names: list[str] | None = None


def _prepare(cls: type[Structure], y: np.ndarray, comps: Components, newton: bool = False) -> Structure:
    return cls.prepare(y, comps.z_list, comps.v_list, comps.covariances(), newton=newton)


def _notes(notes: list[str]) -> None:
    for note in notes:
        warnings.warn(note, stacklevel=4)


def choose_structure(comps: Components, method: str, henderson: bool | None, n_cof: int) -> type[Structure]:
    """MM4LMM's choice of covariance structure for the MM fits (warns where a request is
    overridden)."""
    covs_last = comps.covariances()[-1]
    k = len(comps.names)
    q = sum(v.shape[0] for v in comps.v_list[:-1])
    cls, notes = choose(
        k,
        method,
        is_positive_definite(covs_last) if k == 2 else True,
        covs_last.shape[0],
        q,
        n_cof,
        comps.henderson_covariances_pd() if k >= 3 else True,
        henderson,
    )
    _notes(notes)
    return cls


NEWTON_CRIT = 1e-6  # "auto" uses Newton for K >= 3 scans asked to converge at least this tightly


def choose_algorithm(algorithm: str, k: int, scan: bool, crit_var: float, crit_loglik: float) -> str:
    """``"mm"`` or ``"newton"`` from the user's ``algorithm`` (``"auto"``, ``"mm"``, ``"newton"``)."""
    if algorithm not in ("auto", "mm", "newton"):
        raise ValueError(f"algorithm must be 'auto', 'mm' or 'newton', got {algorithm!r}")
    if algorithm == "newton" and k < 3:
        raise ValueError(
            f"algorithm='newton' is for models with three or more variance components (got {k}); "
            "with one or two components the MM paths are already exact and fast"
        )
    if algorithm == "auto":
        tight = crit_var <= NEWTON_CRIT and crit_loglik <= NEWTON_CRIT
        return "newton" if (k >= 3 and scan and tight) else "mm"
    return algorithm


def _newton_structure(comps: Components, henderson: bool | None, n_cof: int) -> type[Structure]:
    n = comps.covariances()[-1].shape[0]
    q = sum(v.shape[0] for v in comps.v_list[:-1])
    pd_ok = q + n_cof < n and comps.henderson_covariances_pd()
    cls, notes = choose_newton(n, q, n_cof, pd_ok, henderson)
    _notes(notes)
    return cls


def mmest(
    y,
    cofactor=None,
    x=None,
    formula: str | None = None,
    var_list=None,
    z_list=None,
    method: str = "reml",
    henderson: bool | None = None,
    init=None,
    crit_var: float = 1e-3,
    crit_loglik: float = 1e-3,
    max_iter: int = 100,
    verbose: bool = True,
    chunk_size: int | None = None,
    algorithm: str = "auto",
) -> MMEstResult:
    """Fit variance-component mixed models by ReML or ML with MM4LMM's MM algorithm.

    Model: ``y = X beta + sum_k Z_k u_k``, ``u_k ~ N(0, sigma2_k R_k)``; the last component
    is usually the error (``R = I``).

    Parameters
    ----------
    y : (n,) array-like or Series; NaN entries drop those individuals everywhere (warning).
    cofactor : None (intercept only), a numeric (or character) matrix, or a DataFrame used
        with ``formula``.  An intercept is always included, as in MM4LMM.
    x : None (one model), a numeric matrix (one model per column; a DataFrame's column
        names name the models), a list / dict of matrices (one model per element), or a
        matrix / DataFrame of character markers (formula term ``Xeffect``).
    formula : right-hand side such as ``"~ Trial + Xeffect + Xeffect:Trial"``.
    var_list : dict (keys name the components) or list of (q_k, q_k) covariance matrices.
    z_list : None, or the (n, q_k) incidence matrices in the same order.
    method : ``"reml"`` or ``"ml"`` (``"Reml"``/``"ML"`` accepted).
    henderson : None (MM4LMM's automatic choice), True or False.
    init : (K,) starting values; default ``var(y)/K``, and marker models start from the
        null model's estimates.
    crit_var, crit_loglik, max_iter : MM4LMM's stopping rule.
    verbose : show a progress bar for scans of several chunks.
    chunk_size : marker models per compiled batch (default depends on the structure).
    algorithm : ``"mm"`` (MM4LMM's iterations), ``"newton"`` (``K >= 3`` only: every model at
        its exact optimum by Newton's method; marker models share one expansion around the
        null optimum, see :mod:`mm4lmm_jax.core._newton_path`; ``crit_var``, ``crit_loglik``
        and ``max_iter`` do not apply and ``n_iter`` counts Newton steps) or ``"auto"``
        (Newton for ``K >= 3`` marker scans with both criteria ``<= 1e-6``, MM otherwise).

    Returns
    -------
    MMEstResult
        One :class:`ModelFit` per model (``"NullModel"`` when ``x`` is None).
    """
    method = normalise_method(method)
    stopping = Stopping(crit_var, crit_loglik, max_iter)
    if formula is not None:
        formula = formula.strip()
        if not formula.startswith("~"):
            formula = "~ " + formula
    y_all, y_names = as_response(y)
    n_all = y_all.size
    comps = validate_components(var_list, z_list, n_all)
    keep = drop_missing(y_all)
    y_arr = y_all[keep]
    comps = comps.drop_rows(keep)
    cofactor = subset_rows(cofactor, keep)
    x = subset_rows(x, keep)
    n = y_arr.size
    k = len(comps.names)
    if y_names is not None:
        y_names = [nm for nm, kept in zip(y_names, keep) if kept]

    spec = cofactor_frame(cofactor, n, formula)
    null = null_design(spec, (XNAME,))
    markers = marker_designs(x, spec, n) if x is not None else None
    if n <= null.matrix.shape[1]:
        raise ValueError(f"{n} observations for {null.matrix.shape[1]} fixed effects: nothing left to estimate")

    if init is not None:
        init = np.asarray(init, dtype=float).ravel()
        if init.size != k or not np.all(init > 0):
            raise ValueError(f"init must hold {k} positive values (one per component), got {init.tolist()}")

    n_cof = spec.frame.shape[1]
    algorithm = choose_algorithm(algorithm, k, markers is not None, crit_var, crit_loglik)
    newton = algorithm == "newton"
    cls = choose_structure(comps, method, henderson if not (newton and method == "ml") else None, n_cof)
    newton_cls = _newton_structure(comps, henderson, n_cof) if newton else None
    structure = _prepare(cls, y_arr, comps, newton=newton_cls is cls)
    if newton:
        newton_structure = structure if newton_cls is cls else _prepare(newton_cls, y_arr, comps, newton=True)
        fitter = NewtonFitPath(y_arr, newton_structure, method)
    else:
        fitter = _MMFitter(structure, method, stopping)

    sigma0 = init if init is not None else np.full(k, np.var(y_arr, ddof=1) / k)
    empty = np.zeros((1, n, 0))
    if markers is None or init is None:
        null_fit = _fit_null(
            _MMFitter(structure, method, stopping), fitter if newton else None, null.matrix, empty, sigma0
        )
        _check_finite(null_fit, ["NullModel"])
    if markers is None:
        return _result(
            ["NullModel"],
            [null],
            null_fit,
            comps,
            method,
            n,
            Problem(y_arr, comps, null, None, keep, structure, y_names),
            algorithm,
        )
    if init is None:
        sigma0 = null_fit.sigma2[0]

    bar = _progress(len(markers), verbose)
    try:
        fits, designs = _fit_markers(fitter, markers, sigma0, chunk_size, bar)
    finally:
        if bar is not None:
            bar.close()
    _check_finite(fits, markers.names)
    return _result(
        markers.names,
        designs,
        fits,
        comps,
        method,
        n,
        Problem(y_arr, comps, null, markers, keep, structure, y_names),
        algorithm,
    )


@dataclass(frozen=True)
class _MMFitter:
    """MM fits of batches of models on one structure (the interface of :class:`NewtonFitPath`)."""

    structure: Structure
    method: str
    stopping: Stopping

    def fit(self, base, extra, sigma0, *, chunk_size=None, progress=None) -> FitOutput:
        return fit_models(
            self.structure,
            base,
            extra,
            sigma0,
            method=self.method,
            stopping=self.stopping,
            chunk_size=chunk_size,
            progress=progress,
        )


def _fit_null(mm: _MMFitter, newton: NewtonFitPath | None, design, empty, sigma0) -> FitOutput:
    """The null model by MM, or by exact Newton (started from MM's fit if it fails from
    ``sigma0``)."""
    if newton is None:
        return mm.fit(design, empty, sigma0)
    fit = newton.fit_null(design, sigma0)
    if not bool(fit.converged[0]):
        start = mm.fit(design, empty, sigma0)
        if bool(start.finite[0]):
            fit = newton.fit_null(design, start.sigma2[0])
    return fit


def _progress(total: int, verbose: bool):
    if not verbose or total < 1000:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="model", desc="mmest")


def _fit_markers(fitter, markers: MarkerDesigns, sigma0, chunk_size, bar):
    update = bar.update if bar is not None else None
    if markers.extra is not None:
        fits = fitter.fit(markers.base.matrix, markers.extra, sigma0, chunk_size=chunk_size, progress=update)
        base = markers.base
        design = Design(
            np.empty((0, 0)),
            [*base.names, *markers.extra_names],
            np.append(base.attr, markers.extra_attr),
            base.factors,
        )
        return fits, [design] * len(markers)
    designs = markers.designs
    groups: dict[int, list[int]] = {}
    for i, d in enumerate(designs):
        groups.setdefault(d.matrix.shape[1], []).append(i)
    parts: dict[int, tuple] = {}
    n = designs[0].matrix.shape[0]
    for idx in groups.values():
        stack = np.stack([designs[i].matrix for i in idx])
        out = fitter.fit(np.zeros((n, 0)), stack, sigma0, chunk_size=chunk_size, progress=update)
        for j, i in enumerate(idx):
            parts[i] = FitOutput(*(np.asarray(a)[j] for a in out))
    return [parts[i] for i in range(len(designs))], designs


def _finite_flags(fits) -> np.ndarray:
    """Per-model finiteness from stacked outputs or from per-model rows."""
    if isinstance(fits, list):
        return np.array([bool(row.finite) for row in fits])
    return np.atleast_1d(np.asarray(fits.finite))


def _check_finite(fits, names) -> None:
    finite = _finite_flags(fits)
    if not finite.all():
        bad = [nm for nm, ok in zip(names, np.atleast_1d(finite)) if not ok]
        if len(names) == 1 or bad == list(names):
            raise NumericalError(
                f"the fit of {bad[:5]} met non-finite values: check that the covariance matrices are "
                "positive definite together and that the design has full rank"
            )
        warnings.warn(
            f"{len(bad)} model(s) met non-finite values and are reported as not converged: {bad[:5]}",
            ConvergenceWarning,
            stacklevel=3,
        )


def _result(names, designs, fits, comps, method, n, problem, algorithm: str = "mm") -> MMEstResult:
    if isinstance(fits, list):  # per-model designs: one FitOutput row per model
        sigma2 = np.stack([f.sigma2 for f in fits])
        betas = [f.beta for f in fits]
        vbs = [f.var_beta for f in fits]
        loglik = np.array([f.loglik for f in fits])
        n_iter = np.array([f.n_steps for f in fits])
        status = np.array([f.status for f in fits])
    else:
        sigma2, betas, vbs, loglik, n_iter, status = (
            np.asarray(fits.sigma2),
            list(np.asarray(fits.beta)),
            list(np.asarray(fits.var_beta)),
            np.asarray(fits.loglik),
            np.asarray(fits.n_steps),
            np.asarray(fits.status),
        )
    conv = status == Status.OK
    if len(designs) == 1 and len(names) > 1:
        designs = designs * len(names)
    p_max = max(len(d.names) for d in designs)
    m = len(names)
    beta_array = np.full((m, p_max), np.nan)
    vb_array = np.full((m, p_max, p_max), np.nan)
    p_each = np.array([len(d.names) for d in designs])
    for p in np.unique(p_each):
        rows = np.where(p_each == p)[0]
        beta_array[rows, :p] = np.stack([betas[i] for i in rows])
        vb_array[rows, :p, :p] = np.stack([vbs[i] for i in rows])
    loglik_mm = loglik + (0.5 * (n - p_each) * LOG_2PI if method == "reml" else 0.0)
    if not conv.all():
        bad = [nm for nm, c in zip(names, conv) if not c]
        warnings.warn(
            f"{len(bad)} of {m} model(s) did not converge within max_iter (converged=False): {bad[:5]}",
            ConvergenceWarning,
            stacklevel=3,
        )
    return MMEstResult(
        names=list(names),
        component_names=list(comps.names),
        coef_names=[d.names for d in designs],
        sigma2_array=sigma2,
        beta_array=beta_array,
        var_beta_array=vb_array,
        loglik_array=loglik,
        loglik_mm4lmm_array=loglik_mm,
        n_iter_array=n_iter.astype(int),
        converged_array=conv.astype(bool),
        status_array=status.astype(np.int8),
        method=method,
        n_obs=n,
        attrs=[d.attr for d in designs],
        factors=list(designs[0].factors),
        structure=problem.structure.key,
        problem=problem,
        algorithm=algorithm,
    )


#: MM's stopping rule where a fit must reach the optimum (scans of two-component models):
#: relative changes below 1e-9 (MM4LMM's rule at a thousandth of its default).
EXACT_STOPPING = Stopping(1e-9, 1e-9, 5000)


class PreparedModel:
    """``mmest``'s engine prepared once for one response and its components, then used for
    any number of blocks of marker models ``[base | extra]`` (the GWAS scans of models beyond
    one kinship).  Every model is fitted at its optimum: by Newton's method for ``K >= 3``
    components (:class:`NewtonFitPath`), by MM iterations at :data:`EXACT_STOPPING` for
    ``K <= 2``.  Each block is returned as an :class:`MMEstResult`, so the inference
    functions (``anova_test``, KR...) apply to it unchanged.

    Parameters
    ----------
    y : (n,) response (no missing value).  base : (n, p0) shared design (full rank).
    base_names : its (p0,) column names.  var_list, z_list : as :func:`mmest`.
    method : ``"reml"`` or ``"ml"``.
    """

    #: models per compiled call of the two-component engine (padded: one shape per scan)
    ROTATED_CHUNK = 128

    def __init__(self, y, base: np.ndarray, base_names, var_list, z_list=None, *, method: str = "reml"):
        self.method = normalise_method(method)
        self.y = np.asarray(y, dtype=float)
        n = self.y.size
        self.comps = validate_components(var_list, z_list, n)
        k = len(self.comps.names)
        self.null = Design(np.asarray(base, float), list(base_names), np.arange(base.shape[1]), list(base_names[1:]))
        n_cof = base.shape[1]
        newton = k >= 3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls = choose_structure(self.comps, self.method, None, n_cof)
            newton_cls = _newton_structure(self.comps, None, n_cof) if newton else None
        self.structure = _prepare(cls, self.y, self.comps, newton=newton_cls is cls)
        self.rotated = isinstance(self.structure, TwoComponent)
        if self.rotated:  # one kinship and the error: exact profiled fits on the rotated data
            self.algorithm = "newton"
            self._c_rot = np.asarray(self.structure.transform(self.null.matrix))
            null_fit = self._rotated(np.zeros((1, n, 0)))
            _check_finite(null_fit, ["NullModel"])
            self.null_result = self._result(["NullModel"], [self.null], null_fit, None)
            self.sigma0 = np.asarray(null_fit.sigma2[0])
            return
        mm = _MMFitter(self.structure, self.method, EXACT_STOPPING)
        if newton:
            nst = self.structure if newton_cls is cls else _prepare(newton_cls, self.y, self.comps, newton=True)
            self.fitter = NewtonFitPath(self.y, nst, self.method)
        else:
            self.fitter = mm
        self.algorithm = "newton" if newton else "mm"
        sigma0 = np.full(k, np.var(self.y, ddof=1) / k)
        null_fit = _fit_null(mm, self.fitter if newton else None, self.null.matrix, np.zeros((1, n, 0)), sigma0)
        _check_finite(null_fit, ["NullModel"])
        self.null_result = self._result(["NullModel"], [self.null], null_fit, None)
        self.sigma0 = np.asarray(null_fit.sigma2[0])

    def _result(self, names, designs, fits, markers) -> MMEstResult:
        problem = Problem(self.y, self.comps, self.null, markers, np.ones(self.y.size, bool), self.structure)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return _result(names, designs, fits, self.comps, self.method, self.y.size, problem, self.algorithm)

    def fit(self, extra: np.ndarray, names, extra_names, chunk_size: int | None = None) -> MMEstResult:
        """The models ``[base | extra[i]]`` for ``extra`` (m, n, p1); ``names`` (m,) name the
        models, ``extra_names`` (p1,) the columns.  Non-converged or non-finite models are
        flagged in ``status_array``, never raised."""
        extra = np.asarray(extra, dtype=float)
        p1 = extra.shape[2]
        attr = np.arange(self.null.matrix.shape[1], self.null.matrix.shape[1] + p1)
        markers = MarkerDesigns(
            list(names), base=self.null, extra=extra, extra_names=list(extra_names), extra_attr=attr
        )
        if self.rotated:
            fits = self._rotated(extra)
        else:
            fits = self.fitter.fit(self.null.matrix, extra, self.sigma0, chunk_size=chunk_size)
        design = Design(np.empty((0, 0)), [*self.null.names, *extra_names], np.append(self.null.attr, attr), [])
        return self._result(list(names), [design], fits, markers)

    def _rotated(self, extra: np.ndarray) -> FitOutput:
        """Exact fits of ``[base | extra[i]]`` by :func:`rotated_fits`, in padded chunks."""
        st = self.structure
        m = extra.shape[0]
        size = min(self.ROTATED_CHUNK, max(1, 1 << max(m - 1, 0).bit_length()))
        d = np.clip(np.asarray(st.d), 0.0, None)
        n, p1 = extra.shape[1], extra.shape[2]
        # one GEMM rotates every column of the block: T (n, n) @ (n, m p1)
        flat = np.ascontiguousarray(np.moveaxis(extra, 1, 0)).reshape(n, m * p1)
        rotated = np.moveaxis((np.asarray(st.t) @ flat).reshape(n, m, p1), 0, 1)
        parts = []
        for start in range(0, m, size):
            x_rot = rotated[start : start + size]
            if x_rot.shape[0] < size:
                x_rot = np.concatenate([x_rot, np.repeat(x_rot[-1:], size - x_rot.shape[0], axis=0)])
            out = rotated_fits(d, self._c_rot, x_rot, np.asarray(st.y_rot), method=self.method)
            parts.append([np.asarray(a)[: min(size, m - start)] for a in out])
        fits = RotatedFits(*(np.concatenate(a) for a in zip(*parts)))
        loglik = fits.loglik - 0.5 * float(st.logdet_k2)
        return FitOutput(fits.sigma2, fits.beta, fits.var_beta, loglik, fits.n_iter, fits.status)


__all__ = ["EXACT_STOPPING", "PreparedModel", "choose_algorithm", "choose_structure", "mmest"]
