"""Sample and marker selection (PLINK's ``--keep/--remove``, ``--extract/--exclude``, ``--chr``,
``--maf``, ``--mac``, ``--geno``), applied the same way to the scan and to a kinship built from
the genotypes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ._io import MISSING_COUNT, GenotypeSource, need_file


@dataclass(frozen=True)
class Selection:
    """Which individuals and markers to use.

    ``keep`` / ``remove``: files of individuals (``FID IID`` per line, or ``IID`` alone; a header
    line starting with ``#`` is skipped), or sequences of IIDs.  ``extract`` / ``exclude``: files
    of marker IDs (one per line, first column) or sequences.  ``chromosomes``: chromosome names
    to keep.  ``maf``: keep markers whose minor-allele frequency is at least this; ``mac``: whose
    minor-allele count is at least this; ``geno``: whose missing rate is at most this.  The
    frequencies, counts and missing rates are those of the kept individuals (PLINK's
    convention), dosages summed as dosages."""

    keep: str | os.PathLike | Sequence[str] | None = None
    remove: str | os.PathLike | Sequence[str] | None = None
    extract: str | os.PathLike | Sequence[str] | None = None
    exclude: str | os.PathLike | Sequence[str] | None = None
    chromosomes: Sequence[str] | None = None
    maf: float | None = None
    mac: float | None = None
    geno: float | None = None

    def __post_init__(self):
        for name, low, high in (("maf", 0.0, 0.5), ("geno", 0.0, 1.0)):
            v = getattr(self, name)
            if v is not None and not (low <= float(v) <= high):
                raise InputError(f"{name} must be in [{low:g}, {high:g}], got {v!r}")
        if self.mac is not None and float(self.mac) < 0:
            raise InputError(f"mac must be >= 0, got {self.mac!r}")

    @property
    def needs_counts(self) -> bool:
        return self.maf is not None or self.mac is not None or self.geno is not None

    def fingerprint(self) -> tuple:
        """What identifies the selection (files by path: their content enters the scan's
        checkpoint fingerprint through :func:`selection_files`)."""
        return tuple((k, v if not isinstance(v, (list, np.ndarray)) else tuple(v)) for k, v in vars(self).items())


def selection_files(sel: Selection | None) -> tuple[str, ...]:
    if sel is None:
        return ()
    return tuple(str(v) for v in (sel.keep, sel.remove, sel.extract, sel.exclude) if isinstance(v, (str, os.PathLike)))


@dataclass
class SelectionReport:
    """What a selection kept and removed, for the log and the results' metadata."""

    n_samples: int = 0
    n_samples_removed: int = 0
    n_samples_listed_not_genotyped: int = 0
    n_markers: int = 0
    markers_removed: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "n_samples_kept": self.n_samples,
            "n_samples_removed": self.n_samples_removed,
            "n_samples_listed_not_genotyped": self.n_samples_listed_not_genotyped,
            "n_markers_kept": self.n_markers,
            "markers_removed": dict(self.markers_removed),
        }


def selection_lines(summary: dict) -> list[str]:
    """Two log lines from :meth:`SelectionReport.as_dict` (the results' ``selection`` metadata)."""
    listed = summary["n_samples_listed_not_genotyped"]
    lines = [
        f"individuals: {summary['n_samples_kept']} kept, {summary['n_samples_removed']} removed by --keep/--remove"
        + (f" ({listed} listed but not genotyped)" if listed else "")
    ]
    removed = ", ".join(f"{v} by {k}" for k, v in summary["markers_removed"].items()) or "none removed"
    lines.append(f"markers: {summary['n_markers_kept']} kept ({removed})")
    return lines


class MarkerSubset(GenotypeSource):
    """The markers ``index`` (increasing) of another source, in its order."""

    def __init__(self, base: GenotypeSource, index: np.ndarray):
        self.base, self.index = base, np.asarray(index, dtype=np.int64)
        self.fid, self.iid = base.fid, base.iid
        self.snps = base.snps.iloc[self.index].reset_index(drop=True)
        self.files, self.libraries = base.files, base.libraries

    def _read(self, rows, markers):
        idx = self.index[markers]
        if idx.size and idx[-1] - idx[0] == idx.size - 1 and np.all(np.diff(idx) == 1):
            return self.base._read(rows, slice(int(idx[0]), int(idx[-1]) + 1))
        return self.base._read(rows, idx)

    def spec(self) -> dict | None:
        base = self.base.spec()
        return (
            None if base is None else {"module": __name__, "class": "MarkerSubset", "base": base, "index": self.index}
        )

    @classmethod
    def reopen(cls, spec: dict) -> MarkerSubset:
        from ._io import reopen

        return cls(reopen(spec["base"]), spec["index"])


def _id_list(value, what: str) -> list[tuple[str, ...]]:
    """IDs from a file (whitespace-separated columns, ``#`` header skipped) or a sequence."""
    if isinstance(value, (str, os.PathLike)):
        path = need_file(value, what)
        rows = []
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if parts and not parts[0].startswith("#"):
                    rows.append(tuple(parts))
        if not rows:
            raise InputError(f"{what} file {path} lists nothing")
        return rows
    return [(str(v),) for v in value]


