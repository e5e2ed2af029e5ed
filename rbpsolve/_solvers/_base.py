"""What every linear solver shares: its settings checks and the ``init``/``step`` protocol."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

__all__ = ["AbstractSolver", "StepReport"]


class StepReport(NamedTuple):
    """What one step tells the loop (host scalars: the step's one synchronisation).

    residual : float
        The norm the stopping test reads (see each solver's Notes for which residual).
    breakdown : bool
        A zero denominator: the recurrence cannot continue.
    least_squares : bool
        The normal-equation residual vanished while the residual did not: an
        inconsistent system whose least-squares solution has been reached.
    scale : float or None
        The scale of ``rtol`` for this step's test, ``max(rtol * scale, atol)``; None
        (every linear solver) means ``norm(b)``. The forward fixed-point solvers pass
        ``norm(F(h_k))``.
    done : bool
        The solver has finished its budget early (the random length drawn by
        RandomizedNeumann); the loop stops with ``Status.BUDGET_SPENT``.
    """

    residual: float
    breakdown: bool = False
    least_squares: bool = False
    scale: float | None = None
    done: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractSolver:
    """Settings shared by every solver of ``A x = b``.

    Parameters
    ----------
    max_steps : int
        The most iterations; each costs at least one operator product.
    rtol, atol : float
        Stop when ``norm(b - A x) <= max(rtol * norm(b), atol)``, the same test in every
        solver (which residual each one can see is in its Notes). ``rtol = atol = 0``
        asks for exactly ``max_steps`` steps: a fixed budget, reported as
        ``Status.BUDGET_SPENT``; only an exactly zero residual ends it sooner (as
        ``CONVERGED``: every further step would change nothing). ``b = 0`` returns
        ``x = 0`` at once, without a step.
    """

    max_steps: int = 1000
    rtol: float = 1e-5
    atol: float = 0.0

    # Which products of A the solver needs, whether A must be square, whether the
    # residual it reports belongs to the previous iterate, and whether it can diverge.
    needs_mv: ClassVar[bool] = True
    needs_rmv: ClassVar[bool] = False
    needs_square: ClassVar[bool] = True
    residual_lags: ClassVar[bool] = False
    can_diverge: ClassVar[bool] = False

    def __post_init__(self):
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int):
            raise TypeError(f"max_steps must be an int; got {self.max_steps!r}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1; got {self.max_steps}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a float; got {value!r}")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0; got {value}")
        factor = getattr(self, "divergence_factor", None)
        # math.inf is allowed: it switches the check off (a plain truncated series).
        if factor is not None and not factor > 1:
            raise ValueError(f"divergence_factor must be a number > 1 (math.inf: never report divergence); got {factor}")

    @property
    def fixed_budget(self) -> bool:
        return self.rtol == 0 and self.atol == 0

    # The protocol: states are immutable; `_loop.iterate` owns the loop.
    def init(self, a, b, x0, tol: float) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, a, b, state) -> tuple[Any, StepReport]:  # pragma: no cover - abstract
        raise NotImplementedError

    def solution(self, a, b, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, a, b, state) -> dict:
        """``residual_norm``, ``error_bound`` and ``info`` for the iterate of ``state``."""
        return {}
