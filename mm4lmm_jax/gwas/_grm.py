"""Kinships from genotype files (``mm4lmm grm``): GEMMA's standardised and centred
definitions, for all markers or leaving one chromosome out, written as GEMMA text, ``.npy`` or
PLINK 2's ``.rel.bin`` + ``.rel.id``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from ._formats import open_genotypes
from ._io import GenotypeSource, write_atomic
from ._kinship import KINDS, grm
from ._select import Selection, SelectionReport, sample_mask, select_markers

#: Output formats of :func:`write_kinship` and the file names they write.
FORMATS = ("gemma", "npy", "rel-bin")


@dataclass
class Kinship:
    """A kinship of the kept individuals (``fid``/``iid``, genotype order): ``matrix`` (n, n)
    over all selected markers (``n_markers`` polymorphic ones), and with LOCO ``loco`` a
    mapping chromosome -> the kinship of the other chromosomes' markers."""

    matrix: np.ndarray
    fid: np.ndarray | None
    iid: np.ndarray
    kind: str
    n_markers: int
    loco: dict[str, np.ndarray] = field(default_factory=dict)
    selection: SelectionReport = field(default_factory=SelectionReport)


def kinship_matrix(
    genotypes: str | os.PathLike | GenotypeSource,
    *,
    kind: str = "standardised",
    loco: bool = False,
    select: Selection | None = None,
    block: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> Kinship:
    """The kinship ``W W' / m`` of the genotyped individuals kept by ``select`` over its
    markers (GEMMA's definitions: ``"standardised"`` = ``-gk 2``, each marker mean-imputed,
    centred and divided by its standard deviation over the individuals; ``"centred"`` =
    ``-gk 1``, centred only; monomorphic and all-missing markers are left out and not
    counted in ``m``).  With ``loco``, also one kinship per chromosome leaving it out."""
    if kind not in KINDS:
        raise InputError(f"kinship kind must be one of {KINDS}, got {kind!r}")
    source = genotypes if isinstance(genotypes, GenotypeSource) else open_genotypes(genotypes)
    report = SelectionReport()
    rows = np.flatnonzero(sample_mask(source, select, report))
    source = select_markers(source, select, rows, report, block)
    total = grm(source, rows, np.arange(source.m), block, progress, kind)
    if total.count == 0:
        raise InputError("no polymorphic marker to build the kinship from (after the selection)")
    out = Kinship(
        total.matrix(),
        None if source.fid is None else source.fid[rows],
        source.iid[rows],
        kind,
        total.count,
        selection=report,
    )
    if loco:
        chrom = source.snps["chr"].astype(str).to_numpy()
        if len(set(chrom)) < 2:
            raise InputError(f"LOCO needs markers on at least two chromosomes; all are on {chrom[0]}")
        for c in pd.unique(chrom):
            part = grm(source, rows, np.flatnonzero(chrom == c), block, progress, kind)
            rest = total.minus(part)
            if rest.count == 0:
                raise InputError(f"LOCO: no polymorphic marker outside chromosome {c}")
            out.loco[str(c)] = rest.matrix()
    return out


def kinship_paths(prefix: str, kind: str, fmt: str, chrom: str | None = None) -> list[str]:
    """The files :func:`write_kinship` writes for one matrix (LOCO: ``PREFIX.loco.<chr>...``)."""
    base = prefix if chrom is None else f"{prefix}.loco.{chrom}"
    if fmt == "gemma":
        return [f"{base}.{'sXX' if kind == 'standardised' else 'cXX'}.txt"]
    if fmt == "npy":
        return [f"{base}.npy"]
    if fmt == "rel-bin":
        return [f"{base}.rel.bin", f"{base}.rel.id"]
    raise InputError(f"kinship format must be one of {FORMATS}, got {fmt!r}")


def write_kinship(kin: Kinship, prefix: str, fmt: str = "gemma") -> list[str]:
    """Write the kinship (and the LOCO ones) as ``fmt``: GEMMA's text (``PREFIX.sXX.txt`` /
    ``PREFIX.cXX.txt``: n rows of n tab-separated numbers, rows in genotype order of the kept
    individuals, every digit kept), ``PREFIX.npy``, or PLINK 2's ``PREFIX.rel.bin`` (float64,
    square) with ``PREFIX.rel.id`` (``#FID IID``, or ``#IID``).  Each file is written under a
    temporary name and renamed.  Returns the paths written."""
    written = []
    for chrom, mat in [(None, kin.matrix), *kin.loco.items()]:
        paths = kinship_paths(prefix, kin.kind, fmt, chrom)
        write_atomic(paths[0], lambda tmp, mat=mat: _write_matrix(mat, tmp, fmt))
        if fmt == "rel-bin":
            write_atomic(paths[1], lambda tmp: _write_ids(kin, tmp))
        written += paths
    return written


def _write_matrix(mat: np.ndarray, path: str, fmt: str) -> None:
    if fmt == "gemma":
        np.savetxt(path, mat, fmt="%.17g", delimiter="\t")  # 17 digits: reads back to the same doubles
    elif fmt == "npy":
        with open(path, "wb") as fh:
            np.save(fh, mat)
    else:
        np.ascontiguousarray(mat, dtype=np.float64).tofile(path)


def _write_ids(kin: Kinship, path: str) -> None:
    with open(path, "w") as fh:
        if kin.fid is None:
            fh.write("#IID\n" + "".join(f"{i}\n" for i in kin.iid))
        else:
            fh.write("#FID\tIID\n" + "".join(f"{f}\t{i}\n" for f, i in zip(kin.fid, kin.iid)))


__all__ = ["FORMATS", "Kinship", "kinship_matrix", "kinship_paths", "write_kinship"]