def sample_mask(source: GenotypeSource, sel: Selection | None, report: SelectionReport) -> np.ndarray:
    """(n,) bool: the genotyped individuals kept by ``sel.keep`` / ``sel.remove``.  Lines with
    two fields are ``FID IID`` (IID alone when the genotype file has no FIDs), one field IID."""
    n = source.n
    mask = np.ones(n, dtype=bool)
    if sel is None or (sel.keep is None and sel.remove is None):
        report.n_samples = n
        return mask
    iid = source.iid.astype(str)
    pairs = set(zip(source.fid.astype(str), iid)) if source.fid is not None else None
    listed_missing = 0

    def hits(value, what) -> np.ndarray:
        nonlocal listed_missing
        rows = _id_list(value, what)
        by_pair = {(r[0], r[1]) for r in rows if len(r) >= 2}
        by_iid = {r[0] for r in rows if len(r) == 1} | ({r[1] for r in rows if len(r) >= 2} if pairs is None else set())
        got = np.isin(iid, list(by_iid))
        if pairs is not None and by_pair:
            got |= np.array([(f, i) in by_pair for f, i in zip(source.fid.astype(str), iid)])
            listed_missing += len(by_pair - pairs)
        listed_missing += len(by_iid - set(iid))
        return got

    if sel.keep is not None:
        mask &= hits(sel.keep, "--keep")
        if not mask.any():
            raise InputError(f"--keep {sel.keep}: no listed individual is among the genotyped (IDs: FID IID or IID)")
    if sel.remove is not None:
        mask &= ~hits(sel.remove, "--remove")
        if not mask.any():
            raise InputError(f"--remove {sel.remove}: removes every genotyped individual")
    report.n_samples = int(mask.sum())
    report.n_samples_removed = int(n - mask.sum())
    report.n_samples_listed_not_genotyped = listed_missing
    return mask


def marker_counts(
    source: GenotypeSource, rows: np.ndarray, block: int = 4096, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per marker: individuals of ``rows`` with a genotype, and the sum of their counts of a1."""
    n_obs = np.empty(source.m, dtype=np.int64)
    total = np.empty(source.m, dtype=np.float64)
    for start in range(0, source.m, block):
        stop = min(start + block, source.m)
        raw = source.read_counts(rows, start, stop)
        if raw.dtype.kind in "iu":
            missing = raw == MISSING_COUNT
            n_obs[start:stop] = rows.size - missing.sum(axis=0)
            total[start:stop] = raw.sum(axis=0, dtype=np.int64) - MISSING_COUNT * missing.sum(axis=0)
        else:
            missing = np.isnan(raw)
            n_obs[start:stop] = rows.size - missing.sum(axis=0)
            total[start:stop] = np.where(missing, 0.0, raw).sum(axis=0)
        if progress is not None:
            progress(stop - start)
    return n_obs, total


def select_markers(
    source: GenotypeSource,
    sel: Selection | None,
    rows: np.ndarray,
    report: SelectionReport,
    block: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> GenotypeSource:
    """``source`` restricted to the markers ``sel`` keeps (the same source when it keeps all);
    frequency filters computed over the individuals ``rows``."""
    m = source.m
    keep = np.ones(m, dtype=bool)
    removed: dict[str, int] = {}

    def apply(name: str, ok: np.ndarray) -> None:
        nonlocal keep
        count = int(np.sum(keep & ~ok))
        removed[name] = count
        keep &= ok

    if sel is not None:
        names = source.snps["snp"].astype(str).to_numpy()
        chrom = source.snps["chr"].astype(str).to_numpy()
        if sel.chromosomes is not None:
            wanted = {str(c) for c in sel.chromosomes}
            unknown = wanted - set(chrom)
            if unknown == wanted:
                raise InputError(
                    f"--chr {sorted(wanted)}: no marker on these chromosomes (they are {sorted(set(chrom))})"
                )
            apply("--chr", np.isin(chrom, list(wanted)))
        if sel.extract is not None:
            apply("--extract", np.isin(names, [r[0] for r in _id_list(sel.extract, "--extract")]))
        if sel.exclude is not None:
            apply("--exclude", ~np.isin(names, [r[0] for r in _id_list(sel.exclude, "--exclude")]))
        if sel.needs_counts and keep.any():
            n_obs, total = marker_counts(MarkerSubset(source, np.flatnonzero(keep)), rows, block, progress)
            full_obs = np.zeros(m, dtype=np.int64)
            full_total = np.zeros(m)
            full_obs[keep], full_total[keep] = n_obs, total
            with np.errstate(invalid="ignore", divide="ignore"):
                af = full_total / (2.0 * full_obs)
            minor = np.minimum(full_total, 2.0 * full_obs - full_total)
            if sel.geno is not None:
                apply("--geno", 1.0 - full_obs / max(rows.size, 1) <= float(sel.geno) + 1e-12)
            if sel.maf is not None:
                apply("--maf", (full_obs > 0) & (np.minimum(af, 1.0 - af) >= float(sel.maf) - 1e-12))
            if sel.mac is not None:
                apply("--mac", (full_obs > 0) & (minor >= float(sel.mac) - 1e-9))
    report.markers_removed = removed
    report.n_markers = int(keep.sum())
    if not keep.any():
        raise InputError(
            f"the marker selection removes every marker ({', '.join(f'{k}: {v}' for k, v in removed.items())})"
        )
    return source if keep.all() else MarkerSubset(source, np.flatnonzero(keep))


__all__ = [
    "MarkerSubset",
    "Selection",
    "SelectionReport",
    "marker_counts",
    "sample_mask",
    "select_markers",
    "selection_files",
    "selection_lines",
]
