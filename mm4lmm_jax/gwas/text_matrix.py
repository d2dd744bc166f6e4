"""Numeric text matrices (GEMMA's kinship format: one row per line, numbers separated by
whitespace) parsed by worker processes.

Parsing the text is the slow part of reading a kinship (about 2 s for n = 5,000 on one
core) and it holds the interpreter's lock.  Here worker processes parse line-aligned byte
ranges of the file in parallel and write their rows as ``.npy`` files in a memory-backed
temporary folder, while the calling process stays free for other work (a scan loads its
compiled programs meanwhile).  Every path, in-process or not, parses with
:func:`numpy.loadtxt` (correctly rounded), so the numbers do not depend on the split.

This file is also the workers' script: run as ``python text_matrix.py PATH START STOP OUT``
it imports nothing but numpy (not the package, whose import would cost more than the parse).
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
    number, raises ``ValueError`` with the line number in the file."""
    import io

    try:
        if str(path).endswith(".gz"):
            import gzip

            with gzip.open(path, "rb") as fh:
                text = fh.read()
            start = 0
        else:
            with open(path, "rb") as fh:
                fh.seek(start)
                text = fh.read(-1 if stop is None else stop - start)
        if not text.strip():
            return np.empty((0, 0))
        return np.loadtxt(io.BytesIO(text), dtype=np.float64, ndmin=2, comments=None)
    except ValueError as err:
        if start == 0:
            raise
        first = _line_number(path, start)
        raise ValueError(f"{err} (rows counted from line {first} of the file)") from None


def _line_number(path: str, offset: int) -> int:
    """1-based number of the line that starts at byte ``offset``."""
    with open(path, "rb") as fh:
        return fh.read(offset).count(b"\n") + 1


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


def _scratch_dir() -> str:
    """A new temporary folder, in memory (``/dev/shm``) where the system has one."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="mm4lmm_", dir=base)


def _stop(procs: list, folder: str) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


class TextMatrixRead:
    """A text matrix being parsed: created, it starts the work; :meth:`result` returns the
    (rows, columns) float64 array (or raises ``ValueError`` saying what is wrong).

    ``parts``: worker processes (default: one per available core, each with at least
    :data:`MIN_PART_BYTES` of text; 0 parses in the calling process, as files under
    :data:`IN_PROCESS_BYTES` are by default).  Workers left running when the object is
    dropped are stopped and their files removed.
    """

    def __init__(self, path: str | os.PathLike, parts: int | None = None):
        self.path = os.fspath(path)
        size = os.path.getsize(self.path)
        gz = self.path.endswith(".gz")
        if parts is None:
            parts = 0 if size < IN_PROCESS_BYTES else (1 if gz else _default_parts(size))
        self._value = None
        self._procs: list[subprocess.Popen] = []
        if parts <= 0:
            self._folder = None
            self._value = parse_rows(self.path)
            return
        cuts = [0, size] if gz else line_starts(self.path, parts)
        self._folder = _scratch_dir()
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        runner = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        for i, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
            out = os.path.join(self._folder, f"{i}.npy")
            cmd = [sys.executable, "-c", runner, __file__, self.path, str(start), str(stop), out]
            quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
            self._procs.append(subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env, **quiet))
        self._finalizer = weakref.finalize(self, _stop, self._procs, self._folder)

    def result(self) -> np.ndarray:
        if self._value is not None:
            return self._value
        try:
            for proc in self._procs:
                _, err = proc.communicate()
                if proc.returncode:
                    lines = err.decode(errors="replace").strip().splitlines()
                    raise ValueError(lines[-1] if lines else f"a parsing process ended with code {proc.returncode}")
            pieces = [np.load(os.path.join(self._folder, f"{i}.npy"), mmap_mode="r") for i in range(len(self._procs))]
            pieces = [p for p in pieces if p.shape[0]]
            widths = {p.shape[1] for p in pieces}
            if len(widths) > 1:
                raise ValueError(f"lines hold different numbers of values ({sorted(widths)})")
            self._value = np.concatenate(pieces) if pieces else np.empty((0, 0))
            del pieces
        finally:
            self._finalizer()
        return self._value


def main(argv: list[str]) -> int:
    """Worker: parse bytes ``[START, STOP)`` of ``PATH`` and save the rows to ``OUT`` (.npy);
    on a bad file, the reason on the last line of stderr and exit code 1."""
    path, start, stop, out = argv
    try:
        rows = parse_rows(path, int(start), int(stop))
    except ValueError as err:
        print(str(err).replace("\n", " "), file=sys.stderr)
        return 1
    np.save(out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
