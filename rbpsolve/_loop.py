"""The one iteration driver: stopping test, non-finite and divergence checks, history,
callbacks, product counts and the :class:`Result`.

Solvers only say how to start (``init``) and how to take one step (``step``); the loop
decides when to stop. It reads one host scalar per step (the :class:`StepReport`), so a
GPU solve synchronises once per iteration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from . import _backend
from ._operator import ProductCounter
from ._result import Result, Status

__all__ = ["iterate", "StepInfo", "CallbackError"]


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """What a callback sees after each step.

    Attributes
    ----------
    step : int
        The step just taken, from 1.
    residual_norm : float
        The norm the stopping test read at this step.
    """

    step: int
    residual_norm: float
    _solution: Callable[[], Any] = dataclasses.field(repr=False)

    @property
    def x(self):
        """The current iterate (computed on demand: GMRES forms it from its basis)."""
        return self._solution()


class CallbackError(RuntimeError):
    """The user's callback raised; the solve stopped. ``.step`` says when."""

    def __init__(self, step: int, error: BaseException):
        self.step = step
        super().__init__(
            f"the callback raised {type(error).__name__} at step {step}: {error}. "
            "The solve was stopped; fix the callback (it receives an rbpsolve.StepInfo) "
            "or return True from it to stop early on purpose"
        )


def iterate(solver, a, b, x0, *, callback=None) -> Result:
    """Run ``solver`` on ``a x = b`` from ``x0`` (None: zero) and build the Result.

    The forward fixed-point solvers run here too, with ``a`` the map ``F``, ``b = None``
    and ``x0 = h0``: their steps report the scale of ``rtol`` (``StepReport.scale``).
    """
    counter = ProductCounter()
    a = a.with_counter(counter)
    xp = a.xp
    b_norm = None if b is None else _backend.to_float(_backend.norm(xp, b))
    tol = solver.atol if b_norm is None else max(solver.rtol * b_norm, solver.atol)

    if b_norm == 0.0:
        # b = 0: x = 0 solves it exactly (the minimum-norm answer for LSQR and CGNE too),
        # and a relative tolerance would otherwise ask for an exactly zero residual.
        zero = xp.zeros(a.in_shape, dtype=b.dtype, device=a.device)
        return Result(zero, Status.CONVERGED, 0, (), counter.vjp, counter.jvp, 0.0, 0.0, 0.0, solver)
    if x0 is not None:
        # A copy, so that no iterate handed back can alias the caller's array.
        x0 = xp.asarray(x0, copy=True)

    state = solver.init(a, b, x0, tol)
    history: list[float] = []
    best_residual = math.inf
    best_state = state
    status = None
    for k in range(1, solver.max_steps + 1):
        previous = state
        state, report = solver.step(a, b, state)
        residual = float(report.residual)
        history.append(residual)
        stop = False
        if callback is not None:
            info = StepInfo(k, residual, _solution_of(solver, a, b, state))
            try:
                stop = callback(info)
            except Exception as error:
                raise CallbackError(k, error) from error
        if not math.isfinite(residual):
            status = Status.NONFINITE
            break
        # The residual of FixedPoint/Neumann belongs to the previous iterate.
        if residual < best_residual:
            best_residual = residual
            best_state = previous if solver.residual_lags else state
        step_tol = tol if report.scale is None else max(solver.rtol * float(report.scale), solver.atol)
        if residual <= step_tol:
            status = Status.CONVERGED
            break
        if report.least_squares:
            status = Status.LEAST_SQUARES
            break
        if report.breakdown:
            status = Status.BREAKDOWN
            break
        if solver.can_diverge and residual > solver.divergence_factor * best_residual:
            status = Status.DIVERGED
            break
        if report.done:
            status = Status.BUDGET_SPENT
            break
        # Any truthy answer stops: a callback may well return a numpy or torch boolean.
        if stop is not None and bool(stop):
            status = Status.STOPPED
            break
    else:
        status = Status.BUDGET_SPENT if solver.fixed_budget else Status.MAX_STEPS

    # Failures hand back the best iterate seen, not the one that blew up.
    final_state = state if status in (Status.CONVERGED, Status.BUDGET_SPENT, Status.MAX_STEPS,
                                      Status.STOPPED, Status.LEAST_SQUARES) else best_state
    x = solver.solution(a, b, final_state)
    if status.ok and not bool(xp.all(xp.isfinite(x))):
        status = Status.NONFINITE
    extra = solver.finish(a, b, final_state)
    return Result(
        x=x,
        status=status,
        num_steps=len(history),
        history=tuple(history),
        num_vjp=counter.vjp,
        num_jvp=counter.jvp,
        residual_norm=extra.get("residual_norm"),
        b_norm=extra.get("b_norm", b_norm),
        error_bound=extra.get("error_bound"),
        solver=solver,
        info=extra.get("info", {}),
    )


def _solution_of(solver, a, b, state):
    return lambda: solver.solution(a, b, state)
