"""Named warnings and exceptions raised at the API edge: the package's one error module."""

from __future__ import annotations


class InputError(ValueError):
    """A bad input file or argument (the message names it)."""


class ConvergenceWarning(UserWarning):
    """A model stopped at ``max_iter`` before the stopping rule was met (``converged=False``)."""


class MissingDataWarning(UserWarning):
    """Observations with a missing phenotype were dropped."""


class RankDeficiencyWarning(UserWarning):
    """Aliased columns of a marker model's design were dropped (as MM4LMM does)."""


class NumericalError(ArithmeticError):
    """A fit met a non-finite value (e.g. a covariance that is not positive definite)."""


class KinshipWarning(UserWarning):
    """A kinship had small negative eigenvalues (set to 0), within the tolerance of the checks."""


class InputWarning(UserWarning):
    """An input is unusual but usable (e.g. genotypes outside [0, 2]); the message says what was done."""


class BoundaryWarning(UserWarning):
    """A variance component is estimated at the boundary (zero): its standard error is not valid there."""


__all__ = [
    "BoundaryWarning",
    "ConvergenceWarning",
    "InputError",
    "InputWarning",
    "KinshipWarning",
    "MissingDataWarning",
    "NumericalError",
    "RankDeficiencyWarning",
]
