"""Inference on fitted models: MM4LMM's ``AnovaTest``, ``MMVcov`` and ``MMBlup``,
likelihood-ratio tests and summaries."""

from ._anova import AnovaResult, anova_test
from ._blup import mmblup
from ._lrt import likelihood_ratio_test
from ._summary import Summary, summarize
from ._vcov import VcovResult, information_array, mmvcov
from ._wald import wald_test

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
