"""The two ways the loop takes its steps: reading each step's report as it comes (a
tolerance, a callback), or reading all of them after a fixed budget.

Both decide the same way (:func:`_decide`): the statuses, the stopping step and the best
iterate of a fixed budget read afterwards are those of a run that had read every step,
except that a fixed budget spends its products to the end (a run read afterwards cannot
stop early), and hands back the best iterate tracked on the device.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

from . import _backend
from ._protocol import StepReport
from ._result import Status
from ._verify import LIMIT_FACTOR, true_residual

__all__ = ["StepInfo", "CallbackError", "Run", "run_eager", "run_deferred"]


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


@dataclasses.dataclass
class Run:
    """What a run of steps hands back to the loop (host values only, but the states)."""

    state: Any  # the last state
    status: Status | None = None
    history: list = dataclasses.field(default_factory=list)
    records: list = dataclasses.field(default_factory=list)
    restarts: list = dataclasses.field(default_factory=list)
    best_residual: float = math.inf
    best_state: Any = None  # the state of the best iterate (eager runs)
    best_steps: int = 0  # how many steps that state had taken
    best_x: Any = None  # the best iterate itself (deferred runs, tracked on the device)
    checked: tuple | None = None  # (x, residual, floor) of a verification of the returned iterate
    floor_seen: float | None = None  # the rounding floor of the last residual a solver verified
    last_scale: float | None = None  # the scale of the last forward test
    memo: Any = None  # the solver's running host state (AbstractIterativeSolver.judge)


class _Settings(NamedTuple):
    tol: float
    rtol: float
    atol: float
    linear: bool
    verify: bool | None


def settings(solver, tol, rtol, atol, linear) -> _Settings:
    return _Settings(tol, rtol, atol, linear, getattr(solver, "verify", None))


# --------------------------------------------------------------------- reading reports
def read(xp, reports: list) -> list:
    """The reports with every device field moved to the host: one transfer for all.

    A field may be a 0-d array, a 1-d array (a record of several values: it comes back
    as that many floats) or a Python value (passed through).
    """
    if len(reports) == 1:
        report = reports[0]
        if (not report.records and report.scale is None and report.residual is not None
                and type(report.breakdown) is bool and type(report.least_squares) is bool):
            return [report._replace(residual=_backend.to_float(report.residual))]  # a series step
    values = []
    for report in reports:
        values.append(report.residual if report.residual is not None else 0.0)
        values.append(report.breakdown)
        values.append(report.least_squares)
        values.append(report.scale if report.scale is not None else 0.0)
        values.extend(report.records)
    flat = _backend.to_host(xp, *values)
    if len(reports) == 1:  # an eager step: every value after the first four is a record
        report = reports[0]
        return [report._replace(
            residual=flat[0] if report.residual is not None else None, breakdown=bool(flat[1]),
            least_squares=bool(flat[2]), scale=flat[3] if report.scale is not None else None,
            records=tuple(flat[4:]))]
    out, at = [], 0
    for report in reports:
        residual, breakdown, least_squares, scale = flat[at: at + 4]
        at += 4
        width = sum(math.prod(v.shape) if getattr(v, "shape", None) else 1 for v in report.records)
        out.append(report._replace(
            residual=residual if report.residual is not None else None,
            breakdown=bool(breakdown), least_squares=bool(least_squares),
            scale=scale if report.scale is not None else None, records=tuple(flat[at: at + width])))
        at += width
    return out


# --------------------------------------------------------------------- one decision
def _decide(solver, report: StepReport, run: Run, step: int, previous, s: _Settings):
    """The status ``report`` ends the run with (None: go on), and the bookkeeping of the
    best iterate. ``previous`` is the state the step started from (None in a deferred run)."""
    residual = report.residual
    if not math.isfinite(residual):
        return Status.NONFINITE
    if residual < run.best_residual:
        # The residual of FixedPoint/Neumann belongs to the previous iterate.
        run.best_residual = residual
        run.best_state = previous if solver.residual_lags else run.state
        run.best_steps = step - 1 if solver.residual_lags else step
    if report.verified:
        # A recomputed residual supersedes the recurrence's figures before it (and the
        # states they belong to, whose storage a restarted solver may reuse).
        run.best_residual, run.best_state, run.best_steps = residual, run.state, step
    step_tol = s.tol if report.scale is None else max(s.rtol * report.scale, s.atol)
    if residual <= step_tol:
        return "tolerance"
    if (report.verified and report.floor is not None and 0.0 < step_tol < report.floor
            and residual <= LIMIT_FACTOR * report.floor):
        # A verified residual at the rounding floor, above a tolerance below that floor.
        return Status.ACCURACY_LIMIT
    if report.least_squares:
        return Status.LEAST_SQUARES
    if report.breakdown:
        return Status.BREAKDOWN
    if solver.can_diverge and residual > solver.divergence_factor * run.best_residual:
        return Status.DIVERGED
    if report.done:
        return Status.BUDGET_SPENT
    return None


# --------------------------------------------------------------------- eager run
def run_eager(solver, a, b, state, s: _Settings, callback) -> Run:
    """Steps whose reports are read as they come: one host transfer a step."""
    xp = a.xp
    lazy = _backend.is_lazy(xp)
    run = Run(state, best_state=state)
    del state  # the run owns it now (a reference here would outlive the state)
    k = 0
    while k < solver.max_steps:
        k += 1
        previous = run.state
        new, raw = solver.step(a, b, previous)
        if lazy:  # dask: compute the step once, not again at every later read
            new, raw = _backend.persist(new, raw)
        report, run.memo = solver.judge(read(xp, [raw])[0], run.memo)  # the step's one host transfer
        run.state = previous if report.breakdown else new
        record(run, report)
        stop = False
        if callback is not None:
            stop = any_rank(a, _call(callback, k, report.residual, _solution_of(solver, a, b, run.state)))
        verdict = _decide(solver, report, run, k, previous, s)
        if verdict == "tolerance":
            verdict = _at_tolerance(solver, a, b, run, report, s)
            if verdict == "restarted":
                run.restarts.append(k)
                verdict = None
        if verdict is not None:
            run.status = verdict
            return run
        if stop:
            run.status = Status.STOPPED
            return run
    run.status = Status.BUDGET_SPENT if solver.fixed_budget else Status.MAX_STEPS
    return run


def record(run: Run, report: StepReport) -> None:
    """A judged report into the run's history (every step of an eager run)."""
    run.history.append(report.residual)
    run.records.append(report.records)
    if report.floor is not None:
        run.floor_seen = report.floor
    if report.scale is not None:
        run.last_scale = report.scale


