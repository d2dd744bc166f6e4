"""Larger samples: the whole CLI run at n = 10,000 (default), m = 20,000 against JAMMA, one
run each (they take minutes), with peak memory and our time per step.

Usage: ``python bench/large_n.py [n] [m]``.  Simulated PLINK data (``simulate_plink``, ten
causal markers, 1% missing genotypes), one trait, intercept only.  Every command runs under
``/usr/bin/time`` (wall seconds, peak resident memory):

* ours, the GRM from the markers (``--grm``, standardised): cold (empty compilation cache),
  then warm (the usual case);
* ours with a text kinship (GEMMA's centred ``-gk 1``, written by ``mm4lmm grm --gk 1
  --format gemma``), warm;
* JAMMA with the same text kinship (``-k``); JAMMA computing its kinship (``-gk 1``) and then
  scanning with it (the two commands' times summed);
* agreement of p-values with JAMMA on the same kinship; our time per step from the log.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gwas_vs_peers import _data  # noqa: E402


def timed(cmd: list[str], cwd: Path, env=None) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one command."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr[-2000:]}")
    wall, kib = out.stderr.strip().splitlines()[-1].split()
    return float(wall), float(kib) / 1024


def ours(out: str, kinship: list[str]) -> list[str]:
    return [sys.executable, "-m", "mm4lmm_jax.cli", "gwas", "--bfile", "sim", "--pheno", "trait1.tsv", *kinship,
            "--out", out, "--quiet", "--no-plots"]  # fmt: skip


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    t0 = time.perf_counter()
    root = _data(n, m, kinship=False)
    print(f"data ready in {time.perf_counter() - t0:.0f} s ({root})", flush=True)
    cache = Path(tempfile.mkdtemp(prefix="mm4lmm_large_cache_"))
    repo = str(Path(__file__).resolve().parents[1])  # this checkout's package, installed or not
    env = dict(os.environ, MM4LMM_JAX_CACHE=str(cache), PYTHONPATH=repo)
    rows = {}
    rows["ours, --grm, cold"] = timed(ours("grm_cold", ["--grm"]), root, env)
    rows["ours, --grm, warm"] = timed(ours("grm", ["--grm"]), root, env)
    steps = re.search(r"scan steps: (.*)", (root / "grm.log").read_text()).group(1)
    if not (root / "kin.cXX.txt").exists():
        grm = [sys.executable, "-m", "mm4lmm_jax.cli", "grm", "--bfile", "sim", "--gk", "1", "--format", "gemma"]
        rows["mm4lmm grm --gk 1 (text)"] = timed([*grm, "--out", "kin", "--quiet"], root, env)
    rows["ours, text kinship, warm"] = timed(ours("text", ["--kinship", "kin.cXX.txt"]), root, env)
    steps_text = re.search(r"scan steps: (.*)", (root / "text.log").read_text()).group(1)
    if shutil.which("jamma"):
        common = ["-maf", "0", "-miss", "1", "-outdir", "out"]
        rows["JAMMA -k text -lmm 1"] = timed(["jamma", "-bfile", "sim", "-k", "kin.cXX.txt", "-lmm", "1", "-o", "jamma",
                                              *common], root)  # fmt: skip
        k = timed(["jamma", "-bfile", "sim", "-gk", "1", "-o", "jk", *common], root)
        s = timed(["jamma", "-bfile", "sim", "-k", "out/jk.cXX.npy", "-lmm", "1", "-o", "jk", *common], root)
        rows["JAMMA -gk 1, then -lmm 1"] = (k[0] + s[0], max(k[1], s[1]))
    shutil.rmtree(cache, ignore_errors=True)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores; n = {n}, m = {m}")
    print(f"{'command':34s} {'wall':>9s} {'peak RSS':>10s}")
    for name, (wall, mib) in rows.items():
        print(f"{name:34s} {wall:8.1f} s {mib:8.0f} MiB")
    if "JAMMA -k text -lmm 1" in rows:
        same = rows["JAMMA -k text -lmm 1"][0] / rows["ours, text kinship, warm"][0]
        own = rows["JAMMA -gk 1, then -lmm 1"][0] / rows["ours, --grm, warm"][0]
        print(f"JAMMA / ours, same text kinship (warm): {same:.2f}x; JAMMA (-gk 1 + -lmm 1) / ours --grm: {own:.2f}x")
        a = pd.read_csv(root / "text.tsv", sep="\t")
        b = pd.read_csv(root / "out" / "jamma.assoc.txt", sep="\t")
        d = np.abs(np.log10(a.p_wald.to_numpy()) - np.log10(b.p_wald.to_numpy()))
        print(f"ours vs JAMMA, same kinship: max |delta log10 p| = {np.nanmax(d):.2e} (median {np.nanmedian(d):.1e})")
    print(f"our steps (--grm, warm): {steps}")
    print(f"our steps (text kinship, warm): {steps_text}")


if __name__ == "__main__":
    main()
