"""The loop of a batched solve: one independent system per sample, each with its own
steps, status and certificate (``solve(..., batch_axis=k)``).

The device work is the unbatched solver's own step on the whole batch
(:mod:`rbpsolve._batched`: per-sample reductions, one batched product a step). The host
work is the unbatched loop's, once a sample: each sample has its own :class:`Run`, is
judged and decided by the same code (:func:`rbpsolve._steps._decide`), and is concluded
by the same :func:`rbpsolve._loop.conclude`. A sample that has stopped is frozen (its
state no longer changes); one whose values are no longer finite is set to zero, so that
the products it still rides along in cannot spread NaNs.

Host transfers: one a step (every sample's scalars together) for a run with a tolerance,
none for a fixed budget until its end (then as the unbatched deferred run: reads at steps
64, 128, 256, ... of longer budgets). A fixed budget may end per sample (a per-sample
``StepReport.done``, known on the host: RandomizedNeumann's depths); a sample whose
budget ended, or that a read decided, is frozen there, as its solo run stops there. A
step in which some samples claim the tolerance on a recurrence's residual spends one
more batched product to verify them.
"""

from __future__ import annotations

import dataclasses
import math

from . import _backend
from ._batched import mask_like, merge, per_sample, split_reports
from ._precision import default_rtol, product_eps
from ._protocol import SampleValues
from ._result import Result, Status
from ._scaling import sample_scales, scale_samples, unscale_result
from ._space import ProductCounter
from ._steps import FIRST_CHECKPOINT, Run, _call, _decide, _replay, any_rank, record, settings
from ._verify import LIMIT_FACTOR
from ._batched_conclude import batched_true_residual, conclude_samples
from ._batched_result import combine
from ._solvers.gmres import GMRES

__all__ = ["iterate_batched"]


@dataclasses.dataclass
class _Batch:
    """What the loop knows of the whole batch between steps."""

    solver: object
    a: object  # the batch-first operator (counted)
    b: object  # batch-first right-hand side (the loop's copy)
    size: int
    runs: list
    settings: list
    active: list  # host booleans: the samples still stepping
    axis: int = 0  # where the user's batch axis is
    native: object = None  # a solver's own batched implementation (GMRES), if it has one
    state: object = None
    best_x: object = None  # each sample's best iterate (device), for failures
    ends: list = None  # deferred runs: the step after which each sample stopped (None: the last)


