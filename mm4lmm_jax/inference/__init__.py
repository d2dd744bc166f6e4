"""Inference on fitted models: MM4LMM's ``AnovaTest``, ``MMVcov`` and ``MMBlup``,
likelihood-ratio tests and summaries."""

from .anova import AnovaResult, anova_test
from .blup import mmblup
from .lrt import likelihood_ratio_test
from .summary import Summary, summarize
from .vcov import VcovResult, information_array, mmvcov
from .wald import wald_test

__all__ = [
    "AnovaResult",
    "Summary",
    "VcovResult",
    "anova_test",
    "information_array",
    "likelihood_ratio_test",
    "mmblup",
    "mmvcov",
    "summarize",
    "wald_test",
]
