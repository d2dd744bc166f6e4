"""GWAS scan against GEMMA, JAMMA and the linear-algebra floor, measured side by side in one run.

Usage: ``python bench/gwas_vs_peers.py [n] [m] [--repeat=R]`` (default n = 2000, m = 20000;
every timed command line runs R = 3 times, its best time kept, for every tool alike), or
``python bench/gwas_vs_peers.py --memory [n] [m]`` for the peak memory of a CLI scan
(default m = 200,000).

* whole command-line runs on the same PLINK files and kinship (GEMMA-format text), one
  trait, intercept only: ``mm4lmm gwas`` (cold: empty compilation cache; warm: cache filled
  by a previous run), ``jamma -lmm 1`` and ``gemma -lmm 1`` (``-maf 0 -miss 1 [-r2 1]`` so
  that they keep every marker);
* in-process: ``gwas()`` on an in-memory kinship against the floor = numpy ``eigh`` of the
  kinship + the float64 rotation ``U' G`` of all markers (what any exact scan must do);
* agreement of p-values and effects with GEMMA, and of the float32 rotation with float64.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mm4lmm_jax as mj
from mm4lmm_jax.datasets._simulate import simulate_plink
from mm4lmm_jax.gwas._io import open_plink, read_kinship


def _run(cmd: list[str], cwd: Path, env=None) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - t0


def _data(n: int, m: int, kinship: bool = True) -> Path:
    root = Path(tempfile.gettempdir()) / f"mm4lmm_bench_{n}_{m}"
    if not (root / "sim.bed").exists() or (kinship and not (root / "sim.cXX.txt").exists()):
        t0 = time.perf_counter()
        simulate_plink(root, n=n, m=m, n_chrom=10, n_causal=10, seed=2, kinship=kinship)
        print(f"simulated n = {n}, m = {m} in {time.perf_counter() - t0:.1f} s ({root})")
    pd.read_csv(root / "sim.pheno.tsv", sep="\t")[["FID", "IID", "trait1"]].to_csv(
        root / "trait1.tsv", sep="\t", index=False, na_rep="NA"
    )
    return root


def _ours(out: str, extra=()) -> list[str]:
    return [sys.executable, "-m", "mm4lmm_jax.cli", "gwas", "--bfile", "sim", "--pheno", "trait1.tsv",
            "--kinship", "sim.cXX.txt", "--out", out, "--quiet", "--no-plots", *extra]  # fmt: skip


def compare(n: int, m: int, repeat: int = 3) -> None:
    root = _data(n, m)
    cache = str(root / "xla_cache")
    shutil.rmtree(cache, ignore_errors=True)
    env_cold = dict(os.environ, MM4LMM_JAX_CACHE="")
    env_warm = dict(os.environ, MM4LMM_JAX_CACHE=cache)
    times: dict[str, float] = {}

    def best(cmd, env=None) -> float:  # the machine shares its cores: best of `repeat` runs, every tool alike
        return min(_run(cmd, root, env) for _ in range(repeat))

    times["mm4lmm gwas (cold: compiles)"] = _run(_ours("ours"), root, env_cold)
    _run(_ours("ours"), root, env_warm)  # fills the compilation cache
    times["mm4lmm gwas (warm cache)"] = best(_ours("ours"), env_warm)
    _run(_ours("ours64", ["--float64"]), root, env_warm)
    times["mm4lmm gwas --float64 (warm)"] = best(_ours("ours64", ["--float64"]), env_warm)
    if shutil.which("jamma"):
        times["JAMMA -lmm 1"] = best(
            ["jamma", "-bfile", "sim", "-k", "sim.cXX.txt", "-lmm", "1", "-maf", "0", "-miss", "1", "-o", "jamma",
             "-outdir", "out"])  # fmt: skip
    if shutil.which("gemma"):
        times["GEMMA -lmm 1"] = best(
            ["gemma", "-bfile", "sim", "-k", "sim.cXX.txt", "-lmm", "1", "-maf", "0", "-miss", "1", "-r2", "1",
             "-o", "gemma", "-outdir", "out"])  # fmt: skip

    # in-process: gwas() against the floor, same genotypes and kinship in memory
    src = open_plink(root / "sim")
    pheno = pd.read_csv(root / "trait1.tsv", sep="\t")
    rows = np.flatnonzero(pheno.trait1.notna().to_numpy())
    kin = read_kinship(root / "sim.cXX.txt", src.n)
    mj.gwas(root / "trait1.tsv", root / "sim", kinship=kin, progress=False)  # compile
    t_gwas = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = mj.gwas(root / "trait1.tsv", root / "sim", kinship=kin, progress=False)
        t_gwas = min(t_gwas, time.perf_counter() - t0)
    geno = src.read(rows, 0, src.m)
    geno = np.where(np.isnan(geno), np.nanmean(geno, axis=0), geno)
    t_floor = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        _, u = np.linalg.eigh(kin[np.ix_(rows, rows)])
        rotated = u.T @ geno
        t_floor = min(t_floor, time.perf_counter() - t0)
    del rotated, geno

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; n = {n}, m = {m}")
    base = times.get("mm4lmm gwas (warm cache)")
    print(f"{'whole CLI run':34s} {'time':>9s}   ours (warm) faster by")
    for name, t in times.items():
        print(f"{name:34s} {t:8.2f} s   {t / base:6.2f}x")
    print(f"\n{'in-process':34s} {'time':>9s}")
    print(f"{'floor: numpy eigh + U^T G (f64)':34s} {t_floor:8.2f} s")
    print(f"{'gwas() (float32 rotation)':34s} {t_gwas:8.2f} s   ratio gwas / floor = {t_gwas / t_floor:.2f}x")

    ours = pd.read_csv(root / "ours.tsv", sep="\t")
    ours64 = pd.read_csv(root / "ours64.tsv", sep="\t")
    d32 = np.abs(np.log10(ours.p_wald) - np.log10(ours64.p_wald))
    print(f"\nfloat32 vs float64 rotation: max |delta log10 p| = {d32.max():.2e}")
    if (root / "out" / "gemma.assoc.txt").exists():
        gem = pd.read_csv(root / "out" / "gemma.assoc.txt", sep="\t")
        for label, frame in (("float64", ours64), ("float32", ours)):
            dl = np.abs(np.log10(frame.p_wald) - np.log10(gem.p_wald))
            db = np.abs(frame.beta - gem.beta) / gem.se
            print(f"vs GEMMA ({label} rotation): max |delta log10 p| = {dl.max():.2e} (median {np.median(dl):.1e}), "
                  f"max |delta beta| / se = {db.max():.2e}, max |se / se_GEMMA - 1| = "
                  f"{np.max(np.abs(frame.se / gem.se - 1)):.2e}")  # fmt: skip
    print(f"converged: {int(res.converged.sum())}/{len(res)}, lambda_GC = {res.attrs['lambda_gc']}")


def memory(n: int, m: int) -> None:
    root = _data(n, m, kinship=False)
    kin = root / "kin.npy"
    if not kin.exists():
        rng = np.random.default_rng(0)
        w = rng.standard_normal((n, 500))
        np.save(kin, w @ w.T / 500)
    cmd = _ours("mem", ["--float64"])
    cmd[cmd.index("sim.cXX.txt")] = str(kin)
    t = _run(cmd, root, dict(os.environ, MM4LMM_JAX_CACHE=""))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(f"n = {n}, m = {m}: mm4lmm gwas (float64 rotation) in {t:.1f} s, peak memory {peak:.0f} MiB")
    cmd = _ours("mem32")
    cmd[cmd.index("sim.cXX.txt")] = str(kin)
    t = _run(cmd, root, dict(os.environ, MM4LMM_JAX_CACHE=""))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"n = {n}, m = {m}: mm4lmm gwas (float32 rotation) in {t:.1f} s, peak memory so far {peak:.0f} MiB")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--memory" in sys.argv:
        memory(int(args[0]) if args else 2000, int(args[1]) if len(args) > 1 else 200_000)
    else:
        repeat = next((int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--repeat=")), 3)
        compare(int(args[0]) if args else 2000, int(args[1]) if len(args) > 1 else 20_000, repeat)


if __name__ == "__main__":
    main()
