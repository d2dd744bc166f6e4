"""Numeric text matrices (GEMMA's kinship format: one row per line, numbers separated by
whitespace) parsed by worker processes.

Parsing the text is the slow part of reading a kinship (about 2 s for n = 5,000 on one
core) and it holds the interpreter's lock.  Here worker processes parse line-aligned byte
ranges of the file in parallel and write their rows as ``.npy`` files in a memory-backed
temporary folder, while the calling process stays free for other work (a scan loads its
compiled programs meanwhile).  Every path, in-process or not, parses with
:func:`numpy.loadtxt` (correctly rounded), so the numbers do not depend on the split.

This file is also the workers' script (run by :data:`_RUNNER` with ``PATH START STOP OUT``): it
imports nothing but numpy (not the package, whose import would cost more than the parse).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import weakref

import numpy as np

#: Files smaller than this are parsed in the calling process (a worker starts in ~0.15 s).
IN_PROCESS_BYTES = 16 << 20
#: Each worker parses at least this many bytes.
MIN_PART_BYTES = 16 << 20


def parse_rows(path: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """The numbers of the lines in bytes ``[start, stop)`` of a text file (``start`` and
    ``stop`` at line starts; a ``.gz`` file is read whole): a (lines, columns) float64 array.
    Blank lines are skipped; a line with another count of numbers, or a token that is not a
    number, raises numpy's ``ValueError`` (which names the row and column)."""
    import io

    if gzipped(str(path)):
        import gzip

        with gzip.open(path, "rb") as fh:
            text = fh.read()
    else:
        with open(path, "rb") as fh:
            fh.seek(start)
            text = fh.read(-1 if stop is None else stop - start)
    if not text.strip():
        return np.empty((0, 0))
    return np.loadtxt(io.BytesIO(text), dtype=np.float64, ndmin=2, comments=None)


def gzipped(path: str) -> bool:
    """Whether a file is gzip-compressed, by its magic bytes (a ``.gz`` name or not)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def line_starts(path: str, parts: int) -> list[int]:
    """``parts + 1`` byte offsets that split the file into about equal, line-aligned ranges
    (the first 0, the last the file's size; a range may be empty)."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as fh:
        for i in range(1, parts):
            fh.seek(max(size * i // parts - 1, cuts[-1]))
            fh.readline()  # to the start of the next line
            cuts.append(min(max(fh.tell(), cuts[-1]), size))
    cuts.append(size)
    return cuts


def _default_parts(size: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8, size // MIN_PART_BYTES))


def _array_bytes(path: str, size: int) -> int:
    """About the bytes of the parsed matrix: lines (from the first line's length; a ``.gz``
    matrix is taken as square) x numbers per line x 8."""
    if gzipped(path):
        import gzip

        with gzip.open(path, "rb") as fh:
            cols = len(fh.readline().split())
        return 8 * cols * cols
    with open(path, "rb") as fh:
        first = fh.readline()
    return 8 * len(first.split()) * (size // max(len(first), 1) + 1)


def _scratch_dir(needed: int) -> str:
    """A new temporary folder, in memory (``/dev/shm``) where the system has one with room
    for ``needed`` bytes (a container's is often 64 MB), else in the default temporary folder."""
    shm = "/dev/shm"
    roomy = os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * needed
    return tempfile.mkdtemp(prefix="mm4lmm_", dir=shm if roomy else None)


def _stop(procs: list, folder: str) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


#: Runs this file as the workers' script without importing the package (``-c``: no script
#: folder on ``sys.path``, whose ``io.py`` would shadow the standard library's).
_RUNNER = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


class TextMatrixRead:
    """A text matrix being parsed: created, it starts the workers; :meth:`result` returns the
    (rows, columns) float64 array, or raises ``ValueError`` (numpy's, naming the row and
    column) when the text is not a matrix of numbers.

    ``parts``: worker processes (default: one per available core, each with at least
    :data:`MIN_PART_BYTES` of text; 0 parses in the calling process, as files under
    :data:`IN_PROCESS_BYTES` are by default).  When a worker fails (a bad file, or workers
    that cannot run here) the file is parsed again in the calling process, which then
    either reads it or raises the error with the row numbers of the whole file.  Workers
    left running when the object is dropped are stopped and their files removed.
    """

    def __init__(self, path: str | os.PathLike, parts: int | None = None):
        self.path = os.fspath(path)
        size = os.path.getsize(self.path)
        gz = gzipped(self.path)
        if parts is None:
            parts = 0 if size < IN_PROCESS_BYTES else (1 if gz else _default_parts(size))
        self._value: np.ndarray | None = None
        self._procs: list[subprocess.Popen] = []
        self._folder = _scratch_dir(_array_bytes(self.path, size)) if parts > 0 else None
        self._finalizer = weakref.finalize(self, _stop, self._procs, self._folder)
        if parts <= 0:
            return
        cuts = [0, size] if gz else line_starts(self.path, parts)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        try:
            for i, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
                cmd = [sys.executable, "-c", _RUNNER, __file__, self.path, str(start), str(stop), self._piece(i)]
                self._procs.append(subprocess.Popen(cmd, env=env, **quiet))
        except OSError:  # no interpreter to start here (embedded Python): parsed in this process
            self.close()
            self._procs.clear()

    def close(self) -> None:
        """Stop the workers that still run and remove their files (done by :meth:`result`)."""
        self._finalizer()

    def _piece(self, i: int) -> str:
        return os.path.join(self._folder, f"{i}.npy")

    def result(self) -> np.ndarray:
        if self._value is None:
            try:
                self._value = self._collect()
            finally:
                self.close()
        return self._value

    def _collect(self) -> np.ndarray:
        if not self._procs or any(proc.wait() for proc in self._procs):
            return parse_rows(self.path)
        pieces = [np.load(self._piece(i), mmap_mode="r") for i in range(len(self._procs))]
        pieces = [p for p in pieces if p.shape[0]]
        if len({p.shape[1] for p in pieces}) > 1:  # rows of different lengths in different parts
            return parse_rows(self.path)
        matrix = np.concatenate(pieces) if pieces else np.empty((0, 0))
        del pieces  # unmaps the files before they are removed
        return matrix


def main(argv: list[str]) -> int:
    """Worker: parse bytes ``[START, STOP)`` of ``PATH`` and save the rows to ``OUT`` (.npy);
    exit code 1 on a bad file (the caller parses it again to say where)."""
    path, start, stop, out = argv
    try:
        rows = parse_rows(path, int(start), int(stop))
    except ValueError:
        return 1
    np.save(out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = [
    "IN_PROCESS_BYTES",
    "MIN_PART_BYTES",
    "TextMatrixRead",
    "gzipped",
    "line_starts",
    "main",
    "parse_rows",
]
