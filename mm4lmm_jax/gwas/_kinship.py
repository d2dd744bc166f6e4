"""Genomic relationship matrices from the genotypes, streamed in blocks of markers."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ._io import GenotypeSource

#: Kinship definitions: GEMMA's ``-gk 2`` (standardised) and ``-gk 1`` (centred).
KINDS = ("standardised", "centred")


def standardised_block(raw: np.ndarray, kind: str = "standardised") -> np.ndarray:
    """A block of allele counts or dosages ``raw`` (n, b; NaN missing) as the columns of a
    kinship ``W W' / m``: missing values set to the marker's mean over the genotyped, then
    centred (``kind="centred"``, GEMMA's ``-gk 1``) and divided by the standard deviation of
    the mean-imputed values over the n individuals (``"standardised"``, GEMMA's ``-gk 2``).
    All-missing and constant markers are dropped.  Returns (n, b_kept)."""
    if kind not in KINDS:
        raise ValueError(f"kinship kind must be one of {KINDS}, got {kind!r}")
    n_obs = (~np.isnan(raw)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(raw, axis=0) / np.maximum(n_obs, 1)
    w = np.where(np.isnan(raw), 0.0, raw - mean)
    var = np.einsum("ij,ij->j", w, w) / max(raw.shape[0], 1)
    keep = (n_obs > 0) & (var > 1e-12 * np.maximum(1.0, mean**2))
    w = w[:, keep]
    return w / np.sqrt(var[keep]) if kind == "standardised" else w


class GrmSum:
    """Running ``sum W W'`` and marker count: add blocks, combine, divide at the end."""

    def __init__(self, n: int, kind: str = "standardised"):
        self.total = np.zeros((n, n))
        self.count = 0
        self.kind = kind

    def add(self, raw: np.ndarray) -> None:
        w = standardised_block(raw, self.kind)
        if w.shape[1]:
            self.total += w @ w.T
            self.count += w.shape[1]

    def minus(self, part: GrmSum) -> GrmSum:
        """The sum of the markers of ``self`` not in ``part`` (a subset of them)."""
        rest = GrmSum(self.total.shape[0], self.kind)
        rest.total = self.total - part.total
        rest.count = self.count - part.count
        return rest

    def matrix(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("no polymorphic marker to build the kinship from")
        return self.total / self.count


def grm(
    source: GenotypeSource,
    rows: np.ndarray,
    markers: Iterable[int] | np.ndarray,
    block: int = 4096,
    progress: Callable[[int], None] | None = None,
    kind: str = "standardised",
) -> GrmSum:
    """Accumulate the kinship ``W W' / m`` (:func:`standardised_block`) of individuals ``rows``
    over the marker indices ``markers`` (contiguous runs are read as blocks)."""
    idx = np.asarray(list(markers) if not isinstance(markers, np.ndarray) else markers, dtype=np.int64)
    acc = GrmSum(len(rows), kind)
    for start, stop in contiguous_runs(idx, block):
        acc.add(source.read(rows, start, stop))
        if progress is not None:
            progress(stop - start)
    return acc


def contiguous_runs(idx: np.ndarray, block: int) -> list[tuple[int, int]]:
    """Split sorted marker indices into ``[start, stop)`` runs of consecutive indices, each
    at most ``block`` long."""
    runs: list[tuple[int, int]] = []
    if idx.size == 0:
        return runs
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    for part in np.split(idx, breaks):
        for s in range(0, part.size, block):
            runs.append((int(part[s]), int(part[min(s + block, part.size) - 1]) + 1))
    return runs


__all__ = [
    "KINDS",
    "GrmSum",
    "contiguous_runs",
    "grm",
    "standardised_block",
]
