"""The pure, functional JAX core: no pandas, no I/O; every function works under ``jit``,
``vmap`` and (for the closed-form likelihoods) ``grad``.

* Likelihoods: :func:`loglik_dense`, :func:`loglik_rotated`, :func:`to_mm4lmm_convention`.
* One MM update: :func:`step_dense`, :func:`step_profiled_reml`, :func:`step_rotated_ml`,
  :func:`step_henderson`.
* One iteration protocol (:mod:`._iterate`): solvers with ``init / step / terminate / finish``
  run by :func:`iterate` to a :class:`Solution` ``(value, status, n_steps)``; :class:`Status`
  (one enumeration for every fit and scan); :class:`Stopping` (MM4LMM's rule, static);
  :class:`Squarem` (MM with squared extrapolation, anchored or not), :class:`DampedNewton`.
* Covariance structures (:mod:`._structures`): :class:`Single`, :class:`TwoComponent`,
  :class:`Henderson`, :class:`Dense` -- pytrees built by ``prepare`` offering ``fit``,
  ``quad``, ``v_inv_times`` and the Newton family; :func:`choose` picks one as MM4LMM does.
* Batches (:mod:`._batch`): :func:`fit_models` (padded, jitted chunks), :func:`map_models`
  (inference functions over models' designs).
* A differentiable fit (:mod:`._implicit`): :func:`fit` -> :class:`FitResult`; :func:`wald`,
  :func:`blups`, :func:`model_quad` (the data-level quad), :func:`lowrank_quad`.
* Whole fits of one model (vmap them over markers): :func:`fit_rotated`, :func:`fit_dense`,
  :func:`fit_henderson`, :func:`fit_single`.
* Shared set-up: :func:`joint_diagonalise`; :func:`henderson_system` (the plain MME, reference algebra).
* Henderson's equations with the first random block eliminated (the K >= 3 scan step):
  :mod:`._reduced` (``reduced_shared``, ``reduced_system``, ``step_reduced``).
* Quadratic forms ``sigma2 -> (A'V^-1A, log|V|)`` (:mod:`._quad`, the algebra behind
  ``Structure.quad``): :func:`rotated_quad`, :func:`henderson_quad`, :func:`dense_quad`.
* Information matrices by autodiff of those: :func:`expected_information`,
  :func:`average_information`, :func:`observed_information`, :func:`loglik_from_quad`.
* Kenward-Roger: :func:`kr_ingredients` (derivatives by ``jacfwd``), :func:`kr_test`.
* The two-component GWAS kernel (grid, interpolation, Newton on ``log delta``):
  :func:`scan_markers`, :func:`null_fit`, :class:`ScanData`.
* Exact ``K >= 3`` optima by Newton (:mod:`._newton_scan`: ``Family``, ``exact_derivatives``,
  ``newton_exact``, ``newton_surrogate``) on the expansion of quadratic forms and
  log-determinant around a centre (:mod:`._expansion`: Neumann words, ``form_coefficients``,
  ``logdet_series``).

Glossary (one word per idea; see ``ARCHITECTURE.md``):

* ``sigma2`` -- variance components (K,), the error (residual) last.
* ``delta`` -- the two-component ratio ``s1 / s2``; ``t = log delta`` in the GWAS kernel.
* ``psi`` -- parameter of a Newton family ``A(psi)`` (ratios to the last component in dense
  form, their inverses in Henderson form); ``t = log psi``; ``u`` scaled offsets from ``psi0``.
* ``structure`` -- a prepared covariance (:mod:`._structures`); ``solver`` -- an iteration scheme
  (:mod:`._iterate`); ``method`` -- ``"reml"`` / ``"ml"``; ``stopping``, ``status``, ``n_steps``.
* ``x`` a design (n, p); ``base`` shared columns, ``extra`` per-model columns; ``chunk`` models per
  compiled batch.

Example (gradient of the ReML log-likelihood in the variance components)::

    import jax, jax.numpy as jnp
    from mm4lmm_jax.core import loglik_dense
    g = jax.grad(loglik_dense)(jnp.array([0.5, 1.0]), y, X, jnp.stack([K, jnp.eye(n)]), "reml")

Derivatives of a whole fit: :func:`fit` (:mod:`._implicit`) runs MM forward and differentiates
the optimum by the implicit function theorem; ``jax.grad`` through the MM loop itself fails
(``while_loop`` has no reverse mode).
"""

from ._batch import fit_chunk, fit_models, map_models
from ._fit import FitOutput, fit_dense, fit_henderson, fit_rotated, fit_single
from ._implicit import FitResult, Wald, blups, fit, lowrank_quad, model_quad, wald
from ._information import average_information, expected_information, loglik_from_quad, observed_information
from ._iterate import DampedNewton, Solution, Squarem, Status, Stopping, iterate, squarem, squarem_anchored
from ._kenward_roger import KRIngredients, KRTest, kr_ingredients, kr_test
from ._likelihood import loglik_dense, loglik_rotated, to_mm4lmm_convention
from ._mm import (
    HendersonSystem,
    profiled_reml_loglik,
    step_dense,
    step_henderson,
    step_profiled_reml,
    step_rotated_ml,
)
from ._profile_scan import DELTA_BOUNDS, ScanData, ScanOutput, null_fit, scan_markers
from ._quad import dense_quad, henderson_quad, rotated_quad
from ._structures import STRUCTURES, Dense, Henderson, Single, Structure, TwoComponent, choose
from ._transforms import Rotation, henderson_system, joint_diagonalise

__all__ = [
    "FitResult",
    "Wald",
    "blups",
    "fit",
    "lowrank_quad",
    "model_quad",
    "wald",
    "DELTA_BOUNDS",
    "ScanData",
    "ScanOutput",
    "null_fit",
    "scan_markers",
    "FitOutput",
    "KRIngredients",
    "KRTest",
    "average_information",
    "dense_quad",
    "expected_information",
    "henderson_quad",
    "kr_ingredients",
    "kr_test",
    "loglik_from_quad",
    "observed_information",
    "rotated_quad",
    "HendersonSystem",
    "Rotation",
    "DampedNewton",
    "Dense",
    "Henderson",
    "STRUCTURES",
    "Single",
    "Solution",
    "Squarem",
    "Status",
    "Stopping",
    "Structure",
    "TwoComponent",
    "choose",
    "fit_chunk",
    "fit_models",
    "iterate",
    "map_models",
    "squarem",
    "squarem_anchored",
    "fit_dense",
    "fit_henderson",
    "fit_rotated",
    "fit_single",
    "henderson_system",
    "joint_diagonalise",
    "loglik_dense",
    "loglik_rotated",
    "profiled_reml_loglik",
    "step_dense",
    "step_henderson",
    "step_profiled_reml",
    "step_rotated_ml",
    "to_mm4lmm_convention",
]
