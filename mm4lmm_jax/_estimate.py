"""``mmest``: the Python counterpart of MM4LMM's ``MMEst``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._basis import OrthonormalBasis
from ._results import MMEstResult
from .core._batch import fit_models
from .core._fit import FitOutput
from .core._iterate import Status, Stopping
from .core._likelihood import LOG_2PI
from .core._lowrank_scan import LowRankScan, rotate_components
from .core._newton_path import NewtonFitPath
from .core._profile_scan import DELTA_BOUNDS
from .core._rotated_scan import EXACT_BOUNDS, RotatedFits, rotated_fits
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


NEWTON_CRIT = 1e-6  # "auto" uses the exact engines for marker scans asked to converge at least this tightly


def choose_algorithm(
    algorithm: str, k: int, scan: bool, crit_var: float, crit_loglik: float, rotatable: bool = False
) -> str:
    """``"mm"`` or ``"newton"`` from the user's ``algorithm`` (``"auto"``, ``"mm"``, ``"newton"``).

    ``rotatable``: the model has two components that one joint diagonalisation serves (the
    structure ``TwoComponent``), where ``"newton"`` means :class:`RotatedFitter`."""
    if algorithm not in ("auto", "mm", "newton"):
        raise ValueError(f"algorithm must be 'auto', 'mm' or 'newton', got {algorithm!r}")
    if algorithm == "newton" and k < 3 and not rotatable:
        raise ValueError(
            f"algorithm='newton' is for models with three or more variance components, or two whose "
            f"last covariance is positive definite (got {k} component(s)"
            + (", the last one singular" if k == 2 else "")
            + "); use algorithm='mm'"
        )
    if algorithm == "auto":
        tight = crit_var <= NEWTON_CRIT and crit_loglik <= NEWTON_CRIT
        return "newton" if ((k >= 3 or rotatable) and scan and tight) else "mm"
    return algorithm


def _newton_structure(comps: Components, henderson: bool | None, n_cof: int) -> type[Structure]:
    n = comps.covariances()[-1].shape[0]
    q = sum(v.shape[0] for v in comps.v_list[:-1])
    pd_ok = q + n_cof < n and comps.henderson_covariances_pd()
    cls, notes = choose_newton(n, q, n_cof, pd_ok, henderson)
    _notes(notes)
    return cls


#: largest rank of a component for the low-rank engine (:class:`LowRankScan`), as a share of n
LOW_RANK_SHARE = 0.5


def lowrank_split(comps: Components) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]] | None:
    """``(K, Z, order)`` where the components are a kinship ``K`` (n, n), one low-rank component
    ``Z Z'`` (``Z`` (n, R), R <= n / 2, given by its incidence) and an identity error, in the
    caller's positions ``order``; else ``None`` (the general Newton path)."""
    if len(comps.names) != 3 or comps.z_list[2] is not None:
        return None
    err = comps.v_list[2]
    n = err.shape[0]
    if not (np.all(np.diagonal(err) == 1.0) and np.count_nonzero(err) == n):
        return None
    ranks = [z.shape[1] if z is not None else n for z in comps.z_list[:2]]
    low = int(np.argmin(ranks))
    z, v = comps.z_list[low], comps.v_list[low]
    if z is None or ranks[low] > LOW_RANK_SHARE * n:
        return None
    if not (np.all(np.diagonal(v) == 1.0) and np.count_nonzero(v) == v.shape[0]):
        lam, vec = np.linalg.eigh(v)
        keep = lam > 1e-12 * max(lam.max(), 1e-300)
        z = z @ (vec[:, keep] * np.sqrt(lam[keep]))
    kin = comps.covariances()[1 - low]
    return kin, z, (1 - low, low, 2)


