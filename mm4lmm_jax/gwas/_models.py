"""Scans of models beyond one kinship: several random effects, gene-by-environment, marker sets
and Kenward-Roger tests, streamed from genotype files.

Every marker (or set) model is ``y = C a + E e + G b [+ (G o E) c] + sum_k Z_k u_k + error``
fitted at its exact ReML optimum by ``mmest``'s engine (:class:`~mm4lmm_jax._estimate.PreparedModel`:
Newton on the expansion around the null optimum for three or more variance components, MM at
tight criteria for two), prepared once per trait and chromosome (LOCO), one block of markers at
a time.  Covariates enter through the scale-free design of :mod:`._design` (an orthonormal
basis), traits are standardised, and every reported number is in the user's units.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core._iterate import Status
from ..errors import InputError, InputWarning, MissingDataWarning
from ._design import MAX_VIF, covariate_design, standardised_traits
from ._inputs import (
    align_table,
    check_genotype_array,
    checked_spectrum,
    genotype_source,
    kinship_groups,
    open_kinships,
    progress_bar,
)
from ._io import SNP_COLUMNS, GenotypeSource, KinshipRead, need_file
from ._select import SelectionReport, sample_mask, select_markers

#: A column is collinear with the others when its residual (after the shared design and the
#: set's other columns) keeps less than this share of its centred norm.
COLLINEAR_TOL = 1e-6

STATUS_TEXT = {
    int(Status.OK): "ok",
    int(Status.ALL_MISSING): "all missing",
    int(Status.MONOMORPHIC): "monomorphic",
    int(Status.COLLINEAR): "collinear with covariates",
    int(Status.MAX_STEPS): "not converged",
    int(Status.NONFINITE): "not converged",
}


@dataclass(frozen=True)
class ModelOptions:
    """What makes a scan go beyond one kinship (see :func:`~mm4lmm_jax.gwas.gwas`).

    ``kinships``: (name, kinship) pairs, kinship None for the GRM of the genotypes (the one left
    out per chromosome with LOCO); ``random``: covariate columns whose levels are iid group
    effects; ``gxe``: the environment column; ``sets``: set name -> marker IDs; ``test``:
    ``"wald"`` or ``"kr"``; ``lrt``: also the likelihood-ratio test (ML fits)."""

    kinships: tuple = ()
    random: tuple[str, ...] = ()
    gxe: str | None = None
    sets: Mapping[str, Sequence[str]] | None = None
    test: str = "wald"
    lrt: bool = False
    extra_names: tuple[str, ...] = field(default=())

    def general(self) -> bool:
        """Whether the scan needs this module (else the two-component kernel serves it, with
        its Kenward-Roger tests for ``test="kr"``)."""
        return len(self.kinships) > 1 or bool(self.random) or self.gxe is not None or self.sets is not None


def read_sets(path: str | os.PathLike) -> dict[str, list[str]]:
    """Marker sets from a text file: one set per line, its name then its marker IDs (separated
    by tabs or spaces), or one ``SET MARKER`` pair per line (lines of one name are merged,
    in order); ``#`` starts a comment."""
    p = need_file(path, "set file")
    sets: dict[str, list[str]] = {}
    for number, line in enumerate(Path(p).read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise InputError(f"set file {p}, line {number}: a set name then at least one marker ID, got {line!r}")
        sets.setdefault(fields[0], []).extend(fields[1:])
    if not sets:
        raise InputError(f"set file {p} holds no set")
    return sets


def kinship_names(kinships: Sequence) -> list[str]:
    """A name per kinship (its file's stem, ``grm`` for the one from the genotypes, else
    ``K1``, ``K2``...), made unique; names them in the ``sigma2_<name>`` columns."""
    names = []
    for i, k in enumerate(kinships):
        if k is None:
            name = "grm"
        elif isinstance(k, (str, os.PathLike)):
            name = Path(k).name.split(".")[0] or f"K{i + 1}"
        else:
            name = f"K{i + 1}"
        while name in names:
            name = f"{name}_{i + 1}"
        names.append(name)
    return names


@dataclass
class _Group:
    """Traits observed on the same individuals (with every covariate and factor column)."""

    traits: list[str]
    rows: np.ndarray


def _factor_codes(values: pd.Series, name: str) -> tuple[np.ndarray, list[str]]:
    """Codes (n,) and level names of a factor column (levels sorted as text)."""
    text = values.astype(str)
    levels = sorted(pd.unique(text))
    return np.searchsorted(levels, text.to_numpy()), levels


def _environment(values: pd.Series, name: str) -> tuple[np.ndarray, list[str], tuple[float, float]]:
    """The G x E environment's main-effect columns (n, e): a numeric column centred and scaled
    (the tests do not depend on its units; the effects are put back in them), a text column as
    treatment contrasts against its first level; their names; the centre and scale used
    ((0, 1) for a factor)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        v = numeric.to_numpy(float)
        sd = v.std()
        if not sd > 1e-12 * max(abs(v.mean()), 1e-300):
            raise InputError(f"G x E: environment {name!r} is constant over the analysed individuals")
        levels = np.unique(v)
        if levels.size <= 5 and np.all(levels == np.round(levels)):
            warnings.warn(
                f"G x E: environment {name!r} holds {levels.size} distinct whole numbers {levels.tolist()} and is "
                "treated as continuous (1 df); code its levels as text (e.g. E1, E2) to test it as a factor",
                InputWarning,
                stacklevel=4,
            )
        return ((v - v.mean()) / sd)[:, None], [name], (float(v.mean()), float(sd))
    codes, levels = _factor_codes(values, name)
    if len(levels) < 2:
        raise InputError(f"G x E: environment {name!r} has one level ({levels[0]!r}) among the analysed individuals")
    cols = np.stack([(codes == j).astype(float) for j in range(1, len(levels))], axis=1)
    return cols, [f"{name}{lv}" for lv in levels[1:]], (0.0, 1.0)


def _collinear(extra: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(m,) whether a model's columns ``extra`` (m, n, p1) are (nearly) collinear with the
    orthonormal ``basis`` (n, c) and each other."""
    m, n, p1 = extra.shape
    flat = np.ascontiguousarray(np.moveaxis(extra, 1, 0)).reshape(n, m * p1)
    resid = flat - basis @ (basis.T @ flat)  # (n, m p1): one GEMM each way
    centred = flat - flat.mean(axis=0)
    resid = np.moveaxis(resid.reshape(n, m, p1), 0, 1)
    gram = np.matmul(np.swapaxes(resid, 1, 2), resid)  # (m, p1, p1)
    norm = np.sum(centred * centred, axis=0).reshape(m, p1)
    scale = np.sqrt(np.maximum(norm, 1e-300))
    corr = gram / scale[:, :, None] / scale[:, None, :]
    low = np.linalg.eigvalsh(corr)[:, 0]
    return ~(low > COLLINEAR_TOL**2) | ~(norm > 0).all(axis=1)


def _tests(beta, vb, cols: np.ndarray, n: int, p: int):
    """Wald statistic (m,), p-values F(df, n - p) and chi-square(df) of ``beta[:, cols] = 0``."""
    from scipy import stats

    b = beta[:, cols]
    v = vb[:, cols][:, :, cols]
    with np.errstate(all="ignore"):
        stat = np.einsum("mi,mi->m", b, np.linalg.solve(v, b[..., None])[..., 0])
    df = len(cols)
    return stat, stats.f.sf(stat / df, df, n - p), stats.chi2.sf(stat, df)


def _kr(res, cols: np.ndarray, p: int) -> np.ndarray:
    """Kenward-Roger F, ddf and p-value (m, 3) of ``beta[cols] = 0`` for the models of ``res``."""
    lmat = np.zeros((len(cols), p))
    lmat[np.arange(len(cols)), cols] = 1.0
    from ..inference import anova_test  # loaded on first use: `import mm4lmm_jax` stays light

    table = anova_test(res, tested_combination=lmat, type="KR")
    return table.array[:, 0][:, [0, 2, 3]]  # F, (ndf,) ddf, pval of the one contrast


class _Trait:
    """One trait of a group under one set of components: the ReML engine (and the ML one
    for LRTs), the standardised response and what undoes the standardisation."""

    def __init__(self, y: np.ndarray, scale: float, base: np.ndarray, names, comps, zs, lrt: bool):
        from .._estimate import PreparedModel  # loaded on first use: `import mm4lmm_jax` stays light

        self.scale = scale
        self.reml = PreparedModel(y, base, names, comps, zs, method="reml")
        self.ml = PreparedModel(y, base, names, comps, zs, method="ml") if lrt else None


def _block_extra(g: np.ndarray, env: np.ndarray | None) -> np.ndarray:
    """(m, n, p1) marker columns of a block ``g`` (n, m): the marker, then its products with
    the environment's columns."""
    cols = [g.T[:, :, None]]
    if env is not None:
        cols.append(g.T[:, :, None] * env[None, :, :])
    return np.concatenate(cols, axis=2)


def _impute(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean-imputed block (n, m), allele frequency (m,) of the observed and missing count (m,)."""
    miss = np.isnan(g)
    n_miss = miss.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(g, axis=0) / (g.shape[0] - n_miss)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return np.where(miss, mean, g), mean / 2.0, n_miss


def _fit_models(
    trait: _Trait, extra, names, cnames, tested, joint, n, basis, opts: ModelOptions, reduced_cols, env_units=(0.0, 1.0)
):
    """Fit the models of one block and test them: a dict of columns (m,) in the user's units
    (``env_units``: the centre and scale of a numeric G x E environment, whose interaction
    effect is per unit of it and the marker's main effect at its zero)."""
    m, _, p1 = extra.shape
    c = trait.reml.null.matrix.shape[1]
    p = c + p1
    res = trait.reml.fit(extra, names, cnames)
    beta, vb = res.beta_array[:, :p], res.var_beta_array[:, :p, :p]
    out: dict[str, np.ndarray] = {}
    stat, pw, pc = _tests(beta, vb, c + tested, n, p)
    centre, unit = env_units
    out["beta"] = out["se"] = np.full(m, np.nan)  # one coefficient tested: its effect and SE
    if len(tested) == 1:
        j = c + tested[0]
        out["beta"] = beta[:, j] * trait.scale / (unit if joint is not None else 1.0)
        out["se"] = np.sqrt(vb[:, j, j]) * trait.scale / (unit if joint is not None else 1.0)
    out.update(stat=stat, df=np.full(m, float(len(tested))), p_wald=pw, p_chi2=pc)
    if joint is not None:
        # the main effect at the environment's zero: b_g - b_gxe * centre / unit
        w = np.zeros(p)
        w[c] = 1.0
        if len(tested) == 1:
            w[c + tested[0]] = -centre / unit
        out["beta_marker"] = (beta @ w) * trait.scale
        out["se_marker"] = np.sqrt(np.einsum("i,mij,j->m", w, vb, w)) * trait.scale
        stat_j, pw_j, pc_j = _tests(beta, vb, c + joint, n, p)
        out.update(stat_joint=stat_j, df_joint=np.full(m, float(len(joint))), p_wald_joint=pw_j, p_chi2_joint=pc_j)
    if opts.test == "kr":
        kr = _kr(res, c + tested, p)
        out.update(f_kr=kr[:, 0], ddf_kr=kr[:, 1], p_kr=kr[:, 2])
    if opts.lrt:
        from scipy import stats

        full = trait.ml.fit(extra, names, cnames)
        if reduced_cols.size:
            small = trait.ml.fit(extra[:, :, reduced_cols], names, [cnames[i] for i in reduced_cols])
            ll0, ok0 = small.loglik_array, small.status_array == Status.OK
        else:
            ll0 = np.full(m, float(trait.ml.null_result.loglik_array[0]))
            ok0 = np.ones(m, bool)
        lrt = np.maximum(2.0 * (full.loglik_array - ll0), 0.0)
        lrt = np.where(ok0 & (full.status_array == Status.OK), lrt, np.nan)
        out.update(lrt=lrt, p_lrt=stats.chi2.sf(lrt, len(tested)))
    for k, name in enumerate(res.component_names):
        out[f"sigma2_{name}"] = res.sigma2_array[:, k] * trait.scale**2
    out["loglik"] = res.loglik_array - (n - p) * math.log(trait.scale)
    out["n_iter"] = res.n_iter_array.astype(float)
    out["status_code"] = res.status_array.astype(int)
    return out


def _masked(out: dict[str, np.ndarray], status: np.ndarray) -> dict[str, np.ndarray]:
    """Every number of a model whose status is not OK set to NaN; the status as text."""
    code = np.where(status != Status.OK, status, out.pop("status_code"))
    bad = code != Status.OK
    for key, val in out.items():
        if key != "n_iter":
            out[key] = np.where(bad, np.nan, val)
    out["converged"] = ~bad
    out["status"] = np.array([STATUS_TEXT.get(int(s), "not converged") for s in code], dtype=object)
    return out


#: Eigenvalues below this share of the largest are zero: a kinship of rank r <= n / 2 by this
#: rule is factored as ``Z Z'`` (Z = its r eigenvectors scaled), exact to this relative level.
LOW_RANK_TOL = 1e-10


def _factored(kin: np.ndarray, label: str, factor: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(covariance, incidence)`` of a kinship for ``mmest``'s components: ``(K, None)``, or
    for a low-rank kinship (and ``factor``) ``(I_r, Z)`` with ``Z Z' = K``.  Its spectrum is
    checked (not positive semi-definite: an error naming it)."""
    if not factor:  # two components: the structure decomposes it; only its spectrum is checked here
        checked_spectrum(np.linalg.eigvalsh(kin), label, "float64")
        return kin, None
    d, vec = np.linalg.eigh(kin)
    d, _ = checked_spectrum(d, label, "float64")
    rank = int(np.sum(d > LOW_RANK_TOL * d.max()))
    if rank > kin.shape[0] // 2:
        return kin, None
    return np.eye(rank), vec[:, -rank:] * np.sqrt(d[-rank:])


def _groups(pheno: pd.DataFrame, observed: np.ndarray) -> list[_Group]:
    """Traits grouped by the individuals they are analysed on (trait and every covariate and
    factor column observed)."""
    groups: dict[bytes, list[str]] = {}
    masks: dict[bytes, np.ndarray] = {}
    for name in pheno.columns:
        keep = pheno[name].notna().to_numpy() & observed
        if not keep.any():
            raise InputError(f"trait {name!r}: no individual has the trait and every covariate observed")
        groups.setdefault(keep.tobytes(), []).append(str(name))
        masks[keep.tobytes()] = keep
    return [_Group(traits, np.flatnonzero(masks[key])) for key, traits in groups.items()]


def _marker_sets(source: GenotypeSource, sets: Mapping[str, Sequence[str]], full_ids: set[str]):
    """Each set's marker indices in ``source`` (after the selection): [(name, indices, n_given)].
    A marker ID absent from the genotype file is an error; one removed by the selection is
    left out (the set's ``n_markers`` says how many remain)."""
    index = pd.Index(source.snps["snp"].astype(str))
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise InputError(f"marker sets: marker ID {dup!r} names several markers of the genotype file")
    out = []
    for name, ids in sets.items():
        ids = list(dict.fromkeys(str(i) for i in ids))
        unknown = [i for i in ids if i not in full_ids]
        if unknown:
            raise InputError(
                f"set {name!r}: {len(unknown)} marker ID(s) not in the genotype file, e.g. {unknown[:3]} "
                "(check the IDs, or remove them from the set file)"
            )
        pos = index.get_indexer(ids)
        out.append((str(name), np.sort(pos[pos >= 0]), len(ids)))
    return out


def model_scan(
    phenotypes,
    genotypes,
    covariates,
    opts: ModelOptions,
    *,
    pheno_names=None,
    covar_names=None,
    loco: bool = False,
    chunk_size: int = 256,
    select=None,
    grm_kind: str = "standardised",
    sample_ids=None,
    progress: bool = True,
    max_vif: float = MAX_VIF,
    store=None,
) -> pd.DataFrame:
    """The scan of :func:`~mm4lmm_jax.gwas.gwas` for models beyond one kinship (see
    :class:`ModelOptions`); arguments as there, ``store`` a :class:`~._checkpoint.Checkpoint`
    (marker blocks already in it are taken from it, every block done is saved)."""
    if opts.test not in ("wald", "kr"):
        raise InputError(f"test must be 'wald' or 'kr', got {opts.test!r}")
    if not opts.kinships:
        raise InputError("give at least one kinship (None for the GRM of the genotypes)")
    if loco and sum(k is None for k in opts.kinships) != 1:
        raise InputError(
            "loco=True leaves each chromosome out of the GRM built from the genotypes: give kinship None once"
        )
    source = genotype_source(genotypes, sample_ids)
    check_genotype_array(source)
    source_n = source.n
    full_ids = set(source.snps["snp"].astype(str))
    report = SelectionReport()
    kept = sample_mask(source, select, report)
    pheno, _ = align_table(phenotypes, source, "phenotype", pheno_names)
    pheno = pheno.where(pd.Series(kept, index=pheno.index), axis=0)
    factors = [*opts.random, *([opts.gxe] if opts.gxe is not None else [])]
    if factors and covariates is None:
        raise InputError(f"column(s) {factors} are read from the covariates: give a covariate table")
    covar = None
    if covariates is not None:
        if covar_names is None:
            table, _ = align_table(covariates, source, "covariate", None, numeric=False)
            absent = [c for c in factors if c not in table.columns]
            if absent:
                raise InputError(
                    f"column(s) {absent} (--random/--gxe) are not among the covariates' columns {list(table.columns)}"
                )
            fixed = [c for c in table.columns if c not in factors]
        else:
            fixed = [c for c in covar_names if c not in factors]
        covar = align_table(covariates, source, "covariate", fixed, numeric=True)[0] if fixed else None
    fac = align_table(covariates, source, "covariate", factors, numeric=False)[0] if factors else None
    observed = np.ones(source.n, bool)
    for frame in (covar, fac):
        if frame is not None:
            observed &= frame.notna().all(axis=1).to_numpy()
    groups = _groups(pheno, observed)
    source = select_markers(source, select, np.flatnonzero(kept), report)
    names = list(opts.extra_names) or kinship_names(opts.kinships)
    block = max(1, int(chunk_size))
    sets = _marker_sets(source, opts.sets, full_ids) if opts.sets is not None else None
    ids = source.iid.astype(str)
    readers = [open_kinships(k, source)[0] for k in opts.kinships]
    parts = []
    try:
        for grp in groups:
            rows = grp.rows
            n = rows.size
            cov = np.empty((n, 0)) if covar is None else covar.to_numpy(float)[rows]
            cov_names = [] if covar is None else list(covar.columns)
            env = env_names = None
            env_units = (0.0, 1.0)
            if opts.gxe is not None:
                env, env_names, env_units = _environment(fac[opts.gxe].iloc[rows].reset_index(drop=True), opts.gxe)
                cov = np.column_stack([cov, env])
                cov_names = [*cov_names, *env_names]
            design = covariate_design(cov, cov_names, ids[rows], max_vif)
            basis = design.x / math.sqrt(n)
            traits = standardised_traits(pheno[grp.traits].to_numpy(float)[rows], grp.traits, ids[rows], design)
            zs: dict = {}
            comps: dict = {}
            fixed_kin: dict = {}
            # low-rank kinships (hybrids' Z K Z') as incidence factors: with three or more
            # components the mixed-model equations (Henderson) then replace n x n algebra
            factor = len(names) + len(opts.random) >= 2
            loco_groups = [("all", np.arange(source.m), None)]
            for name, k in zip(names, readers):
                label = f"kinship file {k.path}" if isinstance(k, KinshipRead) else f"kinship {name}"
                found = kinship_groups(k, source, rows, loco and k is None, 4096, progress, grm_kind)
                if loco and k is None:
                    loco_groups = [(lab, idx, fn) for lab, idx, fn, _ in found]
                    loco_name = name
                else:
                    fixed_kin[name] = _factored(found[0][2]("float64"), label, factor)
            for col in opts.random:
                codes, levels = _factor_codes(fac[col].iloc[rows].reset_index(drop=True), col)
                if len(levels) < 2:
                    raise InputError(f"random effect {col!r} has one level among the analysed individuals")
                zs[col] = np.eye(len(levels))[codes]
            for label, idx, fn in loco_groups:
                comps = {}
                for name in names:
                    if name in fixed_kin:
                        comps[name] = fixed_kin[name]
                    else:
                        comps[loco_name] = _factored(fn("float64"), f"GRM without chromosome {label}", factor)
                var_list = {**{c: v for c, (v, _) in comps.items()}, **{c: np.eye(z.shape[1]) for c, z in zs.items()}}
                z_list = {**{c: z for c, (_, z) in comps.items()}, **zs}
                var_list["error"] = z_list["error"] = None
                for t, trait in enumerate(grp.traits):
                    fitted = _Trait(
                        traits.y[:, t], float(traits.scale[t]), design.x, design.names, var_list, z_list, opts.lrt
                    )
                    if sets is None:
                        if store is not None:
                            store.scope = f"{trait}.{label}."
                        parts += _scan_markers(
                            store,
                            source,
                            rows,
                            idx,
                            fitted,
                            (env, env_names, env_units),
                            basis,
                            opts,
                            block,
                            trait,
                            progress,
                        )
                    else:
                        chosen = [s for s in sets if label == "all" or np.isin(s[1], idx).all()]
                        if store is not None:
                            store.scope = f"{trait}.{label}.sets."
                        parts += _scan_sets(store, source, rows, chosen, fitted, basis, opts, block, trait, progress)
    finally:
        for k in readers:
            if isinstance(k, KinshipRead):
                k.close()
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(pheno.columns) < 2 and "trait" in table:
        table = table.drop(columns="trait")
    n_of = {t: int(g.rows.size) for g in groups for t in g.traits}
    dropped = {t: int(pheno[t].notna().sum()) - n_of[t] for t in n_of if int(pheno[t].notna().sum()) > n_of[t]}
    if dropped:
        warnings.warn(
            f"individuals with a trait but a missing covariate were left out ({dropped})",
            MissingDataWarning,
            stacklevel=3,
        )
    from scipy import stats

    by_trait = {t: table[table["trait"] == t] if "trait" in table else table for t in pheno.columns}
    chi2_1 = {t: stats.chi2.isf(part["p_chi2"].to_numpy(float), 1) for t, part in by_trait.items()}
    table.attrs.update(
        n_genotyped=int(source_n),
        n_markers=int(source.m),
        n_tests={t: len(part) for t, part in by_trait.items()},
        status_counts={t: part["status"].value_counts(sort=False).to_dict() for t, part in by_trait.items()},
        lambda_gc={
            t: float(np.nanmedian(v) / 0.4549364231195724) if np.isfinite(v).any() else float("nan")
            for t, v in chi2_1.items()
        },  # fmt: skip
        kinships=[
            str(k) if isinstance(k, (str, os.PathLike)) else ("GRM" if k is None else "array") for k in opts.kinships
        ],  # fmt: skip
        n_analysed=n_of,
        n_blocks_resumed=0 if store is None else store.loaded,
        components=[*names, *opts.random, "error"],
        n_dropped_missing={t: int(pheno[t].notna().sum()) - n_of[t] for t in n_of},
        selection=report.as_dict(),
        model=dict(gxe=opts.gxe, random=list(opts.random), test=opts.test, sets=opts.sets is not None),
    )
    return table


def _scan_markers(store, source, rows, idx, fitted: _Trait, environment, basis, opts, block, trait, progress):
    """One trait's marker models over markers ``idx``, ``block`` at a time: result frames.
    ``environment``: the G x E columns (n, e) or None, their names, and the centre and scale
    of a numeric environment."""
    env, env_names, _ = environment
    n = rows.size
    cnames = ["marker", *([f"marker:{e}" for e in env_names] if env is not None else [])]
    blocks = []
    for start in range(0, idx.size, block):
        sel = idx[start : start + block]
        blocks.append(((int(sel[0]), int(sel[-1]) + 1), sel, sel.size))

    def compute(sel):
        out, status, af, n_miss = _fit_block(source, rows, sel, fitted, environment, basis, opts, cnames)
        return {**out, "pre_status": status, "af": af, "n_miss": n_miss}

    frames = []
    for sel, saved in _resumable(store, blocks, compute, progress_bar(idx.size, progress, f"gwas {trait}")):
        status, af, n_miss = saved.pop("pre_status"), saved.pop("af"), saved.pop("n_miss")
        out = _masked(dict(saved), status)
        snps = source.snps.iloc[sel].reset_index(drop=True)[SNP_COLUMNS]
        frame = pd.concat([snps, pd.DataFrame({"af": af, "n": n, "n_miss": n_miss, **out})], axis=1)
        frame.insert(0, "trait", trait)
        frames.append(frame)
    return frames


def _resumable(store, blocks, compute, bar):
    """For each block ``(key, item, size)``: ``item`` and its arrays, from the checkpoint
    ``store`` under ``key``, else ``compute(item)`` (then saved there); ``bar`` advanced by
    ``size`` per block and closed at the end."""
    try:
        for key, item, size in blocks:
            saved = store.load(key) if store is not None else None
            if saved is None:
                saved = compute(item)
                if store is not None:
                    store.save(key, saved)
            yield item, saved
            if bar is not None:
                bar.update(size)
    finally:
        if bar is not None:
            bar.close()


def _fit_block(source, rows, sel, fitted: _Trait, environment, basis, opts, cnames):
    """Read, screen and fit the markers ``sel`` of one block: the fits' columns (unmasked),
    the status before fitting, allele frequencies and missing counts."""
    env = environment[0]
    n = rows.size
    p1 = len(cnames)
    tested = np.arange(1, p1) if env is not None else np.arange(1)
    joint = np.arange(p1) if env is not None else None
    reduced = np.arange(1) if env is not None else np.arange(0)
    g, af, n_miss = _impute(source.read(rows, int(sel[0]), int(sel[-1]) + 1)[:, sel - sel[0]])
    status = np.full(sel.size, int(Status.OK))
    status[n_miss == n] = int(Status.ALL_MISSING)
    mono = (g.max(axis=0) - g.min(axis=0)) == 0
    status[mono & (status == Status.OK)] = int(Status.MONOMORPHIC)
    extra = _block_extra(g, env)
    coll = _collinear(extra, basis)
    status[coll & (status == Status.OK)] = int(Status.COLLINEAR)
    bad = status != Status.OK
    if bad.any():  # stand-ins keep the batch's shape; their results are masked
        stand = np.linspace(-1.0, 1.0, n) ** 3
        extra[bad] = _block_extra(np.repeat(stand[:, None], int(bad.sum()), axis=1), env)
    names = source.snps["snp"].astype(str).to_numpy()[sel]
    out = _fit_models(fitted, extra, list(names), cnames, tested, joint, n, basis, opts, reduced, environment[2])
    return out, status, af, n_miss


def _scan_sets(store, source, rows, sets, fitted: _Trait, basis, opts, block, trait, progress):
    """One trait's set models (the set's markers enter together), ``block`` sets at a time
    (each batch checkpointed when ``store`` is given): result frames."""
    batches = [sets[start : start + block] for start in range(0, len(sets), block)]
    blocks = [((start, start + len(b)), b, len(b)) for start, b in zip(range(0, len(sets), block), batches)]

    def compute(batch):
        return _frame_arrays(_fit_sets(source, rows, batch, fitted, basis, opts, trait))

    bar = progress_bar(len(sets), progress, f"gwas {trait} (sets)")
    # fresh and resumed batches go through the same arrays, so a resumed table equals a fresh one
    return [_array_frame(saved) for _, saved in _resumable(store, blocks, compute, bar)]


def _frame_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A result frame as plain arrays for a checkpoint (text columns as fixed-width text)."""
    text = [c for c in frame if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    if any(pd.api.types.infer_dtype(frame[c], skipna=False) != "string" for c in text):
        raise TypeError(f"checkpointed columns must be numbers, flags or text: {text}")  # a bug, not an input
    cols = {f"c{i}": frame[c].to_numpy(dtype=str if c in text else None) for i, c in enumerate(frame)}
    return {**cols, "columns": np.array(list(frame.columns), dtype=str)}


def _array_frame(saved: dict[str, np.ndarray]) -> pd.DataFrame:
    """The frame :func:`_frame_arrays` saved."""
    names = saved.pop("columns").tolist()
    data = {}
    for i, name in enumerate(names):
        col = saved[f"c{i}"]
        data[name] = col.tolist() if col.dtype.kind == "U" else col
    return pd.DataFrame(data)


def _fit_sets(source, rows, sets, fitted: _Trait, basis, opts, trait) -> pd.DataFrame:
    """The set models of ``sets``: one frame, one row per set in their order."""
    n = rows.size
    records = []
    by_size: dict[int, list] = {}
    for name, idx, n_given in sets:
        if idx.size == 0:
            records.append({"set": name, "n_given": n_given, "n_markers": 0, "status_code": int(Status.ALL_MISSING)})
            continue
        g, _, _ = _impute(_read_set(source, rows, idx))
        keep = (g.max(axis=0) - g.min(axis=0)) > 0
        g = g[:, keep]
        if g.shape[1] == 0:
            records.append({"set": name, "n_given": n_given, "n_markers": 0, "status_code": int(Status.MONOMORPHIC)})
            continue
        # aliased markers (perfect LD within the set) are dropped, as R's qr pivots them
        from ..model._design import aliased_columns

        g = g[:, ~aliased_columns(np.column_stack([basis, g]))[basis.shape[1] :]]
        by_size.setdefault(g.shape[1], []).append((name, n_given, g))
    for size, members in by_size.items():
        extra = np.stack([g for _, _, g in members])
        coll = _collinear(extra, basis)
        names = [nm for nm, _, _ in members]
        cnames = [f"m{j + 1}" for j in range(size)]
        out = _fit_models(fitted, extra, names, cnames, np.arange(size), None, n, basis, opts, np.arange(0))
        status = np.where(coll, int(Status.COLLINEAR), int(Status.OK))
        out = _masked(out, status)
        for i, (name, n_given, _) in enumerate(members):
            records.append({"set": name, "n_given": n_given, "n_markers": size, **{k: v[i] for k, v in out.items()}})
    frame = pd.DataFrame.from_records(records)
    if "status_code" in frame:
        lone = frame["status_code"].notna()
        frame.loc[lone, "status"] = [STATUS_TEXT[int(c)] for c in frame.loc[lone, "status_code"]]
        frame.loc[lone, "converged"] = False
        frame["converged"] = frame["converged"].astype(bool)
        frame = frame.drop(columns="status_code")
    order = {nm: i for i, (nm, _, _) in enumerate(sets)}
    frame = frame.sort_values("set", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    frame.insert(0, "trait", trait)
    frame.insert(2, "n", n)
    return frame


def _read_set(source: GenotypeSource, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The markers ``idx`` of a set (n, size) as floats, NaN where missing."""
    from ._io import as_float

    return as_float(source.read_markers(rows, idx), "float64")
