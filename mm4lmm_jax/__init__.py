"""mm4lmm_jax: variance-component linear mixed models by ReML / ML with the MM algorithm, in JAX.

The Python/JAX successor of the R package MM4LMM (Laporte, Charcosset & Mary-Huard 2022).
Importing the package enables float64 in JAX: every fit runs in double precision.
"""

from __future__ import annotations

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import core, datasets  # noqa: I001
from .errors import ConvergenceWarning, MissingDataWarning, NumericalError, RankDeficiencyWarning
from .inference import anova_test, likelihood_ratio_test, mmblup, mmvcov
from .model.estimate import mmest
from .model.results import MMEstResult, ModelFit
from .gwas import InputError, gwas

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
    "gwas",
    "likelihood_ratio_test",
    "mmblup",
    "mmest",
    "mmvcov",
]