def _exact_fitter(y: np.ndarray, comps: Components, method: str, structure: Structure, newton_cls):
    """The exact ``K >= 3`` fitter: :class:`LowRankScan` for a kinship, one low-rank component
    and the error, else :class:`NewtonFitPath` on the Newton structure."""
    split = lowrank_split(comps)
    if split is not None:
        kin, z, order = split
        return LowRankScan(y, rotate_components(kin, z), method, order)
    nst = structure if newton_cls is type(structure) else _prepare(newton_cls, y, comps, newton=True)
    return NewtonFitPath(y, nst, method)


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
    algorithm : ``"mm"`` (MM4LMM's iterations, replayed), ``"newton"`` (every model at its
        exact optimum by Newton's method: for ``K >= 3``, marker models share one expansion
        around the null optimum, see :mod:`mm4lmm_jax.core._newton_path`; for two components
        whose last covariance is positive definite, the GWAS scans' engine on the rotated data,
        a grid then Newton in ``log(s_1 / s_2)`` over ``[1e-12, 1e5]``, see
        :mod:`mm4lmm_jax.core._rotated_scan`; ``crit_var``, ``crit_loglik``, ``max_iter`` and
        ``init`` do not apply and ``n_iter`` counts Newton steps) or ``"auto"`` (Newton for
        marker scans with both criteria ``<= 1e-6``, MM otherwise: MM4LMM's default criteria
        replay MM4LMM iteration for iteration).

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
    cls = choose_structure(comps, method, henderson, n_cof) if k <= 2 else None  # henderson: K >= 3 only
    algorithm = choose_algorithm(algorithm, k, markers is not None, crit_var, crit_loglik, cls is TwoComponent)
    newton = algorithm == "newton"
    rotated = newton and k == 2
    newton = newton and not rotated
    if cls is None:
        cls = choose_structure(comps, method, henderson if not (newton and method == "ml") else None, n_cof)
    newton_cls = _newton_structure(comps, henderson, n_cof) if newton else None
    structure = _prepare(cls, y_arr, comps, newton=newton_cls is cls)
    # every fit runs on a well-conditioned basis of the fixed-effect columns (a date-coded or
    # unscaled cofactor would cost the cross-products their digits), reported in the user's
    mm = OrthonormalBasis(_MMFitter(structure, method, stopping), method)
    if rotated:
        fitter = OrthonormalBasis(RotatedFitter(structure, method), method)
    elif newton:
        fitter = OrthonormalBasis(_exact_fitter(y_arr, comps, method, structure, newton_cls), method)
    else:
        fitter = mm

    sigma0 = init if init is not None else np.full(k, np.var(y_arr, ddof=1) / k)
    empty = np.zeros((1, n, 0))
    if markers is None or init is None:
        exact = fitter if (newton or rotated) else None
        null_fit = _fit_null(mm, exact, null.matrix, empty, sigma0)
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
class RotatedFitter:
    """Exact fits of two-component models on the rotated data (:func:`rotated_fits`: grid
    then Newton on the profiled log-likelihood in ``log(s_1 / s_2)``), with the interface of
    :class:`NewtonFitPath`.  ``n_iter`` counts Newton evaluations; ``sigma0`` is not used.

    ``bounds`` is the range of ``s_1 / s_2`` searched: GEMMA's for the GWAS model scans,
    :data:`EXACT_BOUNDS` (as good as unbounded) for ``mmest``."""

    structure: TwoComponent
    method: str
    bounds: tuple[float, float] = EXACT_BOUNDS
    #: models per compiled call (padded: one shape per scan)
    chunk: int = 128
    #: models rotated per GEMM
    slab: int = 4096

    def fit(self, base, extra, sigma0=None, *, chunk_size=None, progress=None) -> FitOutput:
        """Models ``[base | extra[i]]``: ``base`` (n, c), ``extra`` (m, n, p1)."""
        st = self.structure
        extra = np.asarray(extra, dtype=float)
        m, n, p1 = extra.shape
        size = min(chunk_size or self.chunk, max(1, 1 << max(m - 1, 0).bit_length()))
        c_rot = np.asarray(st.transform(np.asarray(base, dtype=float)))
        t, y_rot = np.asarray(st.t), np.asarray(st.y_rot)
        d = np.clip(np.asarray(st.d), 0.0, None)
        parts = []
        slab = max(size, self.slab // size * size)
        for s0 in range(0, m, slab):
            block = extra[s0 : s0 + slab]
            k = block.shape[0]
            # one GEMM rotates every column of the slab: T (n, n) @ (n, k p1)
            flat = np.ascontiguousarray(np.moveaxis(block, 1, 0)).reshape(n, k * p1)
            rotated = np.moveaxis((t @ flat).reshape(n, k, p1), 0, 1)
            for start in range(0, k, size):
                x_rot = rotated[start : start + size]
                used = x_rot.shape[0]
                if used < size:
                    x_rot = np.concatenate([x_rot, np.repeat(x_rot[-1:], size - used, axis=0)])
                out = rotated_fits(d, c_rot, x_rot, y_rot, method=self.method, bounds=self.bounds)
                parts.append([np.asarray(a)[:used] for a in out])
                if progress is not None:
                    progress(used)
        fits = RotatedFits(*(np.concatenate(a) for a in zip(*parts)))
        loglik = fits.loglik - 0.5 * float(st.logdet_k2)
        return FitOutput(fits.sigma2, fits.beta, fits.var_beta, loglik, fits.n_iter, fits.status)

    def fit_null(self, design, sigma0=None) -> FitOutput:
        return self.fit(design, np.zeros((1, design.shape[0], 0)))


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

    def fit_null(self, design, sigma0) -> FitOutput:
        return self.fit(design, np.zeros((1, design.shape[0], 0)), sigma0)


def _fit_null(mm: OrthonormalBasis, newton: OrthonormalBasis | None, design, empty, sigma0) -> FitOutput:
    """The null model by MM, or by an exact fitter (started from MM's fit if it fails from
    ``sigma0``; :class:`RotatedFitter` ignores the start)."""
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
    components (:class:`NewtonFitPath`), on the rotated data for two components
    (:class:`RotatedFitter`, GEMMA's bounds on ``s_1 / s_2``), else by MM iterations at
    :data:`EXACT_STOPPING`.  Each block is returned as an :class:`MMEstResult`, so the inference
    functions (``anova_test``, KR...) apply to it unchanged.

    Parameters
    ----------
    y : (n,) response (no missing value).  base : (n, p0) shared design (full rank).
    base_names : its (p0,) column names.  var_list, z_list : as :func:`mmest`.
    method : ``"reml"`` or ``"ml"``.
    """

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
            self.fitter = OrthonormalBasis(RotatedFitter(self.structure, self.method, DELTA_BOUNDS), self.method)
            null_fit = self.fitter.fit_null(self.null.matrix)
            _check_finite(null_fit, ["NullModel"])
            self.null_result = self._result(["NullModel"], [self.null], null_fit, None)
            self.sigma0 = np.asarray(null_fit.sigma2[0])
            return
        mm = OrthonormalBasis(_MMFitter(self.structure, self.method, EXACT_STOPPING), self.method)
        if newton:
            exact = _exact_fitter(self.y, self.comps, self.method, self.structure, newton_cls)
            self.fitter = OrthonormalBasis(exact, self.method)
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
        fits = self.fitter.fit(self.null.matrix, extra, self.sigma0, chunk_size=chunk_size)
        design = Design(np.empty((0, 0)), [*self.null.names, *extra_names], np.append(self.null.attr, attr), [])
        return self._result(list(names), [design], fits, markers)


__all__ = ["EXACT_STOPPING", "PreparedModel", "RotatedFitter", "choose_algorithm", "choose_structure", "mmest"]
