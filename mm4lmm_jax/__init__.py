"""mm4lmm_jax: variance-component linear mixed models by ReML / ML with the MM algorithm, in JAX.

The Python/JAX successor of the R package MM4LMM (Laporte, Charcosset & Mary-Huard 2022).
Importing the package enables float64 in JAX: every fit runs in double precision.
"""

from __future__ import annotations

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import core as core  # noqa: E402
from . import datasets as datasets  # noqa: E402
from .errors import (  # noqa: E402
    ConvergenceWarning as ConvergenceWarning,
    MissingDataWarning as MissingDataWarning,
    NumericalError as NumericalError,
    RankDeficiencyWarning as RankDeficiencyWarning,
)
from .model.estimate import mmest as mmest  # noqa: E402
from .model.results import MMEstResult as MMEstResult, ModelFit as ModelFit  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "MMEstResult",
    "MissingDataWarning",
    "ModelFit",
    "NumericalError",
    "RankDeficiencyWarning",
    "core",
    "datasets",
    "mmest",
]
