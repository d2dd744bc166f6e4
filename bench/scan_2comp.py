"""Two-component marker scan (kinship + error, ReML, MM4LMM's default stopping) against the
linear-algebra floor, measured side by side in one run.

floor = numpy ``eigh`` of the kinship + the float64 rotation ``U' G`` (what any exact
two-component scan must do).  Usage: ``python bench/scan_2comp.py [n] [m]`` (default
n = 2000, m = 20000).  Prints times and the ratio scan / floor.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

import mm4lmm_jax as mj


def simulate(n: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.5, size=m + 1000)
    geno = rng.binomial(2, freq, size=(n, m + 1000)).astype(float)
    w = (geno[:, :1000] - 2 * freq[:1000]) / np.sqrt(2 * freq[:1000] * (1 - freq[:1000]))
    kin = w @ w.T / 1000
    y = 0.3 * geno[:, 1000] + rng.multivariate_normal(np.zeros(n), 0.6 * kin + 0.4 * np.eye(n), method="cholesky")
    return y, geno[:, 1000:], kin


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    y, g, kin = simulate(n, m)
    var_list = {"Kinship": kin, "Error": np.eye(n)}

    # warm-up: compile the chunk program once (a scan of any size reuses it)
    mj.mmest(y, x=g[:, :64], var_list=var_list, verbose=False)

    t0 = time.perf_counter()
    d, u = np.linalg.eigh(kin)
    rot = u.T @ g
    floor = time.perf_counter() - t0
    del rot

    t0 = time.perf_counter()
    res = mj.mmest(y, x=g, var_list=var_list, verbose=False)
    scan = time.perf_counter() - t0

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {mj.core.__name__}")
    print(f"n = {n}, m = {m}, structure = {res.structure}, median iterations = {np.median(res.n_iter_array):.0f}")
    print(f"floor (numpy eigh + U'G, float64): {floor:8.2f} s")
    print(f"mmest two-component scan:          {scan:8.2f} s")
    print(f"ratio scan / floor:                {scan / floor:8.2f}x")
    print(f"converged: {int(res.converged_array.sum())}/{m}")


if __name__ == "__main__":
    main()
