"""A scan's inputs checked and aligned: the genotype source, tables matched to it by ID,
kinships (given, read from files matched by ID, or built from the genotypes, LOCO), and the
checks of a kinship's spectrum."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._precision import check_float32_rounding
from ..errors import InputWarning, KinshipWarning
from ._formats import open_genotypes
from ._io import ArraySource, GenotypeSource, InputError, KinshipRead, array_source, checked_symmetric, read_table
from ._kinship import grm


def genotype_source(genotypes, sample_ids) -> GenotypeSource:
    if isinstance(genotypes, GenotypeSource):
        return genotypes
    if isinstance(genotypes, (str, os.PathLike)):
        return open_genotypes(genotypes)
    return array_source(genotypes, sample_ids=sample_ids)


def _check_precision(table, what: str, names: Sequence[str] | None) -> None:
    """:func:`check_float32_rounding` of the columns ``names`` (default: all) of an in-memory table."""
    if isinstance(table, pd.DataFrame):
        for col in names or table.columns:
            if col not in table.columns:
                continue  # align_table names the missing column
            check_float32_rounding(table[col].to_numpy(), str(col), what, stacklevel=5)
    elif isinstance(table, (pd.Series, np.ndarray)):
        arr = np.asarray(table)
        cols = arr.reshape(arr.shape[0], -1).T if arr.ndim else []
        for j, col in enumerate(cols):
            check_float32_rounding(col, getattr(table, "name", None) or f"{what} column {j + 1}", what, stacklevel=5)


def align_table(
    table, source: GenotypeSource, what: str, names: Sequence[str] | None, numeric: bool = True
) -> tuple[pd.DataFrame, int]:
    """A table of ``what`` as a frame with one row per genotyped individual (source order,
    NaN where absent), its columns restricted to ``names`` (numbers, or the values as read
    when not ``numeric``); and how many of its individuals are not among the genotyped."""
    n = source.n
    if numeric:
        _check_precision(table, what, names)
    iid = source.iid.astype(str)
    key_source = pd.MultiIndex.from_arrays([iid if source.fid is None else source.fid.astype(str), iid])
    if isinstance(table, (str, os.PathLike)):
        frame = read_table(table, what, text=() if numeric else list(names or ()), only=names or None)
        label = f"{what} file {table}"
    elif isinstance(table, pd.DataFrame) and {"FID", "IID"} <= set(table.columns):
        frame = table.assign(FID=table["FID"].astype(str), IID=table["IID"].astype(str)).set_index(["FID", "IID"])
        label = what
    else:
        frame = None
    if frame is not None and source.fid is None:  # the genotypes carry IIDs only: match on them
        ids = frame.index.get_level_values(1)
        if ids.duplicated().any():
            raise InputError(
                f"{label}: IID {ids[ids.duplicated()][0]!r} appears twice; the genotype file names individuals by "
                "IID only, so IIDs must be unique"
            )
        frame = frame.set_axis(pd.MultiIndex.from_arrays([ids, ids]))
        key_source = pd.MultiIndex.from_arrays([iid, iid])
    if frame is None and isinstance(table, (pd.DataFrame, pd.Series)) and not isinstance(table.index, pd.RangeIndex):
        frame = table.to_frame() if isinstance(table, pd.Series) else table
        ids = frame.index.astype(str)
        if not ids.isin(source.iid.astype(str)).any():
            raise InputError(f"no individual of the {what} table matches the genotype IDs (index holds IIDs)")
        frame = frame.set_axis(pd.MultiIndex.from_arrays([ids, ids]))
        key_source = pd.MultiIndex.from_arrays([source.iid.astype(str), source.iid.astype(str)])
        label = what
    elif frame is None:
        arr = table.to_numpy(dtype=float) if isinstance(table, (pd.DataFrame, pd.Series)) else np.asarray(table, float)
        arr = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
        if arr.shape[0] != n:
            raise InputError(f"{what}: {arr.shape[0]} rows for {n} genotyped individuals")
        cols = list(table.columns) if isinstance(table, pd.DataFrame) else None
        if isinstance(table, pd.Series):
            cols = [table.name if table.name is not None else what]
        cols = cols or ([what] if arr.shape[1] == 1 else [f"{what}{j + 1}" for j in range(arr.shape[1])])
        return pd.DataFrame(arr, columns=[str(c) for c in cols]), 0
    if names:
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise InputError(f"{label}: no column(s) {missing}; columns are {list(frame.columns)}")
        frame = frame[list(names)]
    if numeric:
        values = frame.apply(pd.to_numeric, errors="coerce")
        bad = [c for c in frame.columns if (values[c].isna() & frame[c].notna()).any()]
        if bad:
            raise InputError(f"{label}: column(s) {bad} hold non-numeric values (code factors as numbers)")
        frame = values
    overlap = frame.index.isin(key_source)
    if not overlap.any():
        hint = ""
        if source.fid is None:
            hint = (
                f" (the genotype file names individuals by one ID, e.g. {iid[0]!r}, matched with the IID column; "
                "for names FID_IID give id_delim='_' / --id-delim _)"
            )
        raise InputError(f"{label}: no individual matches the genotype file's FID/IID{hint}")
    aligned = frame[~frame.index.duplicated()].reindex(key_source)
    return aligned.reset_index(drop=True), int((~overlap).sum())


def given_kinship(kinship, source: GenotypeSource, rows: np.ndarray, label: str):
    """``kinship(dtype)`` -> the (n_analysed, n_analysed) submatrix of a kinship given as a
    :class:`KinshipRead` or an (n, n) array in genotype order."""
    if isinstance(kinship, KinshipRead):
        given = kinship.result  # waits for the file's parse
    else:
        k = np.asarray(kinship, dtype=float)
        if k.shape != (source.n, source.n):
            raise InputError(f"{label}: shape {k.shape}, expected ({source.n}, {source.n}) (genotype order)")
        k = checked_symmetric(k, label)

        def given():
            return k

    every = rows.size == source.n

    def analysed(dtype):  # a new array: the eigendecomposition may overwrite it
        k = given()
        missing = rows[kinship.absent[rows]] if isinstance(kinship, KinshipRead) else np.empty(0, int)
        if missing.size:
            raise InputError(
                f"{label}: {missing.size} analysed individual(s) are not in it, e.g. {source.iid[missing[0]]!r} "
                "(restrict the analysis with --keep/--remove, or give a kinship of every analysed individual)"
            )
        return np.array(k, dtype=dtype) if every else k.astype(dtype, copy=False)[np.ix_(rows, rows)]

    return analysed


def kinship_groups(
    kinship, source: GenotypeSource, rows: np.ndarray, loco: bool, block: int, progress: bool, kind: str
):
    """``[(label, marker indices, kinship(dtype), description)]``: one kinship for all markers,
    or one per chromosome (LOCO: built from the other chromosomes' markers, or given as a
    mapping chromosome -> kinship); ``kinship(dtype)`` returns a new (n_analysed,
    n_analysed) array."""
    m = source.m
    chrom = source.snps["chr"].astype(str).to_numpy()
    if isinstance(kinship, dict):
        groups = []
        for c in pd.unique(chrom):
            if c not in kinship:
                raise InputError(f"LOCO kinships: none given for chromosome {c} (given: {sorted(kinship)})")
            what = kinship[c]
            if isinstance(what, (str, os.PathLike)):  # opened when needed: one file parsed at a time

                def fn(dtype, path=what):
                    reader = KinshipRead(path, source.n, ids=(source.fid, source.iid))
                    try:
                        return given_kinship(reader, source, rows, f"kinship file {path}")(dtype)
                    finally:
                        reader.close()

            else:
                fn = given_kinship(what, source, rows, f"kinship for chromosome {c}")
            groups.append((c, np.flatnonzero(chrom == c), fn, f"given without chromosome {c}"))
        return groups
    if kinship is not None:
        label = f"kinship file {kinship.path}" if isinstance(kinship, KinshipRead) else "kinship"
        return [("all", np.arange(m), given_kinship(kinship, source, rows, label), "given")]
    bar = progress_bar(m if not loco else 2 * m, progress, "kinship (GRM)")
    update = bar.update if bar is not None else None
    total = grm(source, rows, np.arange(m), block, update, kind)
    if not loco:
        if bar is not None:
            bar.close()
        description = f"{kind} GRM of all (selected) markers"
        return [("all", np.arange(m), lambda dtype: total.matrix().astype(dtype, copy=False), description)]
    groups = []
    for c in pd.unique(chrom):
        idx = np.flatnonzero(chrom == c)

        def loco_matrix(dtype, idx=idx):
            part = grm(source, rows, idx, block, update, kind)
            return total.minus(part).matrix().astype(dtype, copy=False)

        groups.append((c, idx, loco_matrix, f"{kind} GRM without chromosome {c}"))
    return groups


def open_kinships(kinship, source: GenotypeSource):
    """Files among ``kinship`` (a path, a mapping chromosome -> path or array, an array, None)
    opened for reading (their parse starts now); and the list of readers to close."""

    def one(k):
        return KinshipRead(k, source.n, ids=(source.fid, source.iid)) if isinstance(k, (str, os.PathLike)) else k

    if isinstance(kinship, dict):  # LOCO files are read one at a time, when their chromosome comes
        return {str(c): k for c, k in kinship.items()}, []
    opened = one(kinship)
    return opened, [opened] if isinstance(opened, KinshipRead) else []


def progress_bar(total: int, progress: bool, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="marker", desc=desc, unit_scale=True)


#: A kinship with an eigenvalue below ``-KINSHIP_NEGATIVE_TOL`` times its largest absolute
#: eigenvalue is not a covariance: an error.  Negative eigenvalues above it (rounding, or a
#: kinship estimated pairwise) are set to 0 with a warning that counts them (GEMMA warns too).
KINSHIP_NEGATIVE_TOL = 1e-3


def checked_spectrum(d: np.ndarray, label: str, dtype: str) -> tuple[np.ndarray, dict]:
    """Eigenvalues ``d`` of a kinship clipped at 0, after the checks above; and a summary
    (counts of eigenvalues clipped and near zero) for the log."""
    top = float(np.max(np.abs(d))) if d.size else 0.0
    if not np.isfinite(top):
        raise InputError(f"{label}: non-finite eigenvalues (is the matrix finite?)")
    if top == 0.0:
        raise InputError(f"{label}: the matrix is all zero, so it describes no genetic covariance")
    low = float(np.min(d))
    if low < -KINSHIP_NEGATIVE_TOL * top:
        count = int(np.sum(d < -KINSHIP_NEGATIVE_TOL * top))
        raise InputError(
            f"{label}: not positive semi-definite: {count} eigenvalue(s) below -{KINSHIP_NEGATIVE_TOL:g} x the "
            f"largest (smallest {low:.4g}, largest {float(np.max(d)):.4g}); a kinship must be a covariance matrix "
            "(is it negated, or a distance?)"
        )
    rounding = 4.0 * math.sqrt(d.size) * float(np.finfo(np.dtype(dtype)).eps) * top
    negative = int(np.sum(d < -rounding))
    near_zero = int(np.sum(np.abs(d) <= 1e-6 * top))
    if negative:
        warnings.warn(
            f"{label}: {negative} negative eigenvalue(s) (smallest {low:.3g}, largest {top:.3g}) set to 0",
            KinshipWarning,
            stacklevel=3,
        )
    return np.clip(d, 0.0, None), {"negative_clipped": negative, "near_zero": near_zero, "largest": top}


def check_genotype_array(source: GenotypeSource) -> None:
    """Genotypes given as an array: allele counts or dosages, NaN for missing."""
    if not isinstance(source, ArraySource) or source.array.size == 0:
        return
    arr = source.array
    inf = np.isinf(arr)
    if inf.any():
        i, j = np.argwhere(inf)[0]
        raise InputError(
            f"genotypes: non-finite value {arr[i, j]} for individual {source.iid[i]!r}, marker "
            f"{source.snps['snp'].iloc[j]!r} (use NaN for a missing genotype)"
        )
    if np.isnan(arr).all():
        return
    low, high = np.nanmin(arr), np.nanmax(arr)
    if low < 0.0 or high > 2.0:
        warnings.warn(
            f"genotypes range over [{low:.4g}, {high:.4g}], not allele counts in [0, 2]: the tests are valid "
            "(they do not depend on a marker's scale) but the allele frequency column af is meaningless",
            InputWarning,
            stacklevel=3,
        )


__all__ = [
    "KINSHIP_NEGATIVE_TOL",
    "align_table",
    "check_genotype_array",
    "checked_spectrum",
    "genotype_source",
    "given_kinship",
    "kinship_groups",
    "open_kinships",
    "progress_bar",
]
