"""The one iteration protocol every solver follows, linear or forward.

A solver says how to start (``init``), how to take one step (``step``), which iterate a
state holds (``solution``) and what it can tell about the iterate it returns (``finish``);
:func:`rbpsolve._loop.iterate` owns the loop, the stopping decisions and the host
transfers. The split mirrors optimistix's ``init``/``step``/``terminate`` and keeps every
decision in one place.

Host transfers
--------------
A step computes on the device only: the scalars it reports (:class:`StepReport`) may be
0-d arrays. The loop moves them to Python in **one** transfer a step when it must decide
after each step (a tolerance, a callback), and in one transfer **after** the last step of a
fixed budget (``rtol = atol = 0``), which needs no decision before its end. The host
values come back to the solver in a :class:`Trace` at :meth:`~AbstractIterativeSolver.finish`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

__all__ = ["AbstractIterativeSolver", "StepReport", "SampleValues", "Trace", "Finish", "check_settings", "check_real"]


class SampleValues(tuple):
    """Host values, one a sample of a batched solve (``batch_axis``).

    A state field that differs between samples but lives on the host (RandomizedNeumann's
    drawn depths), or a step's :attr:`StepReport.done`. The batched loop hands sample
    ``i`` its own entry (:func:`rbpsolve._batched.sample_state`,
    :func:`rbpsolve._batched.split_reports`); a plain tuple in a state is a nested state.
    """

    __slots__ = ()


class StepReport(NamedTuple):
    """What one step tells the loop. Array fields are 0-d arrays on the state's device
    (or Python values); the loop moves them to the host together.

    residual : 0-d array, float or None
        The norm the stopping test reads (see each solver's Notes for which residual).
        None: known only after the solve (GMRES on a fixed budget: :meth:`settle`).
    breakdown : 0-d bool array or bool
        A zero denominator: the recurrence cannot continue. The loop then keeps the state
        the step started from.
    least_squares : 0-d bool array or bool
        The normal-equation residual vanished while the residual did not: an
        inconsistent system whose least-squares solution has been reached.
    scale : 0-d array, float or None
        The scale of ``rtol`` for this step's test, ``max(rtol * scale, atol)``; None
        (every linear solver) means ``norm(b)``. The forward solvers pass ``norm(F(h_k))``.
    done : bool or SampleValues
        The solver has finished its budget early (the random length drawn by
        RandomizedNeumann); the loop stops with ``Status.BUDGET_SPENT``. A host value; in
        a batched solve, one bool a sample (:class:`SampleValues`): a sample that is done
        stops (frozen) while the others go on.
    verified : bool
        ``residual`` is ``norm(b - A x)`` recomputed for the current solution (GMRES at
        the end of a cycle), so the loop need not verify it again. A host value.
    floor : float or None
        With ``verified``: the rounding level ``eps * (norm(b) + norm(A x))`` of that
        recomputation, below which no residual can be certified.
    records : tuple
        0-d (or 1-d) arrays the solver wants on the host after the solve, for its own
        bookkeeping (Krylov coefficients, update norms): they come back, one tuple of
        floats a step, in :attr:`Trace.records`.
    """

    residual: Any
    breakdown: Any = False
    least_squares: Any = False
    scale: Any = None
    done: Any = False
    verified: bool = False
    floor: float | None = None
    records: tuple = ()


@dataclasses.dataclass(frozen=True)
class Trace:
    """What the loop saw of the steps up to the returned state, on the host.

    residuals : list of float
        The residual each of those steps reported (``Result.history`` up to them).
    records : list of tuple of float
        Each step's :attr:`StepReport.records`, moved to the host.
    restarts : tuple of int
        The steps after which the loop restarted the solver from a verified residual
        (:meth:`~rbpsolve.AbstractSolver.restart`): records before and after belong to
        different recurrences.
    """

    residuals: list
    records: list
    restarts: tuple = ()

    def segments(self) -> list:
        """The records split at the restarts, oldest first (one list per recurrence)."""
        bounds = [0, *[k for k in self.restarts if 0 < k < len(self.records)], len(self.records)]
        return [self.records[i:j] for i, j in zip(bounds, bounds[1:])]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Finish:
    """What a solver tells the loop about the iterate it returns.

    residual_norm : float or None
        The solver's residual figure of that iterate (None: the loop's own).
    residual_kind : str or None
        What ``residual_norm`` is (``Result.residual_kind``); None: the solver's default.
    error_bound : float or None
        A rigorous bound on the error, where the solver has one.
    info : dict
        Solver-specific figures for ``Result.info``.
    sigma_min, sigma_settled, updates : Krylov solvers
        ``sigma_min`` of the solver's small matrix (``>= sigma_min(A)``), whether it had
        stopped falling, and the :func:`~rbpsolve._error_estimate.record_update` summary
        of the update norms: what the error estimate is formed from.
    series_terms, estimate_offset : series solvers
        The last two terms ``(t_K, t_{K-1})`` and a known part of the error.
    b_norm : float or None
        The scale of the last test where it is not ``norm(b)`` (forward solvers).
    """

    residual_norm: float | None = None
    residual_kind: str | None = None
    error_bound: float | None = None
    info: dict = dataclasses.field(default_factory=dict)
    sigma_min: float | None = None
    sigma_settled: bool = False
    updates: tuple = (None, None)
    series_terms: tuple | None = None
    estimate_offset: float = 0.0
    b_norm: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractIterativeSolver:
    """Settings and protocol shared by every solver, of ``A x = b`` or of ``h = F(h)``.

    Parameters
    ----------
    max_steps : int
        The most iterations; each costs at least one operator product (or evaluation).
    rtol, atol : float
        Stop when the solver's residual is at most ``max(rtol * scale, atol)``.
        ``rtol=None`` follows the dtype (see :class:`~rbpsolve.AbstractSolver`);
        ``rtol = atol = 0`` asks for exactly ``max_steps`` steps, a fixed budget.
    """

    max_steps: int = 1000
    rtol: float | None = None
    atol: float = 0.0

    # Whether the residual a step reports belongs to the iterate the step started from,
    # and whether the iteration can diverge (the loop then watches divergence_factor).
    residual_lags: ClassVar[bool] = False
    can_diverge: ClassVar[bool] = False
    # Whether the solver sums a series whose fixed budget the loop judges.
    series: ClassVar[bool] = False

    def __post_init__(self):
        check_settings(self)

    @property
    def fixed_budget(self) -> bool:
        return self.rtol == 0 and self.atol == 0

    # The protocol: states are immutable; `_loop.iterate` owns the loop.
    def init(self, a, b, x0, tol: float, *, deferred: bool = False) -> Any:  # pragma: no cover - abstract
        """The state before the first step. ``deferred``: the loop reads no step's report
        before the end (a fixed budget without a callback), so a step must not need one."""
        raise NotImplementedError

    def step(self, a, b, state) -> tuple[Any, StepReport]:  # pragma: no cover - abstract
        raise NotImplementedError

    def solution(self, a, b, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def judge(self, report: StepReport, memo) -> tuple[StepReport, Any]:
        """A step's report on the host, completed from its records: the scalar logic of a
        recurrence (rotations, running estimates, the stopping flags) runs here, in
        Python floats, rather than as many tiny device operations. ``memo`` is the
        solver's own running host state (None before the first step), handed from step to
        step by the loop in both kinds of run. The default changes nothing."""
        return report, memo

    def settle(self, a, b, state, reports: list) -> tuple[Any, list]:
        """After a deferred run: the state and the steps' reports, read to the host.
        Solvers whose residuals come out of host work (GMRES's rotations) fill them in
        here; the others return them as they are."""
        return state, reports

    def finish(self, a, b, state, trace: Trace) -> Finish:
        return Finish()

    def start_residual(self, state) -> float | None:
        """``norm(b - A x0)`` where ``init`` computed it and ``history[0]`` is not it."""
        return None


def check_settings(solver) -> None:
    """Validate the settings every solver family shares, naming the one at fault:
    ``max_steps``, ``rtol``, ``atol`` and, where the solver has it, ``divergence_factor``."""
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
