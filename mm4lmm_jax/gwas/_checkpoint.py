"""Checkpoints of scans: completed blocks saved in a folder under a fingerprint of the inputs
and options, so a killed scan goes on where it stopped."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ._io import ArraySource, GenotypeSource, InputError


class Checkpoint:
    """Screened blocks of a scan saved as ``.npz`` files in a folder, so a killed scan can go
    on from its completed blocks (``gwas(checkpoint=...)``, ``mm4lmm gwas --resume``).  The
    folder holds a fingerprint of the inputs and options; a folder made for other inputs is
    an error.  Files are written under a temporary name and renamed: a kill mid-write leaves
    no partial block."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str):
        from pathlib import Path

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "fingerprint.txt"
        if stamp.exists() and stamp.read_text() != fingerprint:
            raise InputError(
                f"checkpoint folder {self.folder} belongs to a scan of other inputs or options: remove it "
                "to start afresh"
            )
        stamp.write_text(fingerprint)
        self.scope = ""
        self.loaded = 0

    def _file(self, run):
        return self.folder / f"{self.scope}{run[0]}-{run[1]}.npz"

    def load(self, run) -> dict | None:
        file = self._file(run)
        if not file.exists():
            return None
        with np.load(file) as z:
            self.loaded += 1
            return {k: z[k] for k in z.files}

    def save(self, run, blk: dict) -> None:
        file = self._file(run)
        tmp = file.with_name(file.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **blk)
        os.replace(tmp, file)


def source_parts(source: GenotypeSource) -> tuple:
    """What identifies an opened genotype source in a checkpoint's fingerprint: its class, its
    files (by path, size and time), its marker table, and an array's values."""
    parts: tuple = ("source", type(source).__name__, *source.files, source.snps)
    if isinstance(source, ArraySource):
        parts += (np.asarray(source.array),)
    return parts


def fingerprint(*parts) -> str:
    """A digest of the inputs (files by path, size and modification time; arrays by content)
    and options of a scan."""
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        files = [str(part) + e for e in ("", ".bed", ".bim", ".fam")] if isinstance(part, (str, os.PathLike)) else []
        if any(os.path.isfile(f) for f in files):
            for f in filter(os.path.isfile, files):
                st = os.stat(f)
                h.update(f"{os.path.abspath(f)}:{st.st_size}:{st.st_mtime_ns}".encode())
        elif isinstance(part, tuple) and part[:1] == ("source",):
            h.update(fingerprint(*part[1:]).encode())
        elif isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (pd.DataFrame, pd.Series)):
            h.update(pd.util.hash_pandas_object(part, index=True).to_numpy().tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()


__all__ = ["Checkpoint", "fingerprint", "source_parts"]
