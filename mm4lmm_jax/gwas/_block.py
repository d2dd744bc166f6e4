"""One block of markers, from allele counts to test results: quality control on the host,
rotation and exact fits on the device (jit-compiled once per block shape).

The same function serves the single-process scan, each device of a sharded scan and each
Dask task, so all three give the same numbers.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc

from ..core._iterate import Status
from ..core._profile_scan import ScanData, marker_kr, scan_markers
from ._io import MISSING_COUNT

#: ``status`` codes of a marker (column ``status`` of the results): the package's one
#: :class:`~mm4lmm_jax.core._iterate.Status` enumeration, code -> label.
STATUS = {s.value: s.label for s in Status}


class Constants(NamedTuple):
    """What every block of one kinship shares (the eigenvectors travel apart, see
    :func:`block_program`): ``d`` (n,) eigenvalues, ``c_rot`` (c, n) rotated covariates
    (intercept first), ``y_rot`` (t, n) rotated traits, ``null_ml`` (t,) ML log-likelihood of
    the null model (for the LRT)."""

    d: jnp.ndarray
    c_rot: jnp.ndarray
    y_rot: jnp.ndarray
    null_ml: jnp.ndarray


def rotate_on_host() -> bool:
    """Whether blocks are rotated by numpy before their program runs (CPU backend: OpenBLAS's
    GEMM ran the rotation ``g U`` 15-20 % faster than XLA's CPU dot, measured at n = 5,000,
    float32 and float64) rather than inside it (accelerators)."""
    return jax.default_backend() == "cpu"


class BlockQC(NamedTuple):
    """Host-side summaries per marker: ``n_obs`` genotyped among the analysed, ``af``
    frequency of the counted allele (a1), ``status`` code before fitting, ``inv_scale`` the
    factor the centred marker was multiplied by before the rotation (a marker's effect and
    standard error on the allele-count scale are ``inv_scale`` times the standardised ones)."""

    n_obs: np.ndarray
    af: np.ndarray
    status: np.ndarray
    inv_scale: np.ndarray


def impute_block(raw: np.ndarray, dtype: str | None = None) -> tuple[np.ndarray, BlockQC]:
    """Mean-impute missing genotypes per marker (mean over the analysed individuals), then
    centre and scale each marker (mean 0, mean square 1 over the analysed individuals).

    Centring is absorbed by the intercept (always in the model) and the scale is undone on
    the results (:data:`BlockQC.inv_scale`), so the fits are those of the imputed counts;
    what is rotated in low precision is of order one whatever the genotypes' scale (a
    float32 rotation loses nothing to a large mean, and nothing under- or overflows).

    ``raw`` (n, b) allele counts: int8 with :data:`~.io.MISSING_COUNT` where missing (as read
    from a .bed), or float32 / float64 with NaN.  Returns the standardised (b, n) matrix of
    ``dtype`` (default: ``raw``'s float dtype), one row per marker, and the per-marker
    summaries (sums and means in float64, exact for counts).  All-missing and constant
    markers become zeros.
    """
    g = raw.T  # (b, n): a view, C-ordered when ``raw`` is Fortran-ordered (as read from .bed)
    n = g.shape[1]
    dtype = np.dtype(dtype or (raw.dtype if raw.dtype.kind == "f" else np.float64))
    if raw.dtype.kind in "iu":
        missing = g == MISSING_COUNT
        n_miss = np.count_nonzero(missing, axis=1)
        total = g.sum(axis=1, dtype=np.int64) - MISSING_COUNT * n_miss
        top = g.max(axis=1).astype(np.int64)  # a missing code is below every count
        n_obs = n - n_miss
        constant = total == n_obs * top  # all observed equal the largest one iff their sum says so
    else:
        missing = np.isnan(g)
        n_miss = np.count_nonzero(missing, axis=1)
        total = np.where(missing, np.zeros((), g.dtype), g).sum(axis=1, dtype=np.float64)
        n_obs = n - n_miss
        high = np.where(missing, -np.inf, g).max(axis=1, initial=-np.inf)
        constant = high <= np.where(missing, np.inf, g).min(axis=1, initial=np.inf)
    mean = np.where(n_obs > 0, total / np.maximum(n_obs, 1), 0.0)
    # in float64 whatever ``raw`` holds, rounded once to ``dtype`` at the end: counts and
    # floats with NaN give the same numbers
    centred = np.subtract(g, mean[:, None], order="C", dtype=np.float64)
    np.putmask(centred, missing, 0.0)
    scale = np.sqrt(np.einsum("ij,ij->i", centred, centred) / max(n, 1))
    usable = (n_obs > 0) & ~constant & (scale > 0) & np.isfinite(scale)
    # the factor as stored in ``dtype``: undoing it with the same number keeps results exact
    inv = np.where(usable, 1.0 / np.where(usable, scale, 1.0), 0.0).astype(dtype).astype(np.float64)
    centred *= inv[:, None]
    filled = centred.astype(dtype, copy=False)
    status = np.where(n_obs == 0, Status.ALL_MISSING, np.where(usable, Status.OK, Status.MONOMORPHIC)).astype(np.int8)
    af = np.where(n_obs > 0, mean / 2.0, np.nan)
    inv_scale = np.where(usable, inv, 1.0)
    return np.ascontiguousarray(filled), BlockQC(n_obs.astype(np.int64), af, status, inv_scale)


class BlockFit(NamedTuple):
    """Device results, each (t, b): see the GWAS output columns."""

    beta: jnp.ndarray
    se: jnp.ndarray
    stat: jnp.ndarray
    p_chi2: jnp.ndarray
    sigma2_g: jnp.ndarray
    sigma2_e: jnp.ndarray
    loglik: jnp.ndarray
    n_iter: jnp.ndarray
    fit_status: jnp.ndarray  # Status code of the ReML fit
    lrt: jnp.ndarray
    p_lrt: jnp.ndarray
    f_kr: jnp.ndarray  # Kenward-Roger F of the marker effect (NaN unless asked for)
    ddf_kr: jnp.ndarray  # its denominator degrees of freedom


def _fit_block(
    g_rot, const: Constants, *, lrt: bool, grid_size: int, tol: float, max_iter: int, kr: bool = False
) -> BlockFit:
    """Fit every marker of a rotated block ``g_rot`` (b, n) for every trait.  The grid stage
    runs in ``g_rot``'s precision (float32 after a float32 rotation), the exact stage (and the
    Kenward-Roger test with ``kr``) in float64."""
    kw = dict(grid_size=grid_size, tol=tol, max_iter=max_iter)

    def per_trait(args):
        y_rot, null_ml = args
        data = ScanData(const.d, const.c_rot, y_rot)
        out = scan_markers(g_rot, data, method="reml", **kw)
        stat = out.wald
        p_chi2 = erfc(jnp.sqrt(0.5 * stat))
        if lrt:
            ml = scan_markers(g_rot, data, method="ml", **kw)
            lrt_stat = jnp.maximum(2.0 * (ml.loglik - null_ml), 0.0)
            p_lrt = erfc(jnp.sqrt(0.5 * lrt_stat))
        else:
            lrt_stat = p_lrt = jnp.full_like(stat, jnp.nan)
        if kr:
            f_kr, ddf_kr = marker_kr(out, g_rot, data)
        else:
            f_kr = ddf_kr = jnp.full_like(stat, jnp.nan)
        delta = jnp.exp(out.log_delta)
        return BlockFit(
            out.beta, out.se, stat, p_chi2, delta * out.sigma2_e, out.sigma2_e, out.loglik,
            out.n_iter + 1, out.status, lrt_stat, p_lrt, f_kr, ddf_kr,
        )  # fmt: skip

    return jax.lax.map(per_trait, (const.y_rot, const.null_ml))


def _rotate_and_fit(g, u, const: Constants, **options) -> BlockFit:
    """Rotate a block ``g`` (b, n) by the eigenvectors ``u`` (n, n), then :func:`_fit_block`.
    The product is asked for full single precision: on GPUs XLA's default for float32 may be
    TF32 (10-bit mantissa), far from the float32 accuracy the p-values are promised at."""
    return _fit_block(jnp.matmul(g, u, precision=jax.lax.Precision.HIGHEST), const, **options)


@lru_cache(maxsize=16)
def block_program(
    lrt: bool, grid_size: int, tol: float, max_iter: int, n_devices: int = 1, rotate: bool = False, kr: bool = False
):
    """The jitted block function for these options (``kr``: also the Kenward-Roger test of
    each marker): ``(g_rot, const)`` for a block rotated
    beforehand, or with ``rotate`` ``(g, u, const)`` (the rotation inside the program).  With
    ``n_devices > 1`` the block's markers are split across the local devices (``shard_map``,
    one shard per device, ``u`` and ``const`` replicated)."""
    fn = partial(
        _rotate_and_fit if rotate else _fit_block, lrt=lrt, grid_size=grid_size, tol=tol, max_iter=max_iter, kr=kr
    )
    if n_devices <= 1:
        return jax.jit(fn)
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("markers",))
    const_spec = Constants(*(PartitionSpec() for _ in Constants._fields))
    out_spec = BlockFit(*(PartitionSpec(None, "markers") for _ in BlockFit._fields))
    in_specs = (PartitionSpec("markers"), *((PartitionSpec(),) if rotate else ()), const_spec)
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_spec, check_vma=False)
    return jax.jit(sharded)


_ALIGNED: list = [None, None]  # [an array u, its aligned Fortran copy]: holding u keeps its address unique


def _fortran_aligned(u: np.ndarray) -> np.ndarray:
    """``u`` itself when Fortran-ordered and aligned, else such a copy (kept for the next
    blocks of a Dask worker, which all receive the same scattered ``u``)."""
    if u.flags.f_contiguous and u.flags.aligned:
        return u
    if _ALIGNED[0] is not u:
        _ALIGNED[:] = [u, np.array(u, order="F")]
    return _ALIGNED[1]


def start_block(program, raw: np.ndarray, u, const: Constants, block_size: int, dtype: str):
    """Impute and standardise one block of allele counts, pad it to ``block_size`` markers,
    rotate it (by numpy on the host when ``u`` is a numpy array, else inside ``program``) and
    start its fit asynchronously: ``(fit, qc, g)`` with ``g`` the standardised (b, n) block."""
    g, qc = impute_block(raw, dtype)
    count = g.shape[0]
    if count < block_size:
        g = np.concatenate([g, np.zeros((block_size - count, g.shape[1]), g.dtype)])
    if isinstance(u, np.ndarray):
        # one memory layout for both operands wherever the block runs (BLAS rounds a float32
        # product differently for other layouts, and for arrays that arrive misaligned from
        # a Dask worker's buffers): local, sharded and Dask scans agree exactly
        g = np.ascontiguousarray(g)
        fit = program(jnp.asarray(g @ _fortran_aligned(u)), const)
    else:
        fit = program(jnp.asarray(g), u, const)
    return fit, qc, g[:count]


def rotate_float64(u: np.ndarray, a: np.ndarray, step: int = 1024) -> np.ndarray:
    """``U' a`` in float64 (n, k), widening ``u`` a block of columns at a time (no float64
    copy of a float32 ``u``)."""
    out = np.empty((u.shape[1], a.shape[1]))
    for start in range(0, u.shape[1], step):
        out[start : start + step] = u[:, start : start + step].T.astype(np.float64) @ a
    return out


def residual_df(const: Constants) -> int:
    """Denominator degrees of freedom of the Wald F test: ``n - c - 1``."""
    return int(const.d.shape[0] - const.c_rot.shape[0] - 1)


class Units(NamedTuple):
    """What the standardised fits of one group of traits need to return to the user's units,
    and to screen markers against the covariates (host arrays).

    ``y_scale`` (t,) each trait's scale (effects and standard errors are multiplied by it,
    variances by its square); ``loglik_shift`` (t,) added to a marker model's ReML
    log-likelihood (``log|det T| - (n - p) log y_scale``, ``T`` the change from the user's
    covariates to the orthonormal design, see :class:`~.design.Design`; then ``+ log
    inv_scale`` of the marker); ``covar_basis`` (n, c - 1) an orthonormal basis of the centred
    covariates (no column without covariates)."""

    y_scale: np.ndarray
    loglik_shift: np.ndarray
    covar_basis: np.ndarray


#: A marker whose residual after regression on the covariates keeps less than this fraction
#: of its variance (``1 - R^2``, i.e. a variance inflation factor above 1e8) is reported as
#: ``collinear with covariates``: its effect is not identifiable to working precision.
COLLINEAR_TOL = 1e-8
#: Markers refitted by the exact float64 path (float64 eigendecomposition and rotation,
#: four times the Newton iterations) after a float32 scan: those that did not converge, those
#: with ``1 - R^2`` below :data:`NEAR_COLLINEAR` (rounding magnified over 30-fold), and those
#: whose Wald statistic exceeds :data:`REFIT_STAT` (50: p ~ 2.6e-12).  On centred, scaled
#: markers the float32 error comes from the single-precision eigenvectors and grows with the
#: statistic: measured at most 2.5e-7 x stat in log10 p (``bench/README.md``), so below the
#: threshold it stays under 1.3e-5; even the 1.3e-6 x stat seen before the centring (GEMMA's
#: mouse_hs1940, LOCO) would stay under 6.5e-5, inside the promised 1e-4.
NEAR_COLLINEAR = 1e-3
REFIT_STAT = 50.0
#: Markers per batch of the float64 refits (the last batch padded).
REFIT_BLOCK = 64


def _one_minus_r2(g: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``1 - R^2`` of each standardised marker (rows of ``g``, mean square 1) regressed on the
    centred covariates (orthonormal ``basis``), from the residual itself (no cancellation)."""
    g = g.astype(np.float64)
    resid = g - (g @ basis) @ basis.T
    return np.einsum("ij,ij->i", resid, resid) / np.maximum(np.einsum("ij,ij->i", g, g), 1e-300)


