"""Output that cannot mislead and scans that survive: the CLI checks --out before any work,
writes atomically, removes a previous run's files, keeps a log, turns OS errors and SIGTERM
into one line, resumes a killed scan from its checkpoint, and plots or says why not."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import mm4lmm_jax as mj
from mm4lmm_jax import cli
from mm4lmm_jax.datasets._simulate import simulate_plink
from mm4lmm_jax.gwas import _scan as scan_module


@pytest.fixture(scope="module")
def plink(tmp_path_factory):
    return simulate_plink(tmp_path_factory.mktemp("plink"), n=200, m=300, n_chrom=3, seed=5)


def _args(plink, out, *extra):
    return ["gwas", "--bfile", plink.prefix, "--pheno", plink.pheno, "--pheno-name", "trait1", "--kinship",
            plink.kinship, "--out", str(out), "--quiet", "--no-plots", "--chunk-size", "64", *extra]  # fmt: skip


def test_unwritable_out_fails_before_any_work(plink, tmp_path, capsys, monkeypatch):
    def never(*a, **k):
        raise AssertionError("the scan started")

    monkeypatch.setattr(mj, "gwas", never)
    for out, message in [(tmp_path / "missing" / "scan", "does not exist"), (tmp_path, "is a folder")]:
        assert cli.main(_args(plink, out)) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_failed_run_leaves_no_stale_output_and_says_so_in_the_log(plink, tmp_path, capsys):
    out = tmp_path / "scan"
    Path(f"{out}.tsv").write_text("a previous run's results\n")
    rc = cli.main(_args(plink, out, "--pheno-name", "height"))
    assert rc == 2 and "height" in capsys.readouterr().err
    assert not Path(f"{out}.tsv").exists()
    log = Path(f"{out}.log").read_text()
    assert "removed the previous run's output" in log and "NOT completed" in log and "\ncompleted: " not in log


def test_a_rerun_with_a_bare_prefix_replaces_the_previous_output(plink, tmp_path, monkeypatch, capsys):
    """``--out scan`` (no folder) run twice in the working directory: the second run removes the
    first run's files once each and completes (it used to list ``scan.tsv`` twice, as
    ``scan.tsv`` and ``./scan.tsv``, and fail removing it the second time)."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(_args(plink, "scan")) == 0
    first = Path("scan.tsv").read_text()
    assert cli.main(_args(plink, "scan")) == 0
    assert Path("scan.tsv").read_text() == first
    assert "removed the previous run's output: scan.tsv" in Path("scan.log").read_text()
    capsys.readouterr()


def test_a_full_disk_during_the_write_leaves_no_truncated_file(plink, tmp_path, capsys, monkeypatch):
    from mm4lmm_jax.gwas import _outputs as io  # the CLI's table writer

    def full(frame, path):
        Path(path).write_text("chr\tsnp\n1\tpartial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "write_tsv", full)
    out = tmp_path / "scan"
    assert cli.main(_args(plink, out)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert not Path(f"{out}.tsv").exists() and not list(tmp_path.glob("scan.tsv*"))
    assert "NOT completed" in Path(f"{out}.log").read_text()


def test_sigterm_ends_the_run_cleanly(plink, tmp_path, capsys, monkeypatch):
    def killed(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(mj, "gwas", killed)
    out = tmp_path / "scan"
    assert cli.main(_args(plink, out)) == 143
    assert "terminated" in capsys.readouterr().err
    assert "NOT completed" in Path(f"{out}.log").read_text()


def test_a_killed_scan_resumes_to_the_uninterrupted_results(plink, tmp_path, capsys, monkeypatch):
    full = tmp_path / "full"
    before = jax.config.jax_compilation_cache_dir
    assert cli.main(_args(plink, full)) == 0
    assert jax.config.jax_compilation_cache_dir == before  # the run's cache setting ends with it
    original = scan_module.start_block
    calls = []

    def dies_on_the_third_block(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(scan_module, "start_block", dies_on_the_third_block)
    out = tmp_path / "scan"
    assert cli.main(_args(plink, out)) == 130
    saved = list(Path(f"{out}.checkpoint").glob("*.npz"))
    assert len(saved) == 1 and not Path(f"{out}.tsv").exists()  # the second block was still in flight
    monkeypatch.setattr(scan_module, "start_block", original)
    assert cli.main(_args(plink, out, "--resume")) == 0
    assert "1 block(s) taken from the checkpoint" in Path(f"{out}.log").read_text()
    assert Path(f"{out}.tsv").read_bytes() == Path(f"{full}.tsv").read_bytes()
    assert not Path(f"{out}.checkpoint").exists()
    capsys.readouterr()


def test_checkpoint_of_other_inputs_is_refused(plink, tmp_path):
    folder = tmp_path / "ck"
    mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, pheno_names=["trait1"], progress=False,
            checkpoint=folder, chunk_size=64)  # fmt: skip
    with pytest.raises(mj.gwas.__globals__["InputError"], match="other inputs"):
        mj.gwas(plink.pheno, plink.prefix, kinship=plink.kinship, pheno_names=["trait2"], progress=False,
                checkpoint=folder, chunk_size=64)  # fmt: skip


def test_without_matplotlib_the_run_ends_with_a_note(plink, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "scan"
    args = [a for a in _args(plink, out) if a != "--no-plots"]
    assert cli.main(args) == 0
    assert "plots skipped: matplotlib is not installed" in capsys.readouterr().out
    assert Path(f"{out}.tsv").exists()


def test_phenotypes_with_no_individual_in_common_are_each_analysed(plink, tmp_path):
    pheno = pd.read_csv(plink.pheno, sep="\t")
    pheno["trait2"] = np.where(pheno["trait1"].notna(), np.nan, np.arange(len(pheno)) % 3.0)
    path = tmp_path / "p.tsv"
    pheno.to_csv(path, sep="\t", index=False, na_rep="NA")
    res = mj.gwas(str(path), plink.prefix, kinship=plink.kinship, progress=False)  # each on its own individuals
    assert res.attrs["n_analysed"]["trait2"] == int(pheno["trait1"].isna().sum())


def test_sigterm_during_the_parallel_kinship_parse_removes_its_files(plink, tmp_path, capsys, monkeypatch):
    """SIGTERM (timeout, SLURM) while worker processes parse the kinship text: the workers are
    stopped and the parsed pieces (in /dev/shm or the temporary folder) removed."""
    from mm4lmm_jax.gwas import _text_matrix as text_matrix

    folders = []
    original = text_matrix._scratch_dir

    def scratch(needed):
        folders.append(original(needed))
        return folders[-1]

    def terminated(source):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(text_matrix, "IN_PROCESS_BYTES", 0)
    monkeypatch.setattr(text_matrix, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(text_matrix, "_scratch_dir", scratch)
    monkeypatch.setattr(scan_module, "_import_host_libraries", terminated)
    assert cli.main(_args(plink, tmp_path / "scan")) == 143
    assert len(folders) == 1 and not Path(folders[0]).exists()
    capsys.readouterr()
