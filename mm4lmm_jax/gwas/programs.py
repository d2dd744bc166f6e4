"""Compiled programs of a scan, kept between runs.

With a compilation cache directory configured (the CLI sets one), a program is exported
(:mod:`jax.export`, StableHLO) the first time and loaded from disk afterwards, so a new
process skips tracing the Python code; XLA's compilation cache then skips compiling it.
The file name holds a digest of the package's scan code, the JAX version, the shapes and
the options: any change traces afresh.  Without a cache directory, or on any failure to
export or load, the program is traced as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import jax

_SOURCES = ("core/profile_scan.py", "gwas/block.py", "gwas/programs.py")


def _code_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(jax.__version__.encode())
    for rel in _SOURCES:
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:16]


def _store() -> Path | None:
    path = jax.config.jax_compilation_cache_dir
    return Path(path) / "exported" if path else None


def compiled(name: str, flat_fn: Callable, specs: tuple, key: str):
    """``flat_fn`` (arrays in, a tuple of arrays out) compiled for ``specs``: loaded from the
    export store when possible, else traced (and stored)."""
    store = _store()
    if store is not None:
        try:
            file = store / f"{name}-{hashlib.sha256((key + _code_digest()).encode()).hexdigest()[:24]}.bin"
            if file.exists():
                exp = jax.export.deserialize(bytearray(file.read_bytes()))
            else:
                exp = jax.export.export(jax.jit(flat_fn))(*specs)
                store.mkdir(parents=True, exist_ok=True)
                tmp = file.with_suffix(".tmp")
                tmp.write_bytes(exp.serialize())
                tmp.replace(file)
            return jax.jit(exp.call).lower(*specs).compile()
        except Exception:  # noqa: BLE001 - any failure falls back to tracing
            pass
    return jax.jit(flat_fn).lower(*specs).compile()
