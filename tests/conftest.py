"""Test-run settings.

* Strict numerics for every test: float64 everywhere, no implicit rank promotion.
* XLA's cheaper CPU code generation (``XLA_FLAGS``): compilation dominates the suite's time.
* A compilation cache of this test process only (the CLI keeps compiled programs in
  ``MM4LMM_JAX_CACHE``): a user's cache, or one left half-written by a killed run, never
  reaches the tests, while the tests that run the CLI twice still exercise its reuse.
  The suite runs on two pytest-xdist workers (``addopts``): compilation, which dominates its
  time, is single-threaded.
* Compiled programs are dropped when the process nears the kernel's limit on memory mappings
  (``vm.max_map_count``, 65,530 by default): XLA's CPU backend maps each compiled kernel on its
  own (a jitted fit takes ~1,200 mappings), and past the limit its next compilation aborts the
  whole process ("Fatal Python error: Aborted").  One test process compiles thousands of programs.
"""

import atexit
import os
import shutil
import tempfile

# Tests compile thousands of small programs and run each in milliseconds: XLA's cheaper CPU
# code generation halves the compile time (the same programs, less-optimised machine code).
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]
).strip()

# Each pytest-xdist worker on a core of its own (when there are enough): the workers' XLA thread
# pools would otherwise contend for every core at once.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    if len(_cores) >= int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0) > 1:
        os.sched_setaffinity(0, {_cores[int(_worker[2:]) % len(_cores)]})

import jax  # noqa: E402
import pytest  # noqa: E402

# ``_MM4LMM_TEST_CACHE`` marks a cache this file made: a pytest-xdist worker inherits the
# controller's environment and makes its own (no two processes write one cache at once).
if "MM4LMM_JAX_CACHE" not in os.environ or os.environ.get("_MM4LMM_TEST_CACHE") == os.environ["MM4LMM_JAX_CACHE"]:
    _cache = tempfile.mkdtemp(prefix="mm4lmm_test_cache_")
    os.environ["MM4LMM_JAX_CACHE"] = os.environ["_MM4LMM_TEST_CACHE"] = os.path.join(_cache, "xla")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


def _max_maps() -> int:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0  # not Linux: no such limit to watch


_MAX_MAPS = _max_maps()


@pytest.fixture(autouse=True)
def _keep_clear_of_the_mapping_limit():
    """Before each test, drop JAX's compiled programs once the process holds over half the
    allowed memory mappings (each test compiles at most a few thousand)."""
    if _MAX_MAPS:
        with open("/proc/self/maps") as f:
            if sum(1 for _ in f) > _MAX_MAPS // 2:
                jax.clear_caches()
    yield
