"""``gwas()``: exact two-component marker scans (kinship + error, ReML), streamed from PLINK
files or arrays, with LOCO kinships, several traits, local devices and Dask workers."""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..core._profile_scan import DELTA_BOUNDS, ScanData, ScanOutput, null_fit
from ..errors import MissingDataWarning
from ._block import (
    REFIT_BLOCK,
    STATUS,
    BlockFit,
    Constants,
    Units,
    block_program,
    finish_block,
    merge_refit,
    refit_iterations,
    refit_markers,
    residual_df,
    rotate_float64,
    rotate_on_host,
    screen_block,
    start_block,
)
from ._checkpoint import Checkpoint, fingerprint, source_parts
from ._design import MAX_VIF, Design, Traits, covariate_design, standardised_traits
from ._inputs import (
    align_table,
    check_genotype_array,
    checked_spectrum,
    genotype_source,
    kinship_groups,
    open_kinships,
    progress_bar,
)
from ._io import (
    SNP_COLUMNS,
    GenotypeSource,
    InputError,
    KinshipRead,
    reopen,
)
from ._kinship import KINDS, contiguous_runs
from ._models import ModelOptions, model_scan, read_sets
from ._programs import code_digest, compiled
from ._select import Selection, SelectionReport, sample_mask, select_markers, selection_files

#: Median of the chi-square distribution with 1 df (for the genomic inflation factor).
CHI2_1_MEDIAN = 0.4549364231195724

#: Columns added by ``test="kr"``: the Kenward-Roger F of the marker effect, its denominator
#: degrees of freedom and ``P(F(1, ddf_kr) > f_kr)``.
KR_COLUMNS = ["f_kr", "ddf_kr", "p_kr"]

RESULT_COLUMNS = [
    *SNP_COLUMNS,
    "af",
    "n",
    "n_miss",
    "beta",
    "se",
    "stat",
    "p_wald",
    "p_chi2",
    "lrt",
    "p_lrt",
    "sigma2_g",
    "sigma2_e",
    "h2",
    "loglik",
    "n_iter",
    "converged",
    "status",
]


@dataclass(frozen=True)
class ScanOptions:
    """Static options of a scan (hashable: they select the compiled program)."""

    lrt: bool = False
    grid_size: int = 31
    tol: float = 1e-4
    max_iter: int = 30
    rotation_dtype: str = "float32"
    kr: bool = False  # also the Kenward-Roger test of every marker


class _Programs:
    """The compiled block and null-model programs for one scan's shapes, prepared in a
    background thread (tracing and compiling, or loading from the compilation cache, overlap
    with reading the kinship and its eigendecomposition)."""

    def __init__(self, opts: ScanOptions, block_size: int, n: int, c: int, t: int, n_devices: int, rotate: bool):
        from concurrent.futures import ThreadPoolExecutor

        # JAX imports scipy.linalg when it first lowers a program on the CPU; imported here
        # first, the thread never imports it while this one does (that can deadlock).
        import scipy.linalg  # noqa: F401

        self._pool = ThreadPoolExecutor(max_workers=1)
        self._future = self._pool.submit(self._compile, opts, block_size, n, c, t, n_devices, rotate)
        # then, in the same thread, the program of the float64 refits (used by most scans with
        # a strong association; loaded from the store in a warm run)
        self._refit = self._pool.submit(self._compile_refit, opts, n, c, t, rotate)

    @staticmethod
    @lru_cache(maxsize=8)
    def _compile(opts, block_size, n, c, t, n_devices, rotate):
        f64 = jnp.float64
        spec = jax.ShapeDtypeStruct
        block = _block_executable(
            "block", opts, opts.max_iter, block_size, opts.rotation_dtype, n, c, t, n_devices, rotate
        )
        data = ScanData(spec((n,), f64), spec((c, n), f64), spec((n,), f64))
        nulls = {}
        for m in ("reml", "ml") if opts.lrt else ("reml",):

            def flat_null(*arrays, _m=m):
                return tuple(null_fit(ScanData(*arrays), method=_m, grid_size=opts.grid_size))

            run = compiled(f"null_{m}", flat_null, tuple(data), f"{opts.grid_size} {n} {c}", run_once=True)
            nulls[m] = lambda d, _run=run: ScanOutput(*_run(*d))
        return block, nulls

    @staticmethod
    @lru_cache(maxsize=8)
    def _compile_refit(opts, n, c, t, rotate):
        """The block program for :data:`~.block.REFIT_BLOCK` float64 markers (rotated
        beforehand, or with float64 eigenvectors), with :func:`~.block.refit_iterations`."""
        return _block_executable(
            "refit", opts, refit_iterations(opts.max_iter), REFIT_BLOCK, "float64", n, c, t, 1, rotate, run_once=True
        )

    def get(self):
        return self._future.result()

    def refit(self):
        """The float64 refit program (waits for it)."""
        return self._refit.result()

    def close(self) -> None:
        """Drop the refit program's preparation if it has not started; free the thread."""
        self._refit.cancel()
        self._pool.shutdown(wait=False)


