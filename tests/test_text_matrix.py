"""Kinship text files parsed by worker processes (gwas.text_matrix) and the symmetry check."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from mm4lmm_jax.gwas import _text_matrix as text_matrix
from mm4lmm_jax.gwas._io import InputError, KinshipRead, checked_symmetric
from mm4lmm_jax.gwas._text_matrix import TextMatrixRead, line_starts


@pytest.fixture
def matrix(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(37, 37)) * 10.0 ** rng.integers(-8, 3, size=(37, 37))
    k = a @ a.T
    tab = tmp_path / "k.txt"
    np.savetxt(tab, k, delimiter="\t", fmt="%.17g")  # exact: 17 digits read back to the same double
    space = tmp_path / "k_space.txt"
    space.write_text("\n".join("  ".join(repr(float(v)) for v in row) + " " for row in k) + "\n\n")
    gz = tmp_path / "k.txt.gz"
    gz.write_bytes(gzip.compress(tab.read_bytes()))
    return k, tab, space, gz


@pytest.mark.parametrize("parts", [0, 1, 3])
def test_every_split_reads_the_same_numbers(matrix, parts):
    k, tab, space, gz = matrix
    for path in (tab, space, gz):
        np.testing.assert_array_equal(TextMatrixRead(path, parts=parts).result(), k)


def test_more_workers_than_lines(tmp_path):
    path = tmp_path / "k3.txt"
    path.write_text("1 0.5 0\n0.5 1 0\n0 0 1\n")
    k = TextMatrixRead(path, parts=5).result()  # some workers get an empty range
    np.testing.assert_array_equal(k, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]])


def test_line_starts_split_at_line_starts(matrix):
    _, tab, _, _ = matrix
    text = tab.read_bytes()
    for parts in (1, 2, 5, 40):
        cuts = line_starts(str(tab), parts)
        assert len(cuts) == parts + 1 and cuts[0] == 0 and cuts[-1] == len(text)
        assert cuts == sorted(cuts)
        assert all(c == 0 or c == len(text) or text[c - 1 : c] == b"\n" for c in cuts)


@pytest.mark.parametrize("parts", [0, 3])
def test_bad_text_names_the_file_and_the_problem(tmp_path, parts):
    lines = ["\t".join(["1.0"] * 6)] * 6
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("\n".join(lines[:4] + ["1.0\t2.0"] + lines[5:]) + "\n")
    with pytest.raises(InputError, match=r"kinship file .*ragged.txt: the number of columns changed from 6 to 2"):
        KinshipRead(ragged, 6, parts=parts).result()
    word = tmp_path / "word.txt"
    word.write_text("\n".join(lines[:5] + ["1.0\tx\t1\t1\t1\t1"]) + "\n")
    with pytest.raises(InputError, match=r"kinship file .*word.txt: .*could not convert string 'x'"):
        KinshipRead(word, 6, parts=parts).result()
    ok = tmp_path / "ok.txt"
    ok.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"shape \(6, 6\), expected \(7, 7\)"):
        KinshipRead(ok, 7, parts=parts).result()
    np.testing.assert_array_equal(KinshipRead(ok, 6, parts=parts).result(), np.ones((6, 6)))


@pytest.mark.parametrize("tile", [7, 128, 512])
def test_symmetry_check_sees_every_entry(tile):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 300))
    k = a @ a.T
    assert checked_symmetric(k, "k", tile=tile) is k
    for i, j in [(0, 299), (299, 130), (140, 141), (7, 7)]:
        bad = k.copy()
        bad[i, j] = np.nan
        with pytest.raises(InputError, match="k: non-finite"):
            checked_symmetric(bad, "k", tile=tile)
        if i != j:
            bad[i, j] = k[i, j] + 1e-3
            with pytest.raises(InputError, match="not symmetric"):
                checked_symmetric(bad, "k", tile=tile)
            bad[i, j] = k[i, j] * (1 + 1e-12)  # nearly symmetric: averaged with its transpose
            fixed = checked_symmetric(bad, "k", tile=tile)
            np.testing.assert_array_equal(fixed, fixed.T)
            np.testing.assert_allclose(fixed, k, rtol=1e-12)


def test_workers_that_cannot_run_fall_back_to_this_process(matrix, monkeypatch):
    k, tab, _, _ = matrix
    monkeypatch.setattr(text_matrix, "_RUNNER", "raise SystemExit(3)")  # every worker fails
    np.testing.assert_array_equal(TextMatrixRead(tab, parts=2).result(), k)
    monkeypatch.setattr(text_matrix.sys, "executable", str(tab.parent / "no-python-here"))  # none starts
    reading = TextMatrixRead(tab, parts=2)
    assert not reading._procs
    np.testing.assert_array_equal(reading.result(), k)


def test_dropped_reads_leave_no_files_or_processes(matrix):
    _, tab, _, _ = matrix
    reading = TextMatrixRead(tab, parts=2)
    folder, procs = reading._folder, list(reading._procs)
    del reading
    assert all(p.poll() is not None for p in procs)
    assert not os.path.exists(folder)
    reading = TextMatrixRead(tab, parts=2)
    folder = reading._folder
    reading.result()
    assert not os.path.exists(folder)


def test_scratch_space_in_memory_only_where_it_has_room(matrix, monkeypatch):
    _, tab, _, gz = matrix
    size = os.path.getsize(tab)
    needed = text_matrix._array_bytes(str(tab), size)
    assert 37 * 37 * 8 <= needed <= 2 * 37 * 37 * 8
    assert text_matrix._array_bytes(str(gz), os.path.getsize(gz)) == 37 * 37 * 8
    np.testing.assert_array_equal(TextMatrixRead(tab, parts=2).result(), np.loadtxt(tab))
    # where the folder goes: /dev/shm when it exists, is writable and has room, else the default
    monkeypatch.setattr(text_matrix.tempfile, "mkdtemp", lambda prefix, dir: dir)
    monkeypatch.setattr(text_matrix.os.path, "isdir", lambda path: True)
    monkeypatch.setattr(text_matrix.os, "access", lambda path, mode: True)
    for free, where in [(10 * needed, "/dev/shm"), (needed, None)]:  # a container's /dev/shm is small
        monkeypatch.setattr(text_matrix.shutil, "disk_usage", lambda _, free=free: type("U", (), {"free": free}))
        assert text_matrix._scratch_dir(needed) == where
    monkeypatch.setattr(text_matrix.os.path, "isdir", lambda path: False)  # no /dev/shm
    assert text_matrix._scratch_dir(needed) is None
