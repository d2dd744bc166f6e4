"""Inputs that arrive in single precision: a warning where float32 has rounded a column
coarsely for its spread (a date coded as ``yyyymmdd``, a trait with a large offset), since
every result then reflects that rounding and nothing downstream can undo it."""

from __future__ import annotations

import warnings

import numpy as np

from .errors import InputWarning

#: Warn when float32's rounding step at a column's largest magnitude exceeds this share of its
#: standard deviation (measured: a float32 ``yyyymmdd`` date, step 2 for a spread of ~5,000,
#: moved G x E p-values by 2.4e-3 in log10; a float32 age or dosage sits near 1e-7).
FLOAT32_ROUNDING_TOL = 1e-5


def check_float32_rounding(values, name: str, what: str, stacklevel: int = 3) -> None:
    """Warn (:class:`InputWarning`) if ``values`` are float32 and rounded coarsely for their spread.

    ``name`` names the column and ``what`` its role (``"covariate"``, ``"phenotype"``...).
    Arrays of other types and columns without spread pass silently.
    """
    a = np.asarray(values)
    if a.dtype != np.float32:
        return
    finite = a[np.isfinite(a)]
    if finite.size < 2:
        return
    spread = float(np.std(finite.astype(np.float64)))
    top = float(np.max(np.abs(finite)))
    step = float(np.spacing(np.float32(top)))
    if spread > 0 and step > FLOAT32_ROUNDING_TOL * spread:
        warnings.warn(
            f"{what} {name!r} is float32: at its magnitude (up to {top:.6g}) float32 keeps steps of {step:.3g}, "
            f"{step / spread:.1e} of its standard deviation ({spread:.4g}), and every result reflects that rounding; "
            "pass it as float64 (or centre it before converting to float32)",
            InputWarning,
            stacklevel=stacklevel,
        )


__all__ = ["FLOAT32_ROUNDING_TOL", "check_float32_rounding"]