def iterate_batched(solver, A, b, x0, axis: int, callback=None, only=None) -> Result:
    """Solve ``A x = b`` with every slice along ``axis`` an independent system.

    ``only``: host booleans, one a sample; the others are not solved (they ride along in
    the products on zeros, and their entries of the result are placeholders: x = 0, no
    step). ``Result.info["sample_results"]`` holds each sample's own Result (host
    figures; its ``x`` a view of the batch's)."""
    xp = A.xp
    a = per_sample(A, axis)
    b = xp.moveaxis(b, axis, 0) if axis != 0 else b
    if x0 is not None:
        x0 = xp.asarray(xp.moveaxis(x0, axis, 0) if axis != 0 else x0, copy=True)
    # Each sample scaled by its own power of two (exact; see rbpsolve._scaling).
    ks, _ = sample_scales(xp, b)
    minus = [-k for k in ks]
    atols = [math.ldexp(float(solver.atol), -k) for k in ks]
    b = xp.asarray(b, copy=True) if not any(ks) else scale_samples(xp, b, minus)
    if x0 is not None and any(ks):
        x0 = scale_samples(xp, x0, minus)
    counter = ProductCounter()
    a = a.with_counter(counter)
    batch = a.in_shape[0]
    bxp = a.xp
    eps = product_eps(a)
    rtol = default_rtol(eps) if solver.rtol is None else solver.rtol
    b_norms = _backend.to_host(bxp, _backend.norm(bxp, b))
    zero = [v == 0.0 for v in b_norms]  # b_i = 0: x_i = 0 solves it exactly, in no step
    if only is not None:
        zero = [z or not o for z, o in zip(zero, only)]
    tols = [max(rtol * v, atol) for v, atol in zip(b_norms, atols)]
    run = _Batch(solver, a, b, batch, [Run(None) for _ in range(batch)],
                 [settings(solver, t, rtol, atol, True) for t, atol in zip(tols, atols)], [not z for z in zero],
                 axis=axis)
    deferred = solver.fixed_budget and callback is None
    run.native = native_batched(solver, deferred)
    if run.native is not None:
        run.state = run.native.init(a, b, x0, tols)
        if any(run.active):
            (_run_native_deferred if deferred else _run_native)(run, callback)
    else:
        run.state = solver.init(a, b, x0, min(tols), deferred=deferred)
        run.best_x = solver.solution(a, b, run.state)
        if any(run.active):
            (_run_deferred if deferred else _run_eager)(run, callback)
    for i, z in enumerate(zero):
        if z:
            run.runs[i].status = Status.CONVERGED
        elif run.runs[i].status is None:
            run.runs[i].status = _unfinished_status(solver)
    results, x = conclude_samples(run, eps, b_norms, zero)
    results = [unscale_result(r, k, xp) for r, k in zip(results, ks)]
    x = x if not any(ks) else scale_samples(xp, x, ks)
    if axis != 0:
        x = xp.moveaxis(x, 0, axis)
    return combine(results, x, solver, counter, axis, math.hypot(*(math.ldexp(v, k) for v, k in zip(b_norms, ks))))


def native_batched(solver, deferred: bool):
    """The solver's own batched implementation, where its steps need one (GMRES: each
    sample at its own place in its own restart cycle; on a fixed budget, no transfer
    before a cycle ends), else None."""
    if isinstance(solver, GMRES):
        from ._solvers.gmres_batched import BatchedGMRES
        from ._solvers.gmres_batched_budget import BudgetGMRES

        return BudgetGMRES(solver) if deferred else BatchedGMRES(solver)
    return None


# --------------------------------------------------------------------- eager
def _run_eager(run: _Batch, callback) -> None:
    solver, a, b, xp = run.solver, run.a, run.b, run.a.xp
    lazy = _backend.is_lazy(xp)
    for step in range(1, solver.max_steps + 1):
        if not any(run.active):
            return
        previous = run.state
        new, raw = solver.step(a, b, previous)
        if lazy:  # dask: compute the step once, not again at every later read
            new, raw = _backend.persist(new, raw)
        reports = split_reports(xp, [raw], run.size)[0]  # the step's one host transfer
        keep_new, improved, claims = _judge(run, reports, step)
        run.state = new if all(keep_new) else merge(xp, keep_new, new, previous, run.size)
        if any(improved):
            holder = previous if solver.residual_lags else run.state
            run.best_x = merge(xp, improved, solver.solution(a, b, holder), run.best_x, run.size)
        if lazy:
            run.state, run.best_x = _backend.persist(run.state, run.best_x)
        if _after_step(run, claims, step, callback, lambda: solver.solution(a, b, run.state)):
            return


def _run_native(run: _Batch, callback) -> None:
    """A solver with a batched implementation of its own (GMRES): it keeps each sample's
    state and freezes the inactive ones itself, and reports one host value a sample."""
    native, a, b, solver = run.native, run.a, run.b, run.solver
    # A sample's step may report one batched step late (GMRES recomputes a finished
    # cycle's residual in the next step's product): each sample counts its own steps.
    for step in range(1, 2 * solver.max_steps + 2):
        if not any(run.active):
            return
        run.state, reports = native.step(a, b, run.state, run.active)
        _, _, claims = _judge(run, reports, step)
        for i in _indices(run.active):
            r = run.runs[i]
            if r.status is None and len(r.history) >= solver.max_steps and not native.waiting(run.state, i):
                r.status = Status.BUDGET_SPENT if solver.fixed_budget else Status.MAX_STEPS
        if _after_step(run, claims, step, callback, lambda: native.solution(a, b, run.state)):
            return


