"""mm4lmm_jax: variance-component linear mixed models by ReML / ML with the MM algorithm, in JAX.

The Python/JAX successor of the R package MM4LMM (Laporte, Charcosset & Mary-Huard 2022).
Importing the package enables float64 in JAX: every fit runs in double precision.  The model,
inference and data-set modules load on first use (the ``mm4lmm gwas`` command never needs
them).  It also keeps compiled programs in a persistent cache on disk (``~/.cache/mm4lmm_jax``;
:func:`enable_compilation_cache`, :func:`disable_compilation_cache`, ``MM4LMM_JAX_CACHE=off``).
"""

from __future__ import annotations

import importlib
import os as _os
from typing import TYPE_CHECKING

# OpenBLAS's idle worker threads busy-wait (~0.1 s by default) after every call before they
# sleep.  A marker scan on the CPU alternates numpy/OpenBLAS rotations with XLA fits, and the
# spinning threads took the cores from XLA: its fits ran 1.6x longer on 2 cores (measured,
# bench/README.md).  Only the first import of numpy in a process reads this, and a value the
# user set is kept.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import jax as _jax  # noqa: E402

_jax.config.update("jax_enable_x64", True)

from ._cache import disable_compilation_cache, enable_at_import, enable_compilation_cache  # noqa: E402

enable_at_import()  # compiled programs kept between processes (opt out: MM4LMM_JAX_CACHE=off)

from .errors import ConvergenceWarning, InputError, MissingDataWarning, NumericalError, RankDeficiencyWarning  # noqa: I001
from .gwas import gwas  # eager: ``gwas`` names the function, not the subpackage

if TYPE_CHECKING:
    from . import core, datasets
    from ._estimate import mmest
    from ._results import MMEstResult, ModelFit
    from .inference import anova_test, likelihood_ratio_test, mmblup, mmvcov

#: Public names loaded on first access: name -> (module, attribute or None for the module).
_LAZY = {
    "core": (".core", None),
    "datasets": (".datasets", None),
    "anova_test": (".inference", "anova_test"),
    "likelihood_ratio_test": (".inference", "likelihood_ratio_test"),
    "mmblup": (".inference", "mmblup"),
    "mmvcov": (".inference", "mmvcov"),
    "mmest": ("._estimate", "mmest"),
    "MMEstResult": ("._results", "MMEstResult"),
    "ModelFit": ("._results", "ModelFit"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "InputError",
    "MMEstResult",
    "MissingDataWarning",
    "ModelFit",
    "NumericalError",
    "RankDeficiencyWarning",
    "anova_test",
    "core",
    "datasets",
    "disable_compilation_cache",
    "enable_compilation_cache",
    "gwas",
    "likelihood_ratio_test",
    "mmblup",
    "mmest",
    "mmvcov",
]
