"""The persistent compilation cache is on for the Python API by default, in a user cache
directory; the environment variable and the functions turn it off or move it; a cache the
user configured for JAX is kept; a second process loads the programs the first compiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np

import mm4lmm_jax as mj

SHOW = "import json, jax, mm4lmm_jax; print(json.dumps(jax.config.jax_compilation_cache_dir))"


def _run(code: str, **env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MM4LMM_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout


def test_cache_directory_defaults_env_and_user_choice(tmp_path):
    assert json.loads(_run(SHOW, XDG_CACHE_HOME=str(tmp_path))) == str(tmp_path / "mm4lmm_jax" / "xla")
    assert json.loads(_run(SHOW, MM4LMM_JAX_CACHE=str(tmp_path / "c"))) == str(tmp_path / "c")
    for off in ("", "off", "0"):
        assert json.loads(_run(SHOW, MM4LMM_JAX_CACHE=off)) is None
    mine = str(tmp_path / "mine")
    assert json.loads(_run(SHOW, JAX_COMPILATION_CACHE_DIR=mine)) == mine


def test_functions_switch_the_cache(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        assert mj.enable_compilation_cache(tmp_path / "x") == tmp_path / "x"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "x")
        mj.disable_compilation_cache()
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        mj.enable_compilation_cache(before) if before else mj.disable_compilation_cache()


def test_second_process_loads_what_the_first_compiled(tmp_path):
    code = (
        "import json, numpy as np, jax, mm4lmm_jax as mj; "
        "from jax._src import monitoring; hits = []; "
        "hit = '/jax/compilation_cache/cache_hits'; "
        "monitoring.register_event_listener(lambda e, **k: hits.append(e) if e == hit else None); "
        "r = np.random.default_rng(0); x = r.normal(size=(60, 2)); k = np.cov(r.normal(size=(60, 80))); "
        "y = r.normal(size=60); res = mj.mmest(y, cofactor=x, var_list=[k, np.eye(60)], verbose=False); "
        "print(json.dumps([len(hits), float(res[0].sigma2.iloc[0])]))"
    )
    cache = str(tmp_path / "cache")
    first = json.loads(_run(code, MM4LMM_JAX_CACHE=cache))
    assert os.listdir(cache)
    second = json.loads(_run(code, MM4LMM_JAX_CACHE=cache))
    assert first[0] == 0 and second[0] > 0
    assert second[1] == first[1]


def test_run_once_programs_compile_with_cheaper_options_and_equal_results(monkeypatch):
    """The null and refit programs' cheaper XLA code generation is accepted by this XLA and
    gives the default program's numbers (to 1e-13: only fusion order may differ).  (The
    suite's ``XLA_FLAGS`` already lower the whole process's optimisation, so the speed is
    measured in ``bench/``, not here.)"""
    from mm4lmm_jax.gwas import _programs

    monkeypatch.setattr(_programs, "_store", lambda: None)  # the tracing path, no store written
    x = jax.ShapeDtypeStruct((50, 7), jax.numpy.float64)

    def fn(a):
        w = jax.numpy.exp(-jax.numpy.abs(a)) / (1.0 + a**2)
        return (jax.numpy.sum(w * jax.numpy.log1p(a**2), axis=0), jax.numpy.linalg.cholesky(a.T @ a + 1.0))

    cheap = _programs.compiled("t", fn, (x,), "k", run_once=True)
    default = _programs.compiled("t", fn, (x,), "k")
    a = jax.numpy.asarray(np.random.default_rng(0).normal(size=(50, 7)))
    for u, v in zip(cheap(a), default(a)):
        assert jax.numpy.allclose(u, v, rtol=1e-13, atol=0)