def _run_native_deferred(run: _Batch, callback=None) -> None:
    """A native solver's fixed budget: its steps, then each sample's reports decided as
    the unbatched deferred run decides them."""
    native, a, b = run.native, run.a, run.b
    for _ in range(run.solver.max_steps):
        run.state, _ = native.step(a, b, run.state, run.active)
    reports = native.settle(a, b, run.state, run.solver.max_steps, run.active)
    for i in _indices(run.active):
        _replay(run.solver, run.runs[i], reports[i], 0, run.settings[i])


def _judge(run: _Batch, reports, step: int):
    """Each active sample's report judged and decided as the unbatched loop does.

    Returns ``(keep_new, improved, claims)``: whether each sample's new state is taken (a
    broken step is not), whether its best residual improved, and the samples that met
    their tolerance (decided by :func:`_settle_claims`)."""
    solver = run.solver
    keep_new = list(run.active)
    improved = [False] * run.size
    claims = []
    for i in _indices(run.active):
        if reports[i] is None:
            continue  # no report this step (a native solver's step still waiting on its product)
        r = run.runs[i]
        report, r.memo = solver.judge(reports[i], r.memo)
        record(r, report)
        best_before = r.best_residual
        verdict = _decide(solver, report, r, step, None, run.settings[i])
        improved[i] = r.best_residual < best_before or bool(report.verified)
        if report.breakdown:
            keep_new[i] = False
        if verdict == "tolerance":
            claims.append((i, report))
        elif verdict is not None:
            r.status = verdict
    return keep_new, improved, claims


def _after_step(run: _Batch, claims, step: int, callback, solution) -> bool:
    """Claims settled, the callback called, stopped samples retired; True: the run ends."""
    if claims:
        _settle_claims(run, claims, step)
    stop = False
    if callback is not None:
        norms = [r.history[-1] if r.history else 0.0 for r in run.runs]
        stop = any_rank(run.a, _call(callback, step, math.sqrt(math.fsum(v * v for v in norms)),
                                        lambda: _user_layout(run, solution())))
    _retire(run)
    if stop:
        for i in _indices(run.active):
            run.runs[i].status = Status.STOPPED
        _retire(run)
    return stop


def _user_layout(run: _Batch, x):
    """An iterate as the user laid the batch out (for a callback's ``StepInfo``)."""
    return x if run.axis == 0 else run.a.xp.moveaxis(x, 0, run.axis)


def _settle_claims(run: _Batch, claims, step: int) -> None:
    """Samples whose residual met the tolerance: CONVERGED once the claim is checked (one
    batched product for all of them where a recurrence made the claim)."""
    solver = run.solver
    unchecked = []
    for i, report in claims:
        s = run.settings[i]
        if not s.linear or s.verify is False or report.verified:
            run.runs[i].status = Status.CONVERGED
        elif s.tol == 0.0 and not s.verify:
            run.runs[i].status = Status.BUDGET_SPENT
        else:
            unchecked.append(i)
    if not unchecked:
        return
    x = (run.native or solver).solution(run.a, run.b, run.state)
    r, trues, floors = batched_true_residual(run.a, run.b, x)
    restart = [False] * run.size
    for i in unchecked:
        tol, true, floor, sample = run.settings[i].tol, trues[i], floors[i], run.runs[i]
        sample.checked = (true, floor)
        if true <= tol:
            sample.status = Status.CONVERGED
        elif not math.isfinite(true):
            sample.checked = None
            sample.status = Status.NONFINITE
        elif tol == 0.0:
            sample.status = Status.BUDGET_SPENT
        elif tol < floor and true <= LIMIT_FACTOR * floor:
            sample.status = Status.ACCURACY_LIMIT
        else:
            sample.checked = None
            sample.restarts.append(step)
            restart[i] = True
    if any(restart):
        run.state = merge(run.a.xp, restart, solver.restart(run.a, run.b, run.state, x, r), run.state, run.size)


