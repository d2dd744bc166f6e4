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

from ..core.profile_scan import ScanData, scan_markers
from .io import MISSING_COUNT

#: ``status`` codes of a marker (column ``status`` of the results).
STATUS = {0: "ok", 1: "all missing", 2: "monomorphic", 3: "collinear with covariates", 4: "not converged"}


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
    frequency of the counted allele (a1), ``status`` code before fitting."""

    n_obs: np.ndarray
    af: np.ndarray
    status: np.ndarray


def impute_block(raw: np.ndarray, dtype: str | None = None) -> tuple[np.ndarray, BlockQC]:
    """Mean-impute missing genotypes per marker (mean over the analysed individuals).

    ``raw`` (n, b) allele counts: int8 with :data:`~.io.MISSING_COUNT` where missing (as read
    from a .bed), or float32 / float64 with NaN.  Returns the imputed (b, n) matrix of
    ``dtype`` (default: ``raw``'s float dtype), one row per marker, and the per-marker
    summaries (sums and means in float64, exact for counts).  All-missing markers become zeros.
    """
    g = raw.T  # (b, n): a view, C-ordered when ``raw`` is Fortran-ordered (as read from .bed)
    dtype = np.dtype(dtype or (raw.dtype if raw.dtype.kind == "f" else np.float64))
    if raw.dtype.kind in "iu":
        missing = g == MISSING_COUNT
        n_miss = np.count_nonzero(missing, axis=1)
        total = g.sum(axis=1, dtype=np.int64) - MISSING_COUNT * n_miss
        top = g.max(axis=1).astype(np.int64)  # a missing code is below every count
    else:
        missing = np.isnan(g)
        n_miss = np.count_nonzero(missing, axis=1)
        observed = np.where(missing, np.zeros((), g.dtype), g)
        total = observed.sum(axis=1, dtype=np.float64)
        top = None
    n_obs = g.shape[1] - n_miss
    mean = np.where(n_obs > 0, total / np.maximum(n_obs, 1), 0.0)
    filled = np.where(missing, mean[:, None].astype(dtype), g).astype(dtype, copy=False)
    if top is not None:  # counts: all observed equal the largest one iff their sum says so
        constant = total == n_obs * top
    else:
        constant = (filled.max(axis=1) - filled.min(axis=1) <= 0) if filled.shape[1] else np.ones(g.shape[0], bool)
    status = np.where(n_obs == 0, 1, np.where(constant, 2, 0)).astype(np.int8)
    af = np.where(n_obs > 0, mean / 2.0, np.nan)
    return filled, BlockQC(n_obs.astype(np.int64), af, status)


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
    converged: jnp.ndarray
    finite: jnp.ndarray
    lrt: jnp.ndarray
    p_lrt: jnp.ndarray


def _fit_block(g_rot, const: Constants, *, lrt: bool, grid_size: int, tol: float, max_iter: int) -> BlockFit:
    """Fit every marker of a rotated block ``g_rot`` (b, n) for every trait.  The grid stage
    runs in ``g_rot``'s precision (float32 after a float32 rotation), the exact stage in
    float64."""
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
        delta = jnp.exp(out.log_delta)
        return BlockFit(
            out.beta, out.se, stat, p_chi2, delta * out.sigma2_e, out.sigma2_e, out.loglik,
            out.n_iter + 1, out.converged, out.finite, lrt_stat, p_lrt,
        )  # fmt: skip

    return jax.lax.map(per_trait, (const.y_rot, const.null_ml))


def _rotate_and_fit(g, u, const: Constants, **options) -> BlockFit:
    """Rotate a block ``g`` (b, n) by the eigenvectors ``u`` (n, n), then :func:`_fit_block`."""
    return _fit_block(g @ u, const, **options)


@lru_cache(maxsize=16)
def block_program(lrt: bool, grid_size: int, tol: float, max_iter: int, n_devices: int = 1, rotate: bool = False):
    """The jitted block function for these options: ``(g_rot, const)`` for a block rotated
    beforehand, or with ``rotate`` ``(g, u, const)`` (the rotation inside the program).  With
    ``n_devices > 1`` the block's markers are split across the local devices (``shard_map``,
    one shard per device, ``u`` and ``const`` replicated)."""
    fn = partial(_rotate_and_fit if rotate else _fit_block, lrt=lrt, grid_size=grid_size, tol=tol, max_iter=max_iter)
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
    """Impute one block of allele counts, pad it to ``block_size`` markers, rotate it (by
    numpy on the host when ``u`` is a numpy array, else inside ``program``) and start its fit
    asynchronously: ``(fit, qc)``."""
    g, qc = impute_block(raw, dtype)
    if g.shape[0] < block_size:
        g = np.concatenate([g, np.zeros((block_size - g.shape[0], g.shape[1]), g.dtype)])
    if isinstance(u, np.ndarray):
        # one memory layout for both operands wherever the block runs (BLAS rounds a float32
        # product differently for other layouts, and for arrays that arrive misaligned from
        # a Dask worker's buffers): local, sharded and Dask scans agree exactly
        g = np.ascontiguousarray(g)
        u = _fortran_aligned(u)
        return program(jnp.asarray(g @ u), const), qc
    return program(jnp.asarray(g), u, const), qc


def residual_df(const: Constants) -> int:
    """Denominator degrees of freedom of the Wald F test: ``n - c - 1``."""
    return int(const.d.shape[0] - const.c_rot.shape[0] - 1)


def finish_block(fit: BlockFit, qc: BlockQC, count: int, df: int) -> dict[str, np.ndarray]:
    """Host arrays of one block (first ``count`` markers), with NaN and a status where a
    marker could not be fitted, and ``p_wald`` = P(F(1, ``df``) > stat) (the regularised
    incomplete beta function, evaluated here by scipy: a sixth of the block program's time
    when done inside it).  Every array is (t, count)."""
    from scipy.special import betainc

    host = {k: np.asarray(v)[:, :count] for k, v in fit._asdict().items()}
    with np.errstate(invalid="ignore"):
        host["p_wald"] = betainc(0.5 * df, 0.5, df / (df + host["stat"]))
    t = host["beta"].shape[0]
    status = np.broadcast_to(qc.status[:count], (t, count)).copy()
    status[(status == 0) & ~host["finite"]] = 3
    status[(status == 0) & ~host["converged"]] = 4
    bad = (status != 0) & (status != 4)
    for key in ("beta", "se", "stat", "p_wald", "p_chi2", "sigma2_g", "sigma2_e", "loglik", "lrt", "p_lrt"):
        host[key] = np.where(bad, np.nan, host[key])
    host["n_iter"] = np.where(bad, 0, host["n_iter"])
    host["converged"] = host["converged"] & ~bad
    host["status"] = status
    host["af"] = np.broadcast_to(qc.af[:count], (t, count))
    host["n_obs"] = np.broadcast_to(qc.n_obs[:count], (t, count))
    host.pop("finite")
    return host
