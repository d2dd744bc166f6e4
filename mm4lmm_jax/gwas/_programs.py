"""Compiled programs of a scan, kept between runs.

With a compilation cache directory configured (``import mm4lmm_jax`` sets one, see
:mod:`mm4lmm_jax._cache`), a program is exported
(:mod:`jax.export`, StableHLO) the first time and loaded from disk afterwards, so a new
process skips tracing the Python code; XLA's compilation cache then skips compiling it.
The file name holds a digest of the package version, the JAX and Python versions, the source
of every module of the package (all of them, so no edit can leave a stale program behind),
the shapes and the options: any change traces afresh.  (Keying by the lowered program text
instead would need the tracing that the store exists to skip; XLA's own compilation cache
is keyed by it.)  Without a cache directory, or on any failure to export or load, the
program is traced as usual.

Programs run once or on few markers (the null fits, the float64 refit program) are compiled
with XLA's cheaper CPU code generation (``run_once=True``, :data:`COMPILER_OPTIONS`): their
compilation, not their run, is what a first run pays.  The block program, run on every
block, keeps XLA's full optimisation.  The options apply to these programs only, never to a
user's JAX code.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jax


def _package_version() -> str:
    try:
        return version("mm4lmm_jax")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "source"


def source_digest(root: Path) -> str:
    """Digest of the package version, JAX and Python versions and every module under ``root``."""
    h = hashlib.sha256(f"{_package_version()} {jax.__version__} {sys.version}".encode())
    for file in sorted(root.rglob("*.py")):
        h.update(str(file.relative_to(root)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()[:16]


@cache
def code_digest() -> str:
    """:func:`source_digest` of this installed package (computed once per process)."""
    return source_digest(Path(__file__).resolve().parents[1])


#: XLA options of the scan's programs (see the module docstring); on other backends none.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _options() -> dict | None:
    return COMPILER_OPTIONS if jax.default_backend() == "cpu" else None


def _store() -> Path | None:
    path = jax.config.jax_compilation_cache_dir
    return Path(path) / "exported" if path else None


def compiled(name: str, flat_fn: Callable, specs: tuple, key: str, *, run_once: bool = False):
    """``flat_fn`` (arrays in, a tuple of arrays out) compiled for ``specs``: loaded from the
    export store when possible, else traced (and stored); ``run_once``: with
    :data:`COMPILER_OPTIONS` (see the module docstring)."""
    options = _options() if run_once else None
    store = _store()
    if store is not None:
        try:
            file = store / f"{name}-{hashlib.sha256((key + code_digest()).encode()).hexdigest()[:24]}.bin"
            if file.exists():
                exp = jax.export.deserialize(bytearray(file.read_bytes()))
            else:
                exp = jax.export.export(jax.jit(flat_fn))(*specs)
                store.mkdir(parents=True, exist_ok=True)
                tmp = file.with_suffix(".tmp")
                tmp.write_bytes(exp.serialize())
                tmp.replace(file)
            return jax.jit(exp.call).lower(*specs).compile(options)
        except Exception:  # noqa: BLE001 - any failure falls back to tracing
            pass
    return jax.jit(flat_fn).lower(*specs).compile(options)


__all__ = [
    "COMPILER_OPTIONS",
    "code_digest",
    "compiled",
    "source_digest",
]
