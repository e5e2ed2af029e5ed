"""Small pieces the Krylov solvers share."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from .. import _backend
from .._error_estimate import combine_sigma, record_update
from ._base import AbstractSolver


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
    return max(1e-10, 100.0 * _backend.machine_eps(a.xp, a.out_space.dtype))


def quotient(xp, numerator, denominator):
    """``numerator / denominator`` on the device, 0 where the denominator is not positive
    (zero, negative or NaN): a recurrence step of length 0 rather than a division by zero.

    A step that has nothing to divide by then leaves its iterate unchanged; the loop
    learns why from the flags the step reports.
    """
    if isinstance(denominator, (int, float)):  # a value already on the host
        return numerator / denominator if denominator > 0 else 0.0 * numerator
    positive = denominator > 0
    return _backend.where(xp, positive, numerator / _backend.where(xp, positive, denominator, 1.0), 0.0)


def krylov_error_bound(a, residual_norm):
    """``||A^{-1}|| * ||r||`` where ``A = I - M`` with a declared ``||M|| <= q < 1``."""
    inverse = getattr(a, "inverse_norm_bound", None)
    if inverse is None or residual_norm is None:
        return None
    return inverse * residual_norm


def nonzero(xp, value):
    """``value`` with an exact zero replaced by one: a divisor that gives a step of length
    zero where the numerator is zero too (a finished recurrence), in one device operation.
    NaN stays NaN, so a non-finite product still shows."""
    if isinstance(value, (int, float)):
        return value if value != 0 else 1.0
    if _backend.is_torch(value):
        return value + (value == 0)  # torch promotes the boolean: two small operations
    return xp.where(value == 0, 1.0, value)


def segment_estimates(trace, sigma_of) -> tuple[float, bool, tuple]:
    """``(sigma_min, settled, updates)`` of a CG-type run (CGNE, LSQR) from its trace.

    Each record starts with the two coefficient sequences of the run's small matrix
    (``sigma_of(first, second)`` gives its ``sigma_min``) and the norm of the step's update;
    every restart begins a new matrix, and the smallest ``sigma_min`` of them counts.
    """
    sigma, settled, updates = math.inf, False, (None, None)
    for segment in trace.segments():
        first, second = [r[0] for r in segment], [r[1] for r in segment]
        pair = [sigma_of(first[:-1], second[:-1]), sigma_of(first, second)] if first else []
        sigma, settled = combine_sigma(pair, sigma, settled)
        for record in segment:
            updates = record_update(updates, record[2])
    return sigma, settled, updates


@dataclasses.dataclass(frozen=True, kw_only=True)
class NormalEquationsSolver(AbstractSolver):
    """What CGNE and LSQR share: products with ``A`` and ``A^T``, any shape of ``A``, the
    least-squares test's ``lsq_rtol``, and a start (or a restart after a failed
    verification) from a residual ``r``: ``_begin(a, x, r, lsq_rtol)``."""

    lsq_rtol: float | None = None

    needs_rmv: ClassVar[bool] = True
    needs_square: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        check_lsq_rtol(self.lsq_rtol)

    def init(self, a, b, x0, tol, *, deferred=False):
        x, r = start(a, b, x0)
        return self._begin(a, x, r, self.lsq_rtol if self.lsq_rtol is not None else default_lsq_rtol(a))

    def restart(self, a, b, state, x, r):
        # The recurrence drifted from b - A x: start again from the true residual (the
        # loop marks the restart in the trace, where the coefficients begin a new chain).
        return self._begin(a, x, r, state.lsq_rtol)

    def _begin(self, a, x, r, lsq):  # pragma: no cover - abstract
        raise NotImplementedError
