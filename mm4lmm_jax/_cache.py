"""JAX's persistent compilation cache, on by default for the package.

Compiling the fits' XLA programs is most of a first call's time (``mmest``'s first K >= 3
scan: 7.6 s of 8.9 s, bench/README.md).  Importing :mod:`mm4lmm_jax` therefore points JAX's
persistent cache at a user cache directory, so a later process (a notebook restarted, the
next script, the CLI) loads the compiled programs instead of compiling them again.

* Where: ``$MM4LMM_JAX_CACHE`` if set, else ``$XDG_CACHE_HOME/mm4lmm_jax/xla`` (by default
  ``~/.cache/mm4lmm_jax/xla``).
* Opt out: ``MM4LMM_JAX_CACHE=`` (empty) or ``off`` before the import, or
  :func:`disable_compilation_cache` at any time.
* A cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)`` before the import) is kept as it is.

The cache stores every compiled program, keyed by JAX on the program, the JAX version and
the device, so a stale entry is never used: the few dozen small programs of a fit's set-up
load faster than they compile (first K = 3 scan of a fresh process with a filled cache:
2.9 s against 3.7 s when only programs over 0.2 s of compilation were kept; bench/README.md).
It has no size limit: delete the directory to reclaim the space (a few MB per data shape).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

#: JAX options this module sets (and :func:`cache_settings` / :func:`restore_settings` save and put back).
OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)
#: Programs compiled faster than this are not stored (JAX's default is 1 s).
MIN_COMPILE_TIME_S = 0.0
_OFF = {"", "0", "off", "false", "no", "none"}


def default_cache_dir() -> Path | None:
    """The directory :func:`enable_compilation_cache` uses without an argument, or None when
    ``MM4LMM_JAX_CACHE`` turns the cache off."""
    given = os.environ.get("MM4LMM_JAX_CACHE")
    if given is not None:
        return None if given.strip().lower() in _OFF else Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mm4lmm_jax" / "xla"


def _apply(path: str | None) -> None:
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir != path:
        jax.config.update("jax_compilation_cache_dir", path)
        compilation_cache.reset_cache()  # JAX reads the directory once; make it read it again


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled programs on disk between processes.

    Parameters
    ----------
    path : directory of the cache; default :func:`default_cache_dir` (None there: nothing is
        changed and None is returned).

    Returns
    -------
    The cache directory in use, or None when the cache is off.
    """
    where = Path(path).expanduser() if path is not None else default_cache_dir()
    if where is None:
        return None
    _apply(str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return where


def disable_compilation_cache() -> None:
    """Stop reading and writing the persistent cache in this process (compiled programs are
    still kept in memory for the process's lifetime, as JAX always does)."""
    _apply(None)


def cache_settings() -> dict:
    """JAX's current cache options (to put back with :func:`restore_settings`)."""
    return {name: getattr(jax.config, name) for name in OPTIONS}


def restore_settings(settings: dict) -> None:
    """Put back options saved by :func:`cache_settings`."""
    _apply(settings["jax_compilation_cache_dir"])
    for name in OPTIONS[1:]:
        jax.config.update(name, settings[name])


def enable_at_import() -> None:
    """The import-time default: on, unless the user configured JAX's cache or opted out."""
    if jax.config.jax_compilation_cache_dir:
        return
    enable_compilation_cache()
