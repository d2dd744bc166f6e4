"""Genomic relationship matrices from the genotypes, streamed in blocks of markers."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ._io import GenotypeSource


def standardised_block(raw: np.ndarray) -> np.ndarray:
    """Standardise a block of allele counts ``raw`` (n, b): ``(g - 2p) / sqrt(2p(1 - p))``
    with ``p`` the frequency among the genotyped, missing set to 0 (the mean); monomorphic
    and all-missing markers dropped.  Returns (n, b_kept)."""
    n_obs = (~np.isnan(raw)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.nansum(raw, axis=0) / np.maximum(n_obs, 1) / 2.0
        scale = np.sqrt(2.0 * p * (1.0 - p))
    keep = (n_obs > 0) & (scale > 1e-12)
    w = (raw[:, keep] - 2.0 * p[keep]) / scale[keep]
    return np.where(np.isnan(w), 0.0, w)


class GrmSum:
    """Running ``sum W W'`` and marker count: add blocks, combine, divide at the end."""

    def __init__(self, n: int):
        self.total = np.zeros((n, n))
        self.count = 0

    def add(self, raw: np.ndarray) -> None:
        w = standardised_block(raw)
        if w.shape[1]:
            self.total += w @ w.T
            self.count += w.shape[1]

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
) -> GrmSum:
    """Accumulate the standardised GRM ``W W' / m`` of individuals ``rows`` over the marker
    indices ``markers`` (contiguous runs are read as blocks)."""
    idx = np.asarray(list(markers) if not isinstance(markers, np.ndarray) else markers, dtype=np.int64)
    acc = GrmSum(len(rows))
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
    "GrmSum",
    "contiguous_runs",
    "grm",
    "standardised_block",
]