def _retire(run: _Batch) -> None:
    """Samples with a status stop stepping; those with non-finite values are set to zero."""
    poisoned = []
    for i in _indices(run.active):
        status = run.runs[i].status
        if status is not None:
            run.active[i] = False
            if status is Status.NONFINITE:
                poisoned.append(i)
    if poisoned:
        clean = [i not in poisoned for i in range(run.size)]
        run.state = merge(run.a.xp, clean, run.state, None, run.size)


def _indices(flags):
    return [i for i, f in enumerate(flags) if f]


def _unfinished_status(solver) -> Status:
    """The status of a sample still stepping when the steps ran out."""
    return Status.BUDGET_SPENT if solver.fixed_budget else Status.MAX_STEPS


# --------------------------------------------------------------------- deferred
def _run_deferred(run: _Batch, callback=None) -> None:
    """A fixed budget: no transfer before its end (or before steps 64, 128, ...); each
    sample's best iterate kept on the device, and every sample decided afterwards as the
    unbatched deferred run decides.

    A sample stops where its solo run would have stopped: at the step whose per-sample
    ``done`` says so (RandomizedNeumann's own depth, a host value), or at a checkpoint
    that decided it. It is then frozen (later steps' values for it are dropped, and so
    are their reports), while the others go on.
    """
    solver, a, b, xp = run.solver, run.a, run.b, run.a.xp
    lazy = _backend.is_lazy(xp)
    best_r, raw, read_up_to = None, [], 0
    state = run.state
    stepping = [True] * run.size  # host: the samples whose steps still count
    run.ends = [None] * run.size  # the step each frozen sample stopped after
    for step in range(1, solver.max_steps + 1):
        previous = state
        state, report = solver.step(a, b, state)
        frozen = not all(stepping)
        if frozen:
            state = merge(xp, stepping, state, previous, run.size)
        raw.append(report)
        holder = previous if solver.residual_lags else state
        r = report.residual
        better = (r == r) if best_r is None else (r < best_r)
        if frozen:
            better = xp.logical_and(better, mask_like(xp, stepping, better))
        best_r = r if best_r is None else _backend.minimum(xp, best_r, r)
        run.best_x = xp.where(better, solver.solution(a, b, holder), run.best_x)
        if lazy:  # dask: each step computed once (see rbpsolve._steps.run_deferred)
            state, report, run.best_x, best_r = _backend.persist(state, report, run.best_x, best_r)
            raw[-1] = report
        if type(report.done) is SampleValues:
            _stop(run, stepping, [i for i, d in enumerate(report.done) if d], step)
            if not any(stepping[i] for i in _indices(run.active)):
                break
        elif report.done:
            break
        if step >= FIRST_CHECKPOINT and step & (step - 1) == 0:
            _replay_all(run, raw[read_up_to:], read_up_to)
            read_up_to = len(raw)
            _stop(run, stepping, [i for i, r in enumerate(run.runs) if r.status is not None], step)
            if not any(stepping[i] for i in _indices(run.active)):
                break
    run.state = state
    _replay_all(run, raw[read_up_to:], read_up_to)


def _stop(run: _Batch, stepping: list, samples, step: int) -> None:
    for i in samples:
        if stepping[i]:
            stepping[i], run.ends[i] = False, step


def _replay_all(run: _Batch, raw: list, offset: int) -> None:
    if not raw:
        return
    split = split_reports(run.a.xp, raw, run.size)  # one transfer for them all
    for i in _indices(run.active):
        # A frozen sample's reports end at its last step (a solo run took no more).
        taken = len(split) if run.ends[i] is None else max(0, run.ends[i] - offset)
        _replay(run.solver, run.runs[i], [reports[i] for reports in split[:taken]], offset, run.settings[i])