def _at_tolerance(solver, a, b, run: Run, report: StepReport, s: _Settings):
    """A residual at the tolerance: ``CONVERGED`` once the claim is checked."""
    step_tol = s.tol if report.scale is None else max(s.rtol * report.scale, s.atol)
    if not s.linear or s.verify is False or report.verified:
        return Status.CONVERGED
    if step_tol == 0.0 and not s.verify:
        # A fixed budget ended by an exactly zero update or recurrence residual: later
        # steps would change nothing. It keeps its product count and claims no tolerance.
        return Status.BUDGET_SPENT
    # A claim from a recurrence (or about the previous iterate): check the returned x
    # itself before saying CONVERGED.
    x = solver.solution(a, b, run.state)
    r, true, floor = true_residual(a, b, x)
    run.checked = (x, true, floor)
    if true <= step_tol:
        return Status.CONVERGED
    if not math.isfinite(true):
        run.checked = None  # hand back the best finite iterate, as every failure does
        return Status.NONFINITE
    if step_tol == 0.0:
        # Ended early by an exactly zero recurrence residual: further steps would change
        # nothing, but the true residual is not zero.
        return Status.BUDGET_SPENT
    if step_tol < floor and true <= LIMIT_FACTOR * floor:
        return Status.ACCURACY_LIMIT  # a tolerance below the rounding floor, and a residual at it
    run.checked = None
    run.state = solver.restart(a, b, run.state, x, r)
    return "restarted"


# --------------------------------------------------------------------- deferred run
# A deferred run reads its reports at these steps too, so that a diverging fixed budget
# stops long before a large max_steps (log2(K / 32) transfers in all; none for K < 64).
FIRST_CHECKPOINT = 64


