"""Kenward-Roger tests for every model of a marker scan, against the plain Wald scan on the
same data, measured side by side in one run.

Usage: ``python bench/kr_scan.py [n] [m]`` (default n = 1000, m = 10000).  Simulated
genotypes, kinship from 1,000 other markers, ReML two-component scan (MM4LMM's default
stopping).  Prints the times of the scan (mmest), of the Wald tests, of the KR tests of
the marker effect (one batched call over all models), and the ratios.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import jax
import numpy as np

import mm4lmm_jax as mj

sys.path.insert(0, os.path.dirname(__file__))
from scan_2comp import simulate  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    y, g, kin = simulate(n, m)
    var_list = {"Kinship": kin, "Error": np.eye(n)}
    contrast = np.array([[0.0, 1.0]])

    # warm-up: compile every program once on a small scan (same chunk shapes)
    warm = mj.mmest(y, x=g[:, :300], var_list=var_list, verbose=False)
    mj.anova_test(warm, contrast)
    mj.anova_test(warm, contrast, type="KR")

    t0 = time.perf_counter()
    res = mj.mmest(y, x=g, var_list=var_list, verbose=False)
    t_fit = time.perf_counter() - t0

    t0 = time.perf_counter()
    wald = mj.anova_test(res, contrast)
    t_wald = time.perf_counter() - t0

    t0 = time.perf_counter()
    kr = mj.anova_test(res, contrast, type="KR")
    t_kr = time.perf_counter() - t0

    p_w = wald.column("pval").to_numpy().ravel()
    p_kr = kr.column("pval").to_numpy().ravel()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.default_backend()})")
    print(f"n = {n}, m = {m}, structure = {res.structure}")
    print(f"scan (mmest):                      {t_fit:8.2f} s")
    print(f"Wald tests of the marker effect:   {t_wald:8.2f} s")
    print(f"KR tests of the marker effect:     {t_kr:8.2f} s  ({1e6 * t_kr / m:.0f} us per model)")
    print(f"ratio KR tests / Wald tests:       {t_kr / t_wald:8.1f}x")
    print(f"ratio (scan + KR) / (scan + Wald): {(t_fit + t_kr) / (t_fit + t_wald):8.2f}x")
    print(
        f"all KR finite: {bool(np.isfinite(kr.array).all())}; median KR ddf {np.median(kr.column('ddf')):.1f}; "
        f"max |log10 p_KR - log10 p_Wald| {np.max(np.abs(np.log10(p_kr) - np.log10(p_w))):.3f}"
    )


if __name__ == "__main__":
    main()
