"""Inference on fitted models."""

from .wald import wald_test as wald_test

__all__ = ["wald_test"]