def run_deferred(solver, a, b, state, s: _Settings) -> Run:
    """A fixed budget without a callback: no host transfer before the budget is spent
    (or before step 64, 128, 256, ... for longer budgets).

    The best iterate is tracked on the device (one ``where`` a step; on numpy a reference,
    no copy: :func:`rbpsolve._backend.select`); GMRES, which forms
    its iterate only at a cycle's end, keeps what it needs to form it instead. The
    reports are then read in one transfer and decided as an eager run would have: the
    status and the returned iterate are the same; the products spent after the step
    that decided a failure (up to the next read) are counted and in the history.
    """
    xp = a.xp
    lazy = _backend.is_lazy(xp)
    track = getattr(solver, "forms_iterate", True)
    run = Run(state, best_state=None)
    run.best_x = solver.solution(a, b, state) if track else None
    best_r = None
    raw, read_up_to = [], 0
    for k in range(1, solver.max_steps + 1):
        previous = state
        state, report = solver.step(a, b, state)
        raw.append(report)
        if track:
            holder = previous if solver.residual_lags else state
            r = report.residual
            better = (r == r) if best_r is None else (r < best_r)  # NaN is never better
            # (A NaN residual may make best_r NaN: nothing is better after it, and the
            # run is NONFINITE from that step anyway.)
            best_r = r if best_r is None else _backend.minimum(xp, best_r, r)
            run.best_x = _backend.select(xp, better, solver.solution(a, b, holder), run.best_x)
        if lazy:
            # dask: each step computed once (a fixed budget defers the reading, not the
            # work: a graph of the whole run would be replayed by every later read).
            state, report, run.best_x, best_r = _backend.persist(state, report, run.best_x, best_r)
            raw[-1] = report
        if report.done:  # a host value: RandomizedNeumann's drawn length
            break
        if track and k >= FIRST_CHECKPOINT and k & (k - 1) == 0:
            _replay(solver, run, read(xp, raw[read_up_to:]), read_up_to, s)
            read_up_to = len(raw)
            if run.status is not None:
                break
    reports = read(xp, raw[read_up_to:])  # the run's one transfer
    if not track:
        state, reports = solver.settle(a, b, state, reports)
    run.state = state
    _replay(solver, run, reports, read_up_to, s)
    if run.status is None:
        run.status = Status.BUDGET_SPENT
    return run


def _replay(solver, run: Run, reports: list, offset: int, s: _Settings) -> None:
    """Decide on reports read after the steps, as an eager run would have decided."""
    for k, report in enumerate(reports, offset + 1):
        report, run.memo = solver.judge(report, run.memo)
        run.history.append(report.residual)
        run.records.append(report.records)
        if report.scale is not None:
            run.last_scale = report.scale
        if run.status is not None:
            # Decided: the rest is history (the products were spent). The device kept the
            # best iterate over every step taken, so its residual is the best of them all.
            if report.residual < run.best_residual:
                run.best_residual = report.residual
            continue
        verdict = _decide(solver, report, run, k, None, s)
        if verdict == "tolerance":
            # Only an exactly zero residual meets a fixed budget's test; later steps
            # changed nothing (a finished recurrence takes steps of length zero).
            verdict = Status.CONVERGED if (not s.linear or s.verify is False or report.verified) else (
                Status.BUDGET_SPENT)
        run.status = verdict


def any_rank(a, stop: bool) -> bool:
    """Whether a callback asked to stop on any rank of a state split over processes (one
    all-reduce a step, only with a callback): a callback that looks at its rank's block
    alone must not stop one rank while the others wait for it in the next reduction."""
    sharded = _backend.sharded_of(a.xp)
    if sharded is None:
        return stop
    flag = sharded.xp.asarray([1.0 if stop else 0.0], device=a.device)  # NCCL reduces device arrays only
    return bool(_backend.to_float(sharded.reduce(flag, "max")[0]) > 0.5)


def _call(callback, step, residual, solution):
    """Run the user's callback; True (any truthy scalar) asks to stop."""
    info = StepInfo(step, residual, solution)
    try:
        answer = callback(info)
    except Exception as error:
        raise CallbackError(step, error) from error
    if answer is None or isinstance(answer, bool):
        return bool(answer)
    shape = getattr(answer, "shape", None)
    if isinstance(answer, (list, tuple)):
        shape = (len(answer),)
    if shape is not None and math.prod(shape) != 1:
        raise CallbackError(
            step,
            TypeError(
                f"it returned a {type(answer).__name__} of shape {tuple(shape)}; return True to stop, False or None to go on "
                "(e.g. `return bool(info.residual_norm < 1e-6)`)"
            ),
        )
    try:
        # A callback may well return a numpy or torch boolean, or a 0-d array.
        return bool(answer)
    except Exception as error:
        raise CallbackError(step, TypeError(f"its answer {answer!r} is not True/False/None ({error})")) from error


def _solution_of(solver, a, b, state):
    return lambda: solver.solution(a, b, state)