def screen_collinear(g: np.ndarray, qc: BlockQC, basis: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Mark markers collinear with the covariates (``Status.COLLINEAR``) in ``qc.status``; return the mask
    of those near it (``1 - R^2 <`` :data:`NEAR_COLLINEAR`).  A cheap estimate in ``g``'s
    precision selects candidates; their ``1 - R^2`` is then taken in float64 from ``raw``."""
    if basis.shape[1] == 0 or g.shape[0] == 0:
        return np.zeros(g.shape[0], bool)
    proj = g @ basis.astype(g.dtype)
    rough = 1.0 - np.einsum("ij,ij->i", proj, proj, dtype=np.float64) / g.shape[1]
    cand = np.flatnonzero((rough < 10 * NEAR_COLLINEAR) & (qc.status == Status.OK))
    near = np.zeros(g.shape[0], bool)
    if cand.size:
        exact_g, _ = impute_block(raw[:, cand], "float64")
        r = _one_minus_r2(exact_g, basis)
        qc.status[cand[r < COLLINEAR_TOL]] = Status.COLLINEAR
        near[cand[(r >= COLLINEAR_TOL) & (r < NEAR_COLLINEAR)]] = True
    return near


def refit_iterations(max_iter: int) -> int:
    """Newton iterations allowed to a float64 refit."""
    return max(4 * max_iter, 120)


def refit_markers(raw: np.ndarray, u, const: Constants, program) -> dict[str, np.ndarray]:
    """Fit the markers of ``raw`` (n, k) allele counts again from a float64 imputation and
    rotation by the float64 eigenvectors ``u`` (with ``const`` from them), by ``program``
    (the block program for :data:`REFIT_BLOCK` float64 markers, with
    :func:`refit_iterations`), batch by batch through :func:`start_block`: host arrays (t, k)
    as :class:`BlockFit`'s fields."""
    out: dict[str, list] = {}
    for start in range(0, raw.shape[1], REFIT_BLOCK):
        fit, _, g = start_block(program, raw[:, start : start + REFIT_BLOCK], u, const, REFIT_BLOCK, "float64")
        for key, v in fit._asdict().items():
            out.setdefault(key, []).append(np.asarray(v)[:, : g.shape[0]])
    return {key: np.concatenate(v, axis=1) for key, v in out.items()}


def screen_block(fit: BlockFit, qc: BlockQC, g: np.ndarray, raw: np.ndarray, units: Units) -> dict[str, np.ndarray]:
    """Host arrays of one started block (:func:`start_block`), each (t, b) or (b,): the fit,
    the markers' summaries, collinear markers flagged, and ``refit`` (b,): the markers to fit
    again by the float64 path (see :data:`REFIT_STAT`)."""
    count = g.shape[0]
    near = screen_collinear(g, qc, units.covar_basis, raw)
    host = {k: np.asarray(v)[:, :count] for k, v in fit._asdict().items()}
    redo = (host["fit_status"] != Status.OK).any(axis=0)
    if g.dtype != np.float64:
        redo |= near | (np.nan_to_num(host["stat"], nan=0.0) > REFIT_STAT).any(axis=0)
    host["refit"] = redo & (qc.status == Status.OK)
    host.update(qc._asdict())
    return host


def merge_refit(host: dict[str, np.ndarray], where: np.ndarray, again: dict[str, np.ndarray]) -> None:
    """Put refitted markers' results (columns of ``again``) at positions ``where`` of ``host``."""
    for key, v in again.items():
        host[key] = host[key].copy()
        host[key][:, where] = v


def finish_block(host: dict[str, np.ndarray], df: int, units: Units) -> dict[str, np.ndarray]:
    """Final host arrays of one screened block (:func:`screen_block`), each (t, count): the
    results in the user's units, ``p_wald`` = P(F(1, ``df``) > stat) (the regularised
    incomplete beta function, evaluated here by scipy: a sixth of the block program's time
    when done inside it), and a status per marker and trait.  Every number of a row whose
    status is not ``ok`` is NaN."""
    from scipy.special import betainc

    host = dict(host)
    qc = BlockQC(*(host.pop(k) for k in BlockQC._fields))
    t, count = host["beta"].shape
    host["refitted"] = np.broadcast_to(host.pop("refit"), (t, count))
    status = np.broadcast_to(qc.status, (t, count)).copy()
    fit_status = host.pop("fit_status")
    # a non-finite fit of a marker that passed the screen is a collinearity the screen missed
    status[(status == Status.OK) & (fit_status == Status.NONFINITE)] = Status.COLLINEAR
    status[(status == Status.OK) & (fit_status != Status.OK)] = Status.MAX_STEPS
    bad = status != Status.OK
    y_scale = units.y_scale[:, None]
    effect = y_scale * qc.inv_scale[None, :]
    host["beta"] = host["beta"] * effect
    host["se"] = host["se"] * effect
    host["sigma2_g"] = host["sigma2_g"] * y_scale**2
    host["sigma2_e"] = host["sigma2_e"] * y_scale**2
    host["loglik"] = host["loglik"] + units.loglik_shift[:, None] + np.log(qc.inv_scale[None, :])
    with np.errstate(invalid="ignore"):
        host["p_wald"] = betainc(0.5 * df, 0.5, df / (df + host["stat"]))
        ddf = host["ddf_kr"]
        host["p_kr"] = betainc(0.5 * ddf, 0.5, ddf / (ddf + host["f_kr"]))
    for key in ("beta", "se", "stat", "p_wald", "p_chi2", "sigma2_g", "sigma2_e", "loglik", "lrt", "p_lrt",
                "f_kr", "ddf_kr", "p_kr"):  # fmt: skip
        host[key] = np.where(bad, np.nan, host[key])
    host["converged"] = ~bad
    host["status"] = status
    host["af"] = np.broadcast_to(qc.af, (t, count))
    host["n_obs"] = np.broadcast_to(qc.n_obs, (t, count))
    return host


__all__ = [
    "BlockFit",
    "BlockQC",
    "COLLINEAR_TOL",
    "Constants",
    "NEAR_COLLINEAR",
    "REFIT_BLOCK",
    "REFIT_STAT",
    "STATUS",
    "Units",
    "block_program",
    "finish_block",
    "impute_block",
    "merge_refit",
    "refit_iterations",
    "refit_markers",
    "residual_df",
    "rotate_float64",
    "rotate_on_host",
    "screen_block",
    "screen_collinear",
    "start_block",
]
