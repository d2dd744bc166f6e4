"""``bench/gpu_scan.py --smoke``: the GPU benchmark's code path on CPU at tiny sizes, with the
packages a lent GPU machine lacks made unimportable, so the script never rots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: what the GPU machine does not have (it has jax, numpy, scipy, pandas, pyarrow, formulaic,
#: tqdm, flatbuffers, matplotlib)
ABSENT = ["bed_reader", "pgenlib", "cbgen", "cyvcf2", "dask", "distributed", "bgen_reader", "pysam"]


def test_gpu_benchmark_smoke_runs_without_the_readers(tmp_path):
    """The smoke run ends, writes every case to the JSON, and its float32 scan agrees with the
    float64 path on the sampled markers (|delta log10 p| < 1e-4, the product's promise)."""
    code = (
        "import sys, runpy\n"
        f"for name in {ABSENT!r}: sys.modules[name] = None\n"
        f"sys.argv = ['gpu_scan.py', '--smoke', '--out', {str(tmp_path)!r}]\n"
        f"runpy.run_path({str(ROOT / 'bench' / 'gpu_scan.py')!r}, run_name='__main__')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_scan.json").read_text())
    assert {"machine", "headline", "headline_check", "k3", "scaling", "total_s"} <= set(report)
    head = report["headline"]
    assert head["markers"] == report["machine"]["config"]["m"] and head["markers_per_s"] > 0
    assert report["headline_check"]["markers"] == 64 and report["headline_check"]["max_abs_dlog10p"] < 1e-4
    assert report["k3"]["reference"]["converged"] == 1.0 and report["k3"]["x10"]["m"] == 400
    assert report["scaling"]["largest_n_that_fits"] == 384