def _block_executable(name, opts, max_iter, size, dtype, n, c, t, n_devices, rotate, run_once=False):
    """The compiled block program for ``size`` markers of ``dtype`` (and the eigenvectors
    when ``rotate``), ``n`` individuals, ``c`` covariates, ``t`` traits: on one device
    exported under ``name`` (:func:`~.programs.compiled`; flat arrays in and out, so the
    stored program needs no pytree registry), else lowered for the device mesh; ``run_once``
    (the refit program): compiled with the cheaper options of :mod:`~.programs`."""
    f64 = jnp.float64
    spec = jax.ShapeDtypeStruct
    const = Constants(spec((n,), f64), spec((c, n), f64), spec((t, n), f64), spec((t,), f64))
    arrays = (spec((size, n), dtype), *((spec((n, n), dtype),) if rotate else ()))
    jitted = block_program(opts.lrt, opts.grid_size, opts.tol, max_iter, n_devices, rotate, opts.kr)
    if n_devices > 1:
        return jitted.lower(*arrays, const).compile()
    k = len(arrays)
    key = f"{opts} {max_iter} {size} {dtype} {n} {c} {t} {rotate}"
    flat = compiled(
        name, lambda *a: tuple(jitted(*a[:k], Constants(*a[k:]))), (*arrays, *const), key, run_once=run_once
    )

    def run(*a):
        return BlockFit(*flat(*a[:k], *a[k]))

    return run


def _import_host_libraries(source: GenotypeSource) -> None:
    """Import the libraries the scan calls on the host (p-values, .bed reader) while a
    kinship file is parsed; the eigendecomposition's (scipy.linalg) comes with
    :class:`_Programs`."""
    import importlib

    import scipy.special  # noqa: F401

    for name in source.libraries:
        importlib.import_module(name)


