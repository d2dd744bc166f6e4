"""The GPU benchmark, in one command on a bare GPU machine (see ``bench/README.md``).

Usage::

    python bench/gpu_scan.py --out DIR [--budget SECONDS] [--n 10000] [--m 1000000]
    python bench/gpu_scan.py --smoke --out DIR      # the same code path on CPU, tiny sizes

Needs only jax, numpy, scipy and pandas besides the package itself (installed without its
dependencies, or on ``PYTHONPATH``): genotypes are simulated block by block on the device from
a seed (never an n x m array on the host), so no genotype reader is imported.

Cases, each written to ``DIR/gpu_scan.json`` as soon as it ends (a run cut short keeps what it
measured):

1. ``headline``: n individuals, m markers, the exact two-component scan of the product
   (``gwas``'s block program: rotation ``G U`` in float32 inside the compiled program, the
   profiled grid + Newton fits, variance components re-estimated per marker); the kinship from
   ``m_kinship`` simulated markers.  Wall time split into kinship, eigendecomposition, rotation
   and fits (rotation timed on its own on one block), markers per second, peak device memory,
   and a check of a random sample of markers against the float64 path of the same package
   (eigendecomposition, rotation and fits in float64 on the CPU backend): max |delta log10 p|.
2. ``k3``: the exact K >= 3 Newton scan of ``mmest`` at the reference design (n = 2,000 hybrids,
   q = 200 + 200 parents, m = 1,000) and at 10x the markers.
3. ``scaling``: the float32 eigendecomposition at n = 20,000 and 50,000 while memory and the
   budget allow: time and the largest n that fits.

``--budget`` (seconds, default 420) skips the cases that would not end in time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SMOKE = dict(n=256, m=4096, m_kinship=1024, block=512, sample=64, k3_n=120, k3_q=12, k3_m=40, scaling=(384,))
FULL = dict(n=10_000, m=1_000_000, m_kinship=20_000, block=8192, sample=2000, k3_n=2000, k3_q=200, k3_m=1000,
            scaling=(20_000, 50_000))  # fmt: skip


class Report:
    """Figures of the run, written to ``DIR/gpu_scan.json`` after every case."""

    def __init__(self, folder: Path, budget: float):
        self.path = folder / "gpu_scan.json"
        self.start = time.perf_counter()
        self.budget = budget
        self.data: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": budget}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def add(self, key: str, value) -> None:
        self.data[key] = value
        self.data["elapsed_s"] = round(time.perf_counter() - self.start, 2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=float))
        os.replace(tmp, self.path)
        print(f"[{self.data['elapsed_s']:7.1f} s] {key}: {json.dumps(value, default=float)}", flush=True)


def _peak_bytes(device) -> int | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return None if not stats else int(stats.get("peak_bytes_in_use", 0))


# --------------------------------------------------------------------------- simulation


def _simulator(n: int, block: int, n_pops: int = 20):
    """A jitted ``simulate(key) -> (block, n)`` float32 allele counts 0/1/2 of ``n`` individuals
    in ``n_pops`` subpopulations (Balding-Nichols drift, F_st 0.05): a structured kinship."""
    import jax
    import jax.numpy as jnp

    pops = jnp.arange(n) % n_pops
    f_st = 0.05

    @jax.jit
    def simulate(key):
        k1, k2, k3 = jax.random.split(key, 3)
        p = jax.random.uniform(k1, (block,), minval=0.05, maxval=0.5)
        p_pop = jax.random.beta(k2, p * (1 - f_st) / f_st, (1 - p) * (1 - f_st) / f_st, shape=(n_pops, block))
        p_ind = p_pop[pops]  # (n, block)
        u = jax.random.uniform(k3, (2, n, block))
        return ((u[0] < p_ind).astype(jnp.float32) + (u[1] < p_ind).astype(jnp.float32)).T

    return simulate


def _standardise(g):
    """Centre and scale each marker (rows of ``g`` (b, n)): mean 0, mean square 1; monomorphic
    markers stay 0."""
    import jax.numpy as jnp

    mean = g.mean(axis=1, keepdims=True)
    z = g - mean
    scale = jnp.sqrt(jnp.mean(z * z, axis=1, keepdims=True))
    return jnp.where(scale > 0, z / jnp.where(scale > 0, scale, 1.0), 0.0)


# --------------------------------------------------------------------------- headline


def headline(cfg: dict, report: Report, seed: int = 0) -> None:
    """The exact two-component scan of n x m simulated markers (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    from mm4lmm_jax.core._profile_scan import ScanData, null_fit
    from mm4lmm_jax.gwas._block import Constants, block_program

    n, m, m_kin, block = cfg["n"], cfg["m"], cfg["m_kinship"], cfg["block"]
    device = jax.devices()[0]
    simulate = _simulator(n, block)
    key = jax.random.PRNGKey(seed)
    out: dict = {"n": n, "m": m, "m_kinship": m_kin, "block": block, "device": str(device)}

    # kinship (standardised GRM) and a polygenic trait from the kinship markers
    t0 = time.perf_counter()
    kin = jnp.zeros((n, n), jnp.float32)
    genetic = jnp.zeros(n, jnp.float32)
    accumulate = jax.jit(lambda k, gv, z, w: (k + z.T @ z, gv + z.T @ w))
    for b in range(math.ceil(m_kin / block)):
        z = _standardise(simulate(jax.random.fold_in(key, 10_000_000 + b)))
        w = jax.random.normal(jax.random.fold_in(key, 20_000_000 + b), (block,), jnp.float32)
        kin, genetic = accumulate(kin, genetic, z, w)
    kin = kin / (math.ceil(m_kin / block) * block)
    rng = np.random.default_rng(seed)
    genetic = np.asarray(genetic, np.float64)
    genetic /= genetic.std()
    cov = rng.normal(size=n)
    y = 0.3 * cov + genetic + rng.normal(size=n)
    kin.block_until_ready()
    out["kinship_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    d, u = jax.jit(jnp.linalg.eigh)(kin)
    u.block_until_ready()
    out["eigh_float32_s"] = round(time.perf_counter() - t0, 3)
    d64 = jnp.clip(d.astype(jnp.float64), 0.0, None)
    x = np.column_stack([np.ones(n), (cov - cov.mean()) / cov.std()])
    xy_rot = u.T.astype(jnp.float64) @ jnp.asarray(np.column_stack([x, (y - y.mean()) / y.std()]))
    c_rot, y_rot = xy_rot[:, :2].T, xy_rot[:, 2:].T
    null = null_fit(ScanData(d64, c_rot, y_rot[0]), method="reml")
    const = Constants(d64, c_rot, y_rot, jnp.full((1,), jnp.nan))
    program = block_program(False, 31, 1e-4, 30, 1, True)

    # rotation alone, on one block (the program does it inside, fused with the fits)
    rotate = jax.jit(lambda g, uu: jnp.matmul(g, uu, precision=jax.lax.Precision.HIGHEST))  # as the program
    g0 = _standardise(simulate(jax.random.fold_in(key, 0)))
    rotate(g0, u).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(3):
        rotate(g0, u).block_until_ready()
    rotation_per_block = (time.perf_counter() - t0) / 3
    jax.block_until_ready(program(g0, u, const))  # compile

    n_blocks = math.ceil(m / block)
    sample_blocks = set(rng.choice(n_blocks, size=min(n_blocks, max(1, cfg["sample"] // 64)), replace=False).tolist())
    kept_p, kept_g = [], []
    t0 = time.perf_counter()
    pending = None
    for b in range(n_blocks):
        raw = simulate(jax.random.fold_in(key, b))
        fit = program(_standardise(raw), u, const)
        if pending is not None:
            _collect(*pending, kept_p, kept_g)
        pending = (b, fit, raw if b in sample_blocks else None)
        if report.left() < 0:
            out["stopped_early_at_block"] = b
            n_blocks = b + 1
            break
    _collect(*pending, kept_p, kept_g)
    scan_s = time.perf_counter() - t0
    markers = n_blocks * block
    out.update(
        scan_s=round(scan_s, 3),
        markers=markers,
        markers_per_s=round(markers / scan_s),
        rotation_s_estimate=round(rotation_per_block * n_blocks, 3),
        fits_s_estimate=round(max(scan_s - rotation_per_block * n_blocks, 0.0), 3),
        peak_device_bytes=_peak_bytes(device),
        null_sigma2_ratio=float(np.exp(null.log_delta[0])),
        target_scan_s=30.0,
    )
    report.add("headline", out)
    if kept_g and report.left() > 0:
        report.add("headline_check", _check(np.asarray(kin, np.float64), x, y, kept_g, kept_p, cfg["sample"]))


def _collect(b, fit, g, kept_p, kept_g) -> None:
    """Keep 64 markers of a sampled block (their allele counts and float32 p-values)."""
    import jax

    jax.block_until_ready(fit)
    if g is not None:
        kept_g.append(np.asarray(g[:64], np.float64))
        kept_p.append(np.asarray(fit.p_chi2[0, :64], np.float64))


def _check(kin: np.ndarray, x: np.ndarray, y: np.ndarray, kept_g, kept_p, sample: int) -> dict:
    """The sampled markers by the float64 path on the CPU backend: max |delta log10 p|."""
    import jax
    import jax.numpy as jnp

    from mm4lmm_jax.gwas._block import Constants, block_program

    cpu = jax.devices("cpu")[0]
    g = np.concatenate(kept_g)[:sample]
    g = g - g.mean(axis=1, keepdims=True)  # standardised in float64, as the float64 path does
    scale = np.sqrt(np.mean(g * g, axis=1, keepdims=True))
    g = np.where(scale > 0, g / np.where(scale > 0, scale, 1.0), 0.0)
    p32 = np.concatenate(kept_p)[:sample]
    t0 = time.perf_counter()
    from scipy.linalg import eigh as lapack_eigh

    d, u = lapack_eigh(kin, driver="evd", check_finite=False)
    eigh_s = time.perf_counter() - t0
    ys = (y - y.mean()) / y.std()
    rot = u.T @ np.column_stack([x, ys])
    with jax.default_device(cpu):
        const = Constants(jnp.asarray(np.clip(d, 0, None)), jnp.asarray(rot[:, :2].T), jnp.asarray(rot[:, 2:].T),
                          jnp.full((1,), jnp.nan))  # fmt: skip
        program = block_program(False, 31, 1e-4, 30, 1, False)
        fit = program(jnp.asarray(g @ u), const)
        p64 = np.asarray(fit.p_chi2[0], np.float64)
    ok = np.isfinite(p64) & np.isfinite(p32) & (p64 > 0) & (p32 > 0)
    diff = np.abs(np.log10(p32[ok]) - np.log10(p64[ok]))
    return {"markers": int(ok.sum()), "max_abs_dlog10p": float(diff.max()) if ok.any() else None,
            "cpu_float64_eigh_s": round(eigh_s, 3), "target_max_abs_dlog10p": 1e-4}  # fmt: skip


# --------------------------------------------------------------------------- K >= 3


def k3(cfg: dict, report: Report) -> None:
    """``mmest``'s exact K >= 3 Newton scan at the reference design and at 10x the markers."""
    import warnings

    import mm4lmm_jax as mj

    rng = np.random.default_rng(0)
    n, q, m = cfg["k3_n"], cfg["k3_q"], cfg["k3_m"]

    def kinship(size):
        g = rng.binomial(2, rng.uniform(0.1, 0.5, 300), size=(size, 300)).astype(float)
        g -= g.mean(axis=0)
        k = g @ g.T / 300
        return k / np.mean(np.diag(k)) + 1e-3 * np.eye(size)

    k1, k2 = kinship(q), kinship(q)
    z1, z2 = np.eye(q)[rng.integers(0, q, n)], np.eye(q)[rng.integers(0, q, n)]
    trial = np.where(rng.random(n) < 0.5, 1.0, 0.0)
    y = 10 + 0.5 * trial + z1 @ np.linalg.cholesky(k1) @ rng.normal(size=q) * 0.6 + z2 @ (
        np.linalg.cholesky(k2) @ rng.normal(size=q)) * 0.8 + rng.normal(size=n)  # fmt: skip
    comps = dict(
        var_list={"Flint": k1, "Dent": k2, "Error": np.eye(n)}, z_list={"Flint": z1, "Dent": z2, "Error": None}
    )
    out = {"n": n, "q": [q, q]}
    for label, count in (("reference", m), ("x10", 10 * m)):
        if report.left() < 30:
            out[label] = "skipped: budget"
            continue
        markers = rng.binomial(2, rng.uniform(0.1, 0.5, count), size=(n, count)).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            res = mj.mmest(y, cofactor=trial, x=markers, algorithm="newton", verbose=False, **comps)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            mj.mmest(y, cofactor=trial, x=markers, algorithm="newton", verbose=False, **comps)
            warm = time.perf_counter() - t0
        out[label] = {"m": count, "first_call_s": round(first, 3), "warm_s": round(warm, 3),
                      "converged": float(np.mean(res.converged_array))}  # fmt: skip
    report.add("k3", out)


# --------------------------------------------------------------------------- scaling


def scaling(cfg: dict, report: Report) -> None:
    """The float32 eigendecomposition of an n x n kinship on the device, growing n."""
    import jax
    import jax.numpy as jnp

    out: dict = {}
    largest = None
    for n in cfg["scaling"]:
        if report.left() < 60 and n > 1000:
            out[str(n)] = "skipped: budget"
            continue
        try:
            key = jax.random.PRNGKey(n)
            w = jax.random.normal(key, (n, 256), jnp.float32)
            kin = (w @ w.T) / 256 + jnp.eye(n, dtype=jnp.float32)
            t0 = time.perf_counter()
            d, u = jax.jit(jnp.linalg.eigh)(kin)
            u.block_until_ready()
            out[str(n)] = {"eigh_float32_s": round(time.perf_counter() - t0, 3),
                           "peak_device_bytes": _peak_bytes(jax.devices()[0])}  # fmt: skip
            largest = n
            del d, u, kin, w
        except Exception as err:  # out of device memory: the largest n that fits is the one before
            out[str(n)] = f"failed: {type(err).__name__}: {str(err)[:200]}"
            break
    out["largest_n_that_fits"] = largest
    report.add("scaling", out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_scan.json")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; larger cases are skipped when short")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU backend (seconds)")
    parser.add_argument("--n", type=int, help="individuals of the headline case")
    parser.add_argument("--m", type=int, help="markers of the headline case")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_enable_x64", True)
    cfg = dict(SMOKE if args.smoke else FULL)
    cfg.update({k: v for k, v in (("n", args.n), ("m", args.m)) if v})
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(folder, args.budget)
    import mm4lmm_jax

    report.add("machine", {"platform": platform.platform(), "python": platform.python_version(),
                           "jax": jax.__version__, "backend": jax.default_backend(),
                           "devices": [str(d) for d in jax.devices()], "package": mm4lmm_jax.__version__,
                           "smoke": bool(args.smoke), "config": {k: v for k, v in cfg.items()}})  # fmt: skip
    headline(cfg, report)
    k3(cfg, report)
    scaling(cfg, report)
    report.add("total_s", round(time.perf_counter() - report.start, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
