"""Strict numerics for every test: float64 everywhere, no implicit rank promotion; and a
compilation cache of this test run only (the CLI keeps compiled programs in
``MM4LMM_JAX_CACHE``): a user's cache, or one left half-written by a killed run, never
reaches the tests, while the tests that run the CLI twice still exercise its reuse."""

import atexit
import os
import shutil
import tempfile

import jax

if "MM4LMM_JAX_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="mm4lmm_test_cache_")
    os.environ["MM4LMM_JAX_CACHE"] = os.path.join(_cache, "xla")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
