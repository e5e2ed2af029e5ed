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
    verified : bool
        ``residual`` is ``norm(b - A x)`` recomputed for the current solution (GMRES at
        the end of a cycle), so the loop need not verify it again.
    floor : float or None
        With ``verified``: the rounding level ``eps * (norm(b) + norm(A x))`` of that
        recomputation, below which no residual can be certified.
    """

    residual: float
    breakdown: bool = False
    least_squares: bool = False
    scale: float | None = None
    done: bool = False
    verified: bool = False
    floor: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractSolver:
    """Settings shared by every solver of ``A x = b``.

    Parameters
    ----------
    max_steps : int
        The most iterations; each costs at least one operator product.
    rtol, atol : float
        Stop when ``norm(b - A x) <= max(rtol * norm(b), atol)``, the same test in every
        solver (which residual each one can see is in its Notes). ``rtol=None`` (the
        default) follows the dtype: ``1e-5``, or ``16 eps`` of float16/bfloat16 products
        (1.6e-2 and 0.125), which cannot certify less. ``rtol = atol = 0``
        asks for exactly ``max_steps`` steps: a fixed budget, reported as
        ``Status.BUDGET_SPENT``; only an exactly zero residual ends it sooner (as
        ``CONVERGED``: every further step would change nothing). ``b = 0`` returns
        ``x = 0`` at once, without a step.
    verify : bool or None
        Whether the loop recomputes the true residual ``norm(b - A x)`` of the returned
        ``x`` (one more product, counted in ``num_vjp``/``num_jvp``). None (default):
        before every ``CONVERGED`` claim, which is then decided on that figure (a
        recurrence can drift below the true residual in floating point), but not at the
        end of a fixed budget, which keeps its exact product count. True: at every end
        (fixed budgets and failures too). False: never; ``Result.residual_kind`` then
        says the residual is the solver's own figure.
    """

    max_steps: int = 1000
    rtol: float | None = None
    atol: float = 0.0
    verify: bool | None = None

    # Which products of A the solver needs, whether A must be square, whether the
    # residual it reports belongs to the previous iterate, and whether it can diverge.
    needs_mv: ClassVar[bool] = True
    needs_rmv: ClassVar[bool] = False
    needs_square: ClassVar[bool] = True
    residual_lags: ClassVar[bool] = False
    can_diverge: ClassVar[bool] = False
    # What the reported residual is (see Result.residual_kind), and whether the solver
    # sums a series whose fixed budget the loop judges (FixedPoint, Neumann).
    residual_kind: ClassVar[str] = "recurrence"
    series: ClassVar[bool] = False

    def __post_init__(self):
        check_settings(self)
        if self.verify is not None and not isinstance(self.verify, bool):
            raise TypeError(f"verify must be None, True or False; got {self.verify!r}")

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
        """``residual_norm``, ``error_bound`` and ``info`` for the iterate of ``state``, and
        what the loop forms ``Result.error_estimate`` from: ``sigma_min`` (Krylov solvers), or
        ``series_terms = (t_K, t_{K-1})`` and an ``estimate_offset`` (series solvers)."""
        return {}

    def restart(self, a, b, state, x, r):
        """The state to go on from after a verification found ``r = b - A x`` above the
        tolerance the recurrence claimed. The series solvers simply go on; CGNE and LSQR
        restart their recurrences from the true residual."""
        return state

    def start_residual(self, state) -> float | None:
        """``norm(b - A x0)`` where ``init`` computed it and ``history[0]`` is not it."""
        return None


def check_settings(solver) -> None:
    """Validate the settings every solver family shares, naming the one at fault.

    Shared by the linear and the forward solvers: ``max_steps``, ``rtol``, ``atol`` and,
    where the solver has it, ``divergence_factor``.
    """
    if isinstance(solver.max_steps, bool) or not isinstance(solver.max_steps, int):
        raise TypeError(f"max_steps must be an int; got {solver.max_steps!r}")
    if solver.max_steps < 1:
        raise ValueError(f"max_steps must be at least 1; got {solver.max_steps}")
    for name in ("rtol", "atol"):
        value = getattr(solver, name)
        if name == "rtol" and value is None:
            continue  # the dtype's default, decided at solve time
        check_real(value, name, minimum=0.0)
    if hasattr(solver, "divergence_factor"):
        factor = solver.divergence_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise TypeError(f"divergence_factor must be a number > 1 (math.inf: never report divergence); got {factor!r}")
        # math.inf is allowed: it switches the check off (a plain truncated series).
        if not factor > 1:
            raise ValueError(f"divergence_factor must be a number > 1 (math.inf: never report divergence); got {factor}")


def check_real(value, name: str, *, minimum: float = 0.0, maximum: float = math.inf, open_min: bool = False) -> None:
    """Raise unless ``value`` is a finite real number in the range (named ``name``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float; got {value!r}")
    low_ok = value > minimum if open_min else value >= minimum
    if not (math.isfinite(value) and low_ok and value <= maximum):
        low = f"> {minimum:g}" if open_min else f">= {minimum:g}"
        high = "" if maximum == math.inf else f" and <= {maximum:g}"
        raise ValueError(f"{name} must be a finite number {low}{high}; got {value}")