def eigh(k: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (float64, clipped at 0) and eigenvectors (``dtype``) of a symmetric kinship
    ``k`` (overwritten).  On the CPU backend LAPACK's divide and conquer (``?syevd``) through
    scipy; elsewhere ``jnp.linalg.eigh`` on the device.  Single precision runs at twice the
    speed of double (the rotation's accuracy class: see ``bench/README.md``)."""
    if rotate_on_host():
        from scipy.linalg import eigh as lapack_eigh

        a = k.astype(dtype, copy=False)
        a = a.T if a.flags.c_contiguous else a  # the same symmetric matrix, in LAPACK's order: no copy
        d, u = lapack_eigh(a, lower=True, overwrite_a=True, check_finite=False, driver="evd")
    else:
        d, u = (np.asarray(a) for a in jax.jit(jnp.linalg.eigh)(jnp.asarray(k, dtype=dtype)))
    return d.astype(np.float64), u


def _constants(d: np.ndarray, u: np.ndarray, x: np.ndarray, y: np.ndarray, opts: ScanOptions, nulls_compiled: dict):
    """Rotated design and (standardised) traits, null fits (REML for the report, ML for the
    LRT), from the kinship's eigendecomposition.  Returns the block constants, the
    eigenvectors (a numpy array when blocks are rotated on the host, else on the device), the
    null fits, the rotated design (n, c) and traits (n, t)."""
    c_rot, y_rot = np.hsplit(rotate_float64(u, np.column_stack([x, y])), [x.shape[1]])
    nulls = []
    for j in range(y.shape[1]):
        data = ScanData(jnp.asarray(d), jnp.asarray(c_rot.T), jnp.asarray(y_rot[:, j]))
        reml = nulls_compiled["reml"](data)
        ml = nulls_compiled["ml"](data) if opts.lrt else None
        nulls.append((reml, ml))
    const = Constants(
        d=jnp.asarray(d),
        c_rot=jnp.asarray(c_rot.T),
        y_rot=jnp.asarray(y_rot.T),
        null_ml=jnp.asarray([float(ml.loglik[0]) if ml is not None else np.nan for _, ml in nulls]),
    )
    return const, (u if rotate_on_host() else jnp.asarray(u)), nulls, c_rot, y_rot


@dataclass
class BlockJob:
    """The marker blocks of one missingness pattern and kinship, ready to fit: ``rows`` the
    pattern's individuals, ``runs`` the (start, stop) marker ranges, ``u``/``const`` the
    rotation and null-model constants, ``units`` the reparameterisation, ``program`` the
    compiled block program of this process (executors that fit elsewhere build their own),
    ``scope`` its name in a checkpoint."""

    source: GenotypeSource
    rows: np.ndarray
    runs: list[tuple[int, int]]
    u: object
    const: Constants
    units: Units
    opts: ScanOptions
    block_size: int
    program: object
    scope: str


class LocalExecutor:
    """Blocks in order on this process's ``n_devices`` devices; the next block is read,
    imputed (and rotated on the host) while the devices fit the last.  With a
    :class:`Checkpoint` ``store``, blocks it holds are taken from it and every block done is
    saved to it."""

    def __init__(self, n_devices: int, store: Checkpoint | None = None):
        self.n_devices = n_devices
        self.store = store

    def run(self, job: BlockJob, bar) -> list[dict]:
        store = self.store
        if store is not None:
            store.scope = job.scope
        out: dict[int, dict] = {}
        pending = None

        def collect(k, fit, qc, g, raw):
            out[k] = screen_block(fit, qc, g, raw, job.units)
            if store is not None:
                store.save(job.runs[k], out[k])
            if bar is not None:
                bar.update(g.shape[0])

        for k, (start, stop) in enumerate(job.runs):
            saved = store.load(job.runs[k]) if store is not None else None
            if saved is not None:
                out[k] = saved
                if bar is not None:
                    bar.update(stop - start)
                continue
            raw = job.source.read_counts(job.rows, start, stop, job.opts.rotation_dtype)
            fit, qc, g = start_block(job.program, raw, job.u, job.const, job.block_size, job.opts.rotation_dtype)
            if pending is not None:
                collect(*pending)
            pending = (k, fit, qc, g, raw)
        if pending is not None:
            collect(*pending)
        return [out[k] for k in range(len(job.runs))]


def _remote_block(spec, array_block, rows, start, stop, u, const_host, units, opts: ScanOptions, block_size: int):
    """A Dask task: read (or take) one block, fit it on the worker's device, return its host arrays."""
    jax.config.update("jax_enable_x64", True)
    if array_block is None:
        raw = reopen(spec).read_counts(rows, start, stop, opts.rotation_dtype)
    else:
        raw = array_block
    rotate = not rotate_on_host()
    program = block_program(opts.lrt, opts.grid_size, opts.tol, opts.max_iter, 1, rotate, opts.kr)
    const = Constants(*(jnp.asarray(a) for a in const_host))
    u = jnp.asarray(u) if rotate else u
    fit, qc, g = start_block(program, raw, u, const, block_size, opts.rotation_dtype)
    return screen_block(fit, qc, g, raw, units)


class DaskExecutor:
    """Blocks as tasks of a ``dask.distributed.Client``: each worker reads its block (PLINK
    files) or receives it (arrays) and fits it on one device."""

    n_devices = 1

    def __init__(self, client):
        self.client = client

    def run(self, job: BlockJob, bar) -> list[dict]:
        client = self.client
        u_future, const_future = client.scatter([np.asarray(job.u), [np.asarray(a) for a in job.const]], broadcast=True)
        futures = []
        src = job.source
        spec = src.spec()
        for start, stop in job.runs:
            block = None if spec is not None else src.read_counts(job.rows, start, stop, job.opts.rotation_dtype)
            args = (
                spec,
                block,
                job.rows,
                start,
                stop,
                u_future,
                const_future,
                job.units,
                job.opts,
                job.block_size,
            )
            futures.append(client.submit(_remote_block, *args, pure=False))
        from distributed import as_completed

        sizes = {fut.key: stop - start for fut, (start, stop) in zip(futures, job.runs)}
        for fut in as_completed(futures):
            if bar is not None:
                bar.update(sizes[fut.key])
        return [f.result() for f in futures]


@dataclass
class _Pattern:
    """Traits observed on the same individuals (with the covariates): one eigendecomposition
    and one rotation serve them all."""

    traits: list[str]
    rows: np.ndarray
    design: Design
    y: Traits

    @property
    def n(self) -> int:
        return int(self.rows.size)

    def units(self) -> Units:
        """The reparameterisation's effect on a marker model's results (see :class:`Units`)."""
        p = self.design.x.shape[1] + 1
        shift = self.design.log_det_t - (self.n - p) * np.log(self.y.scale)
        return Units(self.y.scale, shift, self.design.basis)


def _patterns(pheno: pd.DataFrame, covar: pd.DataFrame | None, ids: np.ndarray, max_vif: float) -> list[_Pattern]:
    """Group the traits by the individuals they are analysed on (trait and every covariate
    observed), in order of first appearance; check and standardise each group's design."""
    covar_ok = covar.notna().all(axis=1).to_numpy() if covar is not None else np.ones(len(pheno), bool)
    for name in [] if covar is None else covar.columns:
        if covar[name].isna().all():
            raise InputError(f"covariate {name!r} has no observed value among the genotyped individuals")
    groups: dict[bytes, list[str]] = {}
    masks: dict[bytes, np.ndarray] = {}
    for name in pheno.columns:
        seen = pheno[name].notna().to_numpy()
        if not seen.any():
            raise InputError(f"trait {name!r} has no observed value among the genotyped individuals")
        keep = seen & covar_ok
        if not keep.any():
            raise InputError(
                f"trait {name!r}: no individual has both the trait and every covariate observed "
                f"({int(seen.sum())} with the trait, {int(covar_ok.sum())} with the covariates)"
            )
        key = keep.tobytes()
        groups.setdefault(key, []).append(str(name))
        masks[key] = keep
    out = []
    cov_names = [] if covar is None else [str(c) for c in covar.columns]
    for key, traits in groups.items():
        rows = np.flatnonzero(masks[key])
        cov = np.empty((rows.size, 0)) if covar is None else covar.to_numpy(float)[rows]
        try:
            design = covariate_design(cov, cov_names, ids[rows], max_vif)
        except InputError as err:
            where = f" (over the individuals of trait(s) {traits})" if len(groups) > 1 else ""
            raise InputError(f"{err}{where}") from None
        if rows.size <= design.x.shape[1] + 2:
            raise InputError(
                f"trait(s) {traits}: {rows.size} individuals with the trait and covariates observed, too few for "
                f"{design.x.shape[1] + 1} fixed effects"
            )
        y = standardised_traits(pheno[traits].to_numpy(float)[rows], traits, ids[rows], design)
        out.append(_Pattern(traits, rows, design, y))
    return out


def gwas(
    phenotypes,
    genotypes,
    kinship=None,
    covariates=None,
    *,
    pheno_names: Sequence[str] | None = None,
    covar_names: Sequence[str] | None = None,
    loco: bool = False,
    lrt: bool = False,
    chunk_size: int = 2048,
    rotation_dtype: str = "float32",
    grid_size: int = 31,
    tol: float = 1e-4,
    max_iter: int = 30,
    max_vif: float = MAX_VIF,
    devices: int | None = None,
    client=None,
    progress: bool = True,
    sample_ids: Sequence | None = None,
    checkpoint: str | os.PathLike | None = None,
    select: Selection | None = None,
    grm_kind: str = "standardised",
    random: Sequence[str] = (),
    gxe: str | None = None,
    sets=None,
    test: str = "wald",
) -> pd.DataFrame:
    """Exact mixed-model marker scan: for every marker (and trait), the ReML fit of
    ``y = C a + g b + u + e``, ``u ~ N(0, sigma2_g K)``, ``e ~ N(0, sigma2_e I)``, and the
    Wald test of ``b = 0`` (optionally the likelihood-ratio test from ML fits).

    Parameters
    ----------
    phenotypes : a file (tab/space separated, header ``FID IID <traits>``), a DataFrame with
        FID/IID columns or IIDs as index (else rows in genotype order), a Series or an
        (n,) / (n, t) array in genotype order.  Each trait is analysed on the individuals
        where it and every covariate are observed; traits observed on the same individuals
        share one eigendecomposition and rotation.
    genotypes : a PLINK 1 prefix (``.bed/.bim/.fam``; allele counts of A1), a PLINK 2 prefix
        or ``.pgen`` (ALT counts or dosages), a ``.vcf[.gz]``/``.bcf`` (GT), a source opened by
        :func:`open_bgen`, :func:`open_vcf` (dosage field) or :func:`open_bimbam` (all streamed
        in blocks of ``chunk_size`` markers), or an (n, m) array / DataFrame of allele counts or
        dosages (NaN missing).  The counted allele is the output's ``a1``.
    kinship : None (GRM from the genotypes, ``grm_kind``), an (n, n) array in genotype order,
        or a file: GEMMA's n x n text or ``.npy`` (rows in genotype order: their shape is
        checked, they carry no IDs), or PLINK 2's ``.rel.bin`` / ``.rel`` with its ``.rel.id``
        (matched by ID).  With ``loco=True``, a mapping chromosome -> kinship (of the other
        chromosomes' markers) gives the LOCO kinships.
    grm_kind : ``"standardised"`` (GEMMA's ``-gk 2``) or ``"centred"`` (GEMMA's ``-gk 1``): the
        kinship built from the genotypes when ``kinship`` is None (see :func:`kinship_matrix`).
    select : a :class:`Selection` of individuals and markers (keep/remove, extract/exclude,
        chromosomes, maf, mac, geno), applied to the scan and to the GRM built from the genotypes.
    covariates : like ``phenotypes``; an intercept is always added.
    pheno_names, covar_names : columns to use (default all).
    loco : leave one chromosome out: markers of each chromosome are tested with a kinship
        built from the other chromosomes (one GRM and one eigendecomposition per chromosome;
        the GRM over the analysed individuals, of kind ``grm_kind``).
    lrt : also fit every marker model by ML and report the likelihood-ratio test.
    chunk_size : markers per block (rounded up to a multiple of 64 per device; memory grows
        with it, not with m).
    rotation_dtype : ``"float32"`` (default: the kinship's eigendecomposition and the rotation
        ``U'g`` in single precision, at twice the speed, on centred and scaled markers; markers
        that did not converge, are nearly collinear with the covariates or have a Wald
        statistic above 50 (p ~ 2.6e-12) are fitted again from a float64 eigendecomposition;
        p-values within 1e-4 in log10 of the float64 path, see ``bench/README.md``) or
        ``"float64"``.
    grid_size, tol, max_iter : the optimiser (``delta = sigma2_g / sigma2_e`` in
        ``[1e-5, 1e5]`` as GEMMA; ``tol`` bounds the last Newton step in ``log delta``).
    max_vif : covariates whose variance inflation factor exceeds this are an error.
    devices : local JAX devices to split each block over (default: all).
    client : a ``dask.distributed.Client``: blocks become tasks on its workers.
    progress : show progress bars (tqdm).
    sample_ids : IDs of the rows of an array ``genotypes`` (to match tables by IID).
    checkpoint : a folder where every completed block is saved; a scan of the same inputs
        and options given the same folder takes the blocks found there (a killed run goes on
        where it stopped, with the results of an uninterrupted run).  Not with ``client``.
    random, gxe, sets, test : models beyond one kinship (each marker or set model fitted at its
        exact optimum by ``mmest``'s engine, variance components re-estimated per model; see
        :mod:`mm4lmm_jax.gwas._models`).  ``kinship`` may then be a list of kinships (None for
        the GRM of the genotypes, the one left out per chromosome with ``loco``); ``random``
        names covariate columns whose levels are iid group effects (variance components);
        ``gxe`` a covariate column E (numeric: continuous; text: a factor): the model adds E and
        marker x E, ``beta``/``stat``/``p_wald`` test the interaction (df = levels - 1) and
        ``*_joint`` the marker and interaction together; ``sets`` a file (set name then marker
        IDs per line) or a mapping name -> marker IDs: one joint test per set (df = its
        markers); ``test="kr"`` adds Kenward-Roger ``f_kr``, ``ddf_kr``, ``p_kr``.  One
        ``sigma2_<name>`` column per component.  Not with ``client``; ``checkpoint`` saves
        blocks of ``chunk_size`` markers or sets.  With one kinship and no other of these,
        ``test="kr"`` runs in this scan itself (its table, plus the three KR columns, computed
        in each block from the rotated markers; ``client`` and ``devices`` work).

    Returns
    -------
    DataFrame with one row per marker (and trait; column ``trait`` when several): chr, snp,
    pos, a1, a2, af (frequency of a1 among the analysed), n (analysed for this trait), n_miss
    (imputed), beta, se, stat (Wald, ``(beta/se)^2``), p_wald (F(1, n - p) as GEMMA), p_chi2
    (chi-square(1), as MM4LMM's AnovaTest), lrt, p_lrt (NaN unless ``lrt``), sigma2_g, sigma2_e,
    h2 (``sigma2_g tr(K)/n`` over the total), loglik (ReML, 2 pi included), n_iter (exact
    evaluations), converged, status (``ok``, ``all missing``, ``monomorphic``, ``collinear
    with covariates``, ``not converged``; every number of a row that is not ``ok`` is NaN).
    ``attrs`` holds the metadata: individuals analysed per trait and dropped, imputation,
    kinship, null models, the genomic inflation ``lambda_gc`` per trait (``ok`` rows only;
    their count in ``lambda_gc_n``), and ``timings``: wall seconds per step of the one-kinship
    scan (kinship, eigendecomposition, programs, null models, marker blocks, float64 refits).
    """
    kinships = tuple(kinship) if isinstance(kinship, (list, tuple)) else (kinship,)
    if isinstance(sets, (str, os.PathLike)):
        sets = read_sets(sets)
    model = ModelOptions(kinships, tuple(random), gxe, sets, test, lrt)
    if model.general():
        if client is not None:
            raise InputError("scans with several random effects, G x E, sets or KR run locally (not with client)")
        if isinstance(kinship, dict):
            raise InputError("LOCO with given per-chromosome kinships is for the one-kinship scan")
        store = None
        if checkpoint is not None:
            given = genotypes if not isinstance(genotypes, GenotypeSource) else source_parts(genotypes)
            parts = (phenotypes, given, *kinships, covariates, pheno_names, covar_names, sample_ids,
                     select.fingerprint() if select is not None else None, *selection_files(select), model,
                     grm_kind, loco, chunk_size, max_vif, code_digest())  # fmt: skip
            store = Checkpoint(checkpoint, fingerprint(*parts))
        return model_scan(
            phenotypes,
            genotypes,
            covariates,
            model,
            store=store,
            pheno_names=pheno_names,
            covar_names=covar_names,
            loco=loco,
            chunk_size=min(chunk_size, 1024),
            select=select,
            grm_kind=grm_kind,
            sample_ids=sample_ids,
            progress=progress,
            max_vif=max_vif,
        )
    kinship = kinships[0]
    plan = prepare_scan(
        phenotypes,
        genotypes,
        kinship,
        covariates,
        pheno_names=pheno_names,
        covar_names=covar_names,
        loco=loco,
        lrt=lrt,
        chunk_size=chunk_size,
        rotation_dtype=rotation_dtype,
        grid_size=grid_size,
        tol=tol,
        max_iter=max_iter,
        max_vif=max_vif,
        devices=devices,
        sample_ids=sample_ids,
        select=select,
        grm_kind=grm_kind,
        test=test,
    )
    if client is not None:
        executor: LocalExecutor | DaskExecutor = DaskExecutor(client)
    else:
        store = None
        if checkpoint is not None:
            given = genotypes if not isinstance(genotypes, GenotypeSource) else source_parts(genotypes)
            inputs = (phenotypes, given, kinship, covariates, pheno_names, covar_names, sample_ids)
            # the package's code is part of the fingerprint: another version never reuses these blocks
            files = (*plan.source.files, *selection_files(select))
            extra = (select.fingerprint() if select is not None else None, *files)
            parts = (*inputs, *extra, grm_kind, loco, plan.opts, chunk_size, max_vif, plan.n_devices, code_digest())
            store = Checkpoint(checkpoint, fingerprint(*parts))
        executor = LocalExecutor(plan.n_devices, store)
    result = run_scan(plan, executor, progress=progress)
    dropped = {t: result.meta["n_dropped_missing"][t] for t in result.traits if result.meta["n_dropped_missing"][t]}
    if dropped:
        n_of = result.meta["n_analysed"]
        text = ", ".join(f"{t}: {n_of[t]} analysed, {k} dropped" for t, k in dropped.items())
        warnings.warn(
            f"of {plan.source.n} genotyped individuals, some lack a phenotype or covariate ({text})",
            MissingDataWarning,
            stacklevel=2,
        )
    return result.frame()


@dataclass
class ScanPlan:
    """A checked scan, ready to run (:func:`prepare_scan`): the genotype ``source``, the
    aligned ``pheno`` table, its traits grouped by missingness pattern, the kinship as given,
    the options, the block size and the local devices to use."""

    source: GenotypeSource
    pheno: pd.DataFrame
    patterns: list[_Pattern]
    kinship: object
    loco: bool
    opts: ScanOptions
    block_size: int
    n_devices: int
    pheno_extra: int
    covar_extra: int
    selection: SelectionReport
    grm_kind: str = "standardised"


@dataclass
class ScanResult:
    """What a scan gives: ``table`` (one row per marker and trait, :data:`RESULT_COLUMNS`)
    and ``meta`` (individuals, kinship, null models, genomic inflation...)."""

    table: pd.DataFrame
    meta: dict
    traits: list[str]

    def frame(self) -> pd.DataFrame:
        """The table with ``meta`` in its ``attrs`` (what :func:`gwas` returns)."""
        self.table.attrs.update(self.meta)
        return self.table


def prepare_scan(
    phenotypes,
    genotypes,
    kinship=None,
    covariates=None,
    *,
    pheno_names: Sequence[str] | None = None,
    covar_names: Sequence[str] | None = None,
    loco: bool = False,
    lrt: bool = False,
    chunk_size: int = 2048,
    rotation_dtype: str = "float32",
    grid_size: int = 31,
    tol: float = 1e-4,
    max_iter: int = 30,
    max_vif: float = MAX_VIF,
    devices: int | None = None,
    sample_ids: Sequence | None = None,
    select: Selection | None = None,
    grm_kind: str = "standardised",
    test: str = "wald",
) -> ScanPlan:
    """Check and align the inputs of a scan (arguments as :func:`gwas`); reads no kinship yet,
    and genotypes only for a selection by frequency or missingness (one pass)."""
    opts = _options(lrt, grid_size, tol, max_iter, rotation_dtype, test)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    source = genotype_source(genotypes, sample_ids)
    check_genotype_array(source)
    report = SelectionReport()
    kept = sample_mask(source, select, report)
    pheno, pheno_extra = align_table(phenotypes, source, "phenotype", pheno_names)
    pheno = pheno.where(pd.Series(kept, index=pheno.index), axis=0)  # individuals not kept: as if unphenotyped
    covar, covar_extra = (None, 0) if covariates is None else align_table(covariates, source, "covariate", covar_names)
    if kinship is not None and loco and not isinstance(kinship, dict):
        raise InputError(
            "loco=True builds one kinship per chromosome from the genotypes (kinship=None), or takes one per "
            "chromosome as a mapping {chromosome: kinship}"
        )
    if isinstance(kinship, dict) and not loco:
        raise InputError("a kinship per chromosome (a mapping) is for loco=True")
    if grm_kind not in KINDS:
        raise InputError(f"grm_kind must be one of {KINDS}, got {grm_kind!r}")
    patterns = _patterns(pheno, covar, source.iid.astype(str), max_vif)
    source = select_markers(source, select, np.flatnonzero(kept), report)
    if loco and source.snps["chr"].astype(str).nunique() < 2:
        raise InputError(
            f"loco=True needs markers on at least two chromosomes; all {source.m} are on chromosome "
            f"{source.snps['chr'].astype(str).iloc[0] if source.m else '?'} (use the GRM of all markers instead)"
        )
    n_dev = devices if devices is not None else jax.local_device_count()
    n_dev = max(1, min(int(n_dev), jax.local_device_count()))
    unit = 64 * n_dev
    block_size = int(-(-min(chunk_size, max(source.m, 1)) // unit) * unit)
    return ScanPlan(
        source, pheno, patterns, kinship, loco, opts, block_size, n_dev, pheno_extra, covar_extra, report, grm_kind
    )


def run_scan(plan: ScanPlan, executor: LocalExecutor | DaskExecutor, *, progress: bool = True) -> ScanResult:
    """Run a prepared scan: per missingness pattern and kinship (one per chromosome with
    LOCO), the eigendecomposition, the null models, the blocks (by ``executor``), the float64
    refits; then one table."""
    source, opts, block_size = plan.source, plan.opts, plan.block_size
    kinship = plan.kinship
    rotate = not rotate_on_host()
    programs: dict = {}
    reading, readers = open_kinships(kinship, source)
    # from here on the kinship file's text is parsed by worker processes
    bar = None
    parts: list[tuple[np.ndarray, dict, list[str], int]] = []
    nulls_meta: dict = {}
    spectra: dict = {}
    patterns = plan.patterns
    c = patterns[0].design.x.shape[1]
    clock = _StepClock()
    try:
        _import_host_libraries(source)
        # The programs load (holding the GIL much of the time) while the kinship is parsed (by
        # worker processes) or computed (numpy releases the GIL).
        for pat in patterns:
            key = (pat.n, len(pat.traits))
            if key not in programs:
                programs[key] = _Programs(opts, block_size, pat.n, c, len(pat.traits), executor.n_devices, rotate)
        descriptions = None
        for pat in patterns:
            with clock("kinship"):  # the GRM from the markers is computed here; a file is parsed in kin_fn
                groups = kinship_groups(reading, source, pat.rows, plan.loco, block_size, progress, plan.grm_kind)
            descriptions = descriptions or [g[3] for g in groups]
            units = pat.units()
            for label, idx, kin_fn, _ in groups:
                with clock("kinship"):
                    kin = kin_fn(opts.rotation_dtype)
                with clock("eigendecomposition"):
                    d, u = eigh(kin, opts.rotation_dtype)  # overlaps with loading the programs
                del kin
                name = "kinship" if label == "all" else f"kinship without chromosome {label}"
                if isinstance(reading, KinshipRead):
                    name = f"kinship file {reading.path}"
                elif isinstance(reading, dict) and isinstance(reading[label], (str, os.PathLike)):
                    name = f"kinship file {reading[label]}"
                d, spectrum = checked_spectrum(d, name, opts.rotation_dtype)
                spectra[(tuple(pat.traits), label)] = spectrum
                if bar is None:  # once the first kinship is read and checked (a bad file ends without a bar)
                    bar = progress_bar(source.m * len(patterns), progress, "gwas")
                with clock("programs (compile or load)"):
                    block_compiled, nulls_compiled = programs[(pat.n, len(pat.traits))].get()
                with clock("null models"):
                    const, u, nulls, c_rot, y_rot = _constants(d, u, pat.design.x, pat.y.y, opts, nulls_compiled)
                _null_report(nulls_meta, label, pat, nulls, d, c_rot, y_rot)
                runs = contiguous_runs(idx, block_size)
                job = BlockJob(
                    source, pat.rows, runs, u, const, units, opts, block_size, block_compiled,
                    f"{'+'.join(pat.traits)}.{label}.",
                )  # fmt: skip
                with clock("marker blocks (read, rotate, fit)"):
                    blocks = executor.run(job, bar)
                prepared = programs[(pat.n, len(pat.traits))]
                with clock("float64 refits"):
                    _refit_group(source, pat, runs, blocks, kin_fn, (u, const), opts, prepared)
                df = residual_df(const)
                del u, const, job
                mean_d = float(np.mean(d))
                for (start, stop), blk in zip(runs, blocks):
                    blk = finish_block(blk, df, units)
                    blk["h2"] = blk["sigma2_g"] * mean_d / (blk["sigma2_g"] * mean_d + blk["sigma2_e"])
                    parts.append((np.arange(start, stop), blk, pat.traits, pat.n))
    finally:
        for prepared in programs.values():
            prepared.close()
        for one in readers:
            one.close()  # stops the parse if it was not waited for
        if bar is not None:
            bar.close()

    traits = [str(t) for t in plan.pheno.columns]
    frame, refitted = _assemble(source, parts, traits, plan.opts.kr)
    by_trait = {t: frame[frame["trait"] == t] if "trait" in frame else frame for t in traits}
    n_of = {t: pat.n for pat in patterns for t in pat.traits}
    store = getattr(executor, "store", None)
    meta = dict(
        n_genotyped=source.n,
        n_markers=source.m,
        n_analysed=n_of,
        n_dropped_missing={t: int(plan.selection.n_samples - n_of[t]) for t in traits},
        selection=plan.selection.as_dict(),
        n_phenotyped_not_genotyped=plan.pheno_extra,
        n_covariates_not_genotyped=plan.covar_extra,
        covariates=patterns[0].design.names,
        missingness_patterns=[list(p.traits) for p in patterns],
        imputation="missing genotypes mean-imputed per marker over the analysed individuals; af over them too",
        kinship=descriptions if plan.loco else descriptions[0],
        kinship_spectrum={f"{'+'.join(k[0])} / {k[1]}": v for k, v in spectra.items()},
        loco=plan.loco,
        null_models=nulls_meta,
        rotation_dtype=opts.rotation_dtype,
        n_refitted_float64=refitted,
        n_blocks_resumed=store.loaded if store is not None else 0,
        status_counts={t: _counts(part["status"]) for t, part in by_trait.items()},
        lambda_gc={t: genomic_inflation(part["stat"].where(part["status"] == "ok")) for t, part in by_trait.items()},
        lambda_gc_n={t: int((part["status"] == "ok").sum()) for t, part in by_trait.items()},
        timings=clock.seconds,
    )
    return ScanResult(frame, meta, traits)


class _StepClock:
    """Wall seconds spent in each named step of a scan (summed over patterns and LOCO groups)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start


def _counts(status: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in status.value_counts().items() if v}


def _refit_group(source, pat: _Pattern, runs, blocks, kin_fn, rotation, opts: ScanOptions, programs) -> None:
    """Fit the markers the screen marked (:func:`~.block.screen_block`) again by the exact
    float64 path, in place in ``blocks``: after a float32 scan from a float64
    eigendecomposition of the same kinship (computed only when some marker needs it), after a
    float64 scan from its own ``rotation`` ``(u, const)``."""
    where = [np.flatnonzero(blk["refit"]) for blk in blocks]
    idx = np.concatenate([np.arange(start, stop)[w] for (start, stop), w in zip(runs, where)])
    if idx.size == 0:
        return
    if opts.rotation_dtype == "float64":
        u, const = rotation
    else:
        d, u = eigh(kin_fn("float64"), "float64")
        const, u, *_ = _constants(np.clip(d, 0.0, None), u, pat.design.x, pat.y.y, opts, programs.get()[1])
    again = refit_markers(source.read_markers(pat.rows, idx), u, const, programs.refit())
    done = 0
    for blk, w in zip(blocks, where):
        if w.size:
            merge_refit(blk, w, {k: v[:, done : done + w.size] for k, v in again.items()})
            done += w.size


def _options(lrt, grid_size, tol, max_iter, rotation_dtype, test: str = "wald") -> ScanOptions:
    """Checked :class:`ScanOptions`."""
    try:
        dtype = None if rotation_dtype is None else str(np.dtype(rotation_dtype))
    except TypeError:
        dtype = None
    if dtype not in ("float32", "float64"):
        raise ValueError(f"rotation_dtype must be 'float32' or 'float64', got {rotation_dtype!r}")
    if isinstance(grid_size, bool) or not float(grid_size).is_integer() or int(grid_size) < 3:
        raise ValueError(f"grid_size must be an integer >= 3, got {grid_size!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"tol must be a number in (0, 1) (a step in log delta), got {tol!r}")
    if isinstance(max_iter, bool) or not float(max_iter).is_integer() or int(max_iter) < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if test not in ("wald", "kr"):
        raise InputError(f"test must be 'wald' or 'kr', got {test!r}")
    return ScanOptions(bool(lrt), int(grid_size), float(tol), int(max_iter), dtype, test == "kr")


def _null_report(meta: dict, label: str, pat: _Pattern, nulls, d: np.ndarray, c_rot: np.ndarray, y_rot) -> None:
    """Null models in the user's units: sigma2_g, sigma2_e, h2 (trace of K as given) and
    GEMMA's pve (K centred over the analysed individuals), each with GEMMA's SE (the
    observed curvature of the profiled ReML log-likelihood in ``delta``, by the delta
    method), and the ReML log-likelihood.  ``c_rot`` (n, c) the rotated design (intercept
    first), ``y_rot`` (n, t) the rotated standardised traits."""
    n = pat.n
    mean_d = float(np.mean(d))
    # tr(H K H) / n with H the centring matrix: (tr K - 1'K1 / n) / n, 1'K1 = sum d (U'1)^2
    centred = (float(np.sum(d)) - float(np.sum(d * c_rot[:, 0] ** 2)) / n) / n
    c = pat.design.x.shape[1]
    for j, trait in enumerate(pat.traits):
        reml = nulls[j][0]
        scale2 = float(pat.y.scale[j]) ** 2
        s2e_std = float(reml.sigma2_e[0])
        delta = float(np.exp(reml.log_delta[0]))
        se_delta = _delta_se(d, c_rot, y_rot[:, j], float(reml.log_delta[0]))
        ll = float(reml.loglik[0]) + pat.design.log_det_t - (n - c) * math.log(float(pat.y.scale[j]))
        meta.setdefault(trait, {})[label] = {
            "n": n,
            "sigma2_g": delta * s2e_std * scale2,
            "sigma2_e": s2e_std * scale2,
            "h2": delta * mean_d / (delta * mean_d + 1.0),
            "h2_se": mean_d / (delta * mean_d + 1.0) ** 2 * se_delta,
            "pve_gemma": delta * centred / (delta * centred + 1.0),
            "pve_gemma_se": centred / (delta * centred + 1.0) ** 2 * se_delta,
            "loglik": ll,
            "converged": bool(reml.converged[0]),
        }


def _delta_se(d: np.ndarray, c_rot: np.ndarray, y_rot: np.ndarray, t: float, h: float = 1e-3) -> float:
    """``sqrt(-1 / l''(delta))`` of the profiled ReML log-likelihood of the null model at its
    optimum ``t = log delta`` (GEMMA's ``CalcPve``), with ``l''(delta) = l''(t) / delta^2``
    (``l'(t) = 0`` there); ``l''(t)`` by a central difference of step ``h`` (error ~1e-7
    relative), in numpy (no compiled program for one number)."""
    n, c = c_rot.shape

    def loglik(tt: float) -> float:
        w = 1.0 / (math.exp(tt) * d + 1.0)
        xw = c_rot * w[:, None]
        xwx = c_rot.T @ xw
        xwy = xw.T @ y_rot
        chol = np.linalg.cholesky(xwx)
        z = np.linalg.solve(chol, xwy)
        ypy = float(y_rot @ (w * y_rot) - z @ z)
        logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))
        return -0.5 * ((n - c) * math.log(ypy) - float(np.sum(np.log(w))) + logdet)

    try:
        second = (loglik(t + h) - 2.0 * loglik(t) + loglik(t - h)) / (h * h)
    except np.linalg.LinAlgError:
        return float("nan")
    curvature = second / math.exp(2.0 * t)
    return math.sqrt(-1.0 / curvature) if curvature < 0 else float("nan")


def genomic_inflation(stat) -> float:
    """``median(chi2 statistics) / median(chi2_1)`` over the finite statistics."""
    s = np.asarray(stat, dtype=float)
    s = s[np.isfinite(s)]
    return float(np.median(s) / CHI2_1_MEDIAN) if s.size else float("nan")


def _assemble(source: GenotypeSource, parts, traits, kr: bool = False) -> tuple[pd.DataFrame, dict]:
    """One frame of every trait's markers (traits in the order given, markers in file order);
    and the count of markers refitted in float64 per trait."""
    per_trait: dict[str, list] = {t: [] for t in traits}
    for order, blk, names, n in parts:
        for j, trait in enumerate(names):
            per_trait[trait].append((order, {k: v[j] for k, v in blk.items()}, n))
    frames = []
    refitted = {}
    for trait in traits:
        pieces = per_trait[trait]
        order = np.concatenate([p[0] for p in pieces])
        cat = {k: np.concatenate([p[1][k] for p in pieces]) for k in pieces[0][1]}
        perm = np.argsort(order, kind="stable")
        cat = {k: v[perm] for k, v in cat.items()}
        f = source.snps.iloc[order[perm]].reset_index(drop=True)
        n = pieces[0][2]
        f.insert(len(f.columns), "af", cat["af"])
        f["n"] = n
        f["n_miss"] = n - cat["n_obs"]
        if len(traits) > 1:
            f["trait"] = trait
        for key in RESULT_COLUMNS[len(SNP_COLUMNS) + 3 :]:
            if key == "status":
                f[key] = pd.Categorical.from_codes(cat["status"], categories=list(STATUS.values()))
            else:
                f[key] = cat[key]
        if kr:
            for key in KR_COLUMNS:
                f[key] = cat[key]
        refitted[trait] = int(np.sum(cat["refitted"]))
        frames.append(f)
    return (pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]), refitted


__all__ = [
    "DELTA_BOUNDS",
    "RESULT_COLUMNS",
    "BlockJob",
    "DaskExecutor",
    "LocalExecutor",
    "ScanOptions",
    "ScanPlan",
    "ScanResult",
    "genomic_inflation",
    "gwas",
    "prepare_scan",
    "run_scan",
]
