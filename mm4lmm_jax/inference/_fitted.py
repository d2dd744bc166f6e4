"""What inference needs of a fit, as protocols: the inference functions accept any object of
this shape (the results layer's :class:`~mm4lmm_jax.MMEstResult` and
:class:`~mm4lmm_jax.ModelFit`) without importing the results layer, which sits above them."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class FittedModels(Protocol):
    """All models of one ``mmest`` call: stacked estimates and the ``problem`` (response,
    components, designs and prepared covariance ``structure``) they were computed from."""

    names: list
    component_names: list
    coef_names: list
    sigma2_array: Any
    beta_array: Any
    var_beta_array: Any
    loglik_array: Any
    converged_array: Any
    method: str
    n_obs: int
    attrs: list
    factors: list
    problem: Any


@runtime_checkable
class FittedModel(Protocol):
    """One model of a fit (labelled estimates; ``source`` and ``position`` lead back to the
    :class:`FittedModels` it belongs to)."""

    name: str
    beta: Any
    sigma2: Any
    var_beta: Any
    loglik: float
    method: str
    n_obs: int
    source: Any
    position: int


__all__ = ["FittedModel", "FittedModels"]
