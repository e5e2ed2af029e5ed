"""Small pieces the Krylov solvers share."""

from __future__ import annotations

import math

import numpy as np

from .. import _backend


def start(a, b, x0):
    """``(x, r)``: the start and its residual ``b - A x`` (no product from zero)."""
    if x0 is None:
        return a.xp.zeros(a.in_shape, dtype=b.dtype, device=a.device), b
    return x0, b - a.mv(x0)


def check_lsq_rtol(value) -> None:
    """``lsq_rtol`` is None (the default) or a finite number in [0, 1)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"lsq_rtol must be None or a float; got {value!r}")
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ValueError(f"lsq_rtol must be None or a finite number in [0, 1) (default max(1e-10, 100 eps)); got {value}")


def default_lsq_rtol(a) -> float:
    eps = float(np.finfo(_backend.to_numpy(a.out_space.zeros()).dtype).eps)
    return max(1e-10, 100.0 * eps)


def krylov_error_bound(a, residual_norm):
    """``||A^{-1}|| * ||r||`` where ``A = I - M`` with a declared ``||M|| <= q < 1``."""
    inverse = getattr(a, "inverse_norm_bound", None)
    if inverse is None or residual_norm is None:
        return None
    return inverse * residual_norm
