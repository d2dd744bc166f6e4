"""Cost of analysing each trait on its own individuals: k traits with k different missingness
patterns (one eigendecomposition and rotation each) against the same k traits observed on the
same individuals (one shared rotation), in one run.

``python bench/patterns.py [n] [m] [k]`` (default 1,000 individuals, 4,000 markers, 4 traits,
10% missing per trait): prints both wall times (warm: the programs compiled by a first run),
their ratio, and k (the ratio's ceiling when the scan is all per-pattern work).
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

import mm4lmm_jax as mj


def main() -> None:
    n, m, k = (int(a) for a in (sys.argv[1:] + ["1000", "4000", "4"][len(sys.argv[1:]) :])[:3])
    rng = np.random.default_rng(0)
    freq = rng.uniform(0.05, 0.5, size=m)
    g = rng.binomial(2, freq, size=(n, m)).astype(float)
    w = (g[:, :500] - 2 * freq[:500]) / np.sqrt(2 * freq[:500] * (1 - freq[:500]))
    kin = w @ w.T / 500
    y = rng.normal(size=(n, k)) + 0.3 * g[:, :1]
    patterned = y.copy()
    for j in range(k):
        patterned[rng.choice(n, n // 10, replace=False), j] = np.nan
    shared = y.copy()
    shared[np.isnan(patterned).any(axis=1)] = np.nan  # one pattern: the intersection
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, traits in (("shared", shared), ("patterns", patterned)):
            mj.gwas(traits, g, kinship=kin, progress=False)  # compile
            t0 = time.perf_counter()
            res = mj.gwas(traits, g, kinship=kin, progress=False)
            times[name] = time.perf_counter() - t0
            print(f"{name}: {len(res.attrs['missingness_patterns'])} pattern(s), {times[name]:.2f} s")
    print(f"n = {n}, m = {m}, k = {k}: {k} patterns / 1 pattern = {times['patterns'] / times['shared']:.2f}x")


if __name__ == "__main__":
    main()
