"""The one iteration driver: stopping test, non-finite and divergence checks, history,
callbacks, product counts and the :class:`Result`.

Solvers follow one protocol (:mod:`rbpsolve._protocol`): how to start, how to take one
step on the device, what the step's host values mean. The loop takes the steps
(:mod:`rbpsolve._steps`: read one transfer a step, or all after a fixed budget), decides
when to stop, and checks every claim before the :class:`Result` makes it: a
``CONVERGED`` from a recurrence is verified on the true residual, a tolerance below the
dtype's rounding level is ``ACCURACY_LIMIT``, and a fixed budget whose series was not
converging is ``DIVERGED``.
"""

from __future__ import annotations

import dataclasses
import math

from . import _backend
from ._algebra import IdentityMinus
from ._space import ProductCounter
from ._precision import default_rtol, finite_cast, is_low_precision, product_eps, promote, promote_map
from ._result import Result, Status
from ._scaling import right_hand_side_scale, scale_array, unscale_result
from ._error_estimate import (
    krylov_estimate,
    records_of,
    series_estimate,
    stagnation,
    steady,
    successive_ratios,
    update_tail,
)
from ._protocol import Trace
from ._solvers._common import krylov_error_bound
from ._steps import CallbackError, StepInfo, run_deferred, run_eager, settings
from ._verify import series_not_converging, true_residual

__all__ = ["iterate", "StepInfo", "CallbackError"]


def iterate(solver, a, b, x0, *, callback=None) -> Result:
    """Run ``solver`` on ``a x = b`` from ``x0`` (None: zero) and build the Result.

    The forward fixed-point solvers run here too, with ``a`` the map ``F``, ``b = None``
    and ``x0 = h0``: their steps report the scale of ``rtol`` (``StepReport.scale``).

    The caller's ``b`` and ``x0`` are never handed to the operator or a callback (a
    callback that writes into its argument would change them): the solve works on
    copies, scaled by a power of two where ``b`` is so small or large that its norm would
    under- or overflow (:mod:`rbpsolve._scaling`).
    """
    xp = a.xp
    if is_low_precision(xp, a.in_space.dtype):
        return _iterate_low_precision(solver, a, b, x0, callback)
    if b is None:
        x0 = None if x0 is None else xp.asarray(x0, copy=True)
        return _iterate(solver, a, None, x0, callback, float(solver.atol))
    k, amax = right_hand_side_scale(xp, b)
    atol = math.ldexp(float(solver.atol), -k)
    if amax == 0.0:
        # b = 0: x = 0 solves it exactly (the minimum-norm answer for LSQR and CGNE too),
        # and a relative tolerance would otherwise ask for an exactly zero residual.
        zero = xp.zeros(a.in_shape, dtype=b.dtype, device=a.device)
        return Result(zero, Status.CONVERGED, 0, (), 0, 0, 0.0, 0.0, 0.0, solver, residual_kind="verified",
                      error_estimate=0.0, estimate_reliable=True)
    b = xp.asarray(b, copy=True) if k == 0 else scale_array(xp, b, -k)
    if x0 is not None:
        x0 = xp.asarray(x0, copy=True) if k == 0 else scale_array(xp, x0, -k)
    result = unscale_result(_iterate(solver, a, b, x0, callback, atol), k, xp)
    if result.status.ok and k != 0 and not bool(xp.all(xp.isfinite(result.x))):
        result = dataclasses.replace(result, status=Status.NONFINITE)
    return result


def _iterate_low_precision(solver, a, b, x0, callback) -> Result:
    """float16/bfloat16: the solve runs on float32 copies (:mod:`rbpsolve._precision`)."""
    xp, low = a.xp, a.in_space.dtype
    if b is None:
        promoted, b32 = promote_map(a), None
    else:
        promoted, b32 = promote(a), xp.astype(b, xp.float32)
    x032 = None if x0 is None else xp.astype(x0, xp.float32)
    result = iterate(solver, promoted, b32, x032, callback=callback)
    x, finite = finite_cast(xp, result.x, low)
    status = result.status
    if status.ok and not finite:
        status = Status.NONFINITE  # float16 overflows past 65504
    return dataclasses.replace(result, x=x, status=status)


def _iterate(solver, a, b, x0, callback, atol) -> Result:
    counter = ProductCounter()
    a = a.with_counter(counter)
    xp = a.xp
    eps = product_eps(a)
    rtol = default_rtol(eps) if solver.rtol is None else solver.rtol
    b_norm = None if b is None else _backend.to_float(_backend.norm(xp, b))
    tol = atol if b_norm is None else max(rtol * b_norm, atol)
    linear = b is not None
    s = settings(solver, tol, rtol, atol, linear)
    # A fixed budget decides nothing before its end: its steps run without a transfer.
    deferred = solver.fixed_budget and callback is None
    # The initial state is handed over, not kept here: a reference in this frame would
    # hold the first iterate (an array) for the whole solve.
    if deferred:
        run = run_deferred(solver, a, b, solver.init(a, b, x0, tol, deferred=True), s)
    else:
        run = run_eager(solver, a, b, solver.init(a, b, x0, tol, deferred=False), s, callback)
    result = conclude(solver, a, b, run, s, eps, b_norm)
    info = result.info
    if not linear:
        info["num_evaluations"] = counter.evaluations
    return dataclasses.replace(result, num_vjp=counter.vjp, num_jvp=counter.jvp, info=info)


def conclude(solver, a, b, run, s, eps, b_norm, x_norm=None) -> Result:
    """The :class:`Result` of a finished run (products not yet counted): the status
    checked, the returned iterate chosen, its residual verified, the certificates and
    the estimate. The batched loop calls it once a sample, with that sample's view of
    ``a``, ``b`` and the run (and ``x_norm``, read for all samples at once)."""
    xp = a.xp
    linear = s.linear
    history = run.history
    verify = s.verify

    status, series_norms = judged_status(solver, run, eps)

    # Failures hand back the best iterate seen, not the one that blew up.
    failed = status not in (Status.CONVERGED, Status.BUDGET_SPENT, Status.MAX_STEPS,
                            Status.STOPPED, Status.LEAST_SQUARES, Status.ACCURACY_LIMIT)
    if failed and run.best_state is not None:
        final_state, taken = run.best_state, run.best_steps
    else:
        final_state, taken = run.state, len(history)
    trace = Trace(history[:taken], run.records[:taken], tuple(run.restarts))
    fin = solver.finish(a, b, final_state, trace)
    info = dict(fin.info)
    residual_norm = fin.residual_norm
    kind = fin.residual_kind or (solver.residual_kind if linear else None)
    if run.floor_seen is not None and kind == "verified":
        info["attainable"] = run.floor_seen
    if run.checked is not None:
        x, residual_norm, floor = run.checked
        kind = "verified"
        info["attainable"] = floor
    else:
        if failed and run.best_x is not None:
            # A fixed budget read afterwards: the best iterate was kept on the device.
            x = run.best_x
            if linear and math.isfinite(run.best_residual):
                residual_norm = run.best_residual
        else:
            x = solver.solution(a, b, final_state)
        if linear and residual_norm is None and kind == "previous iterate":
            residual_norm = _lagging_residual(solver, final_state, history, run.best_residual, status)
        if linear and verify and kind != "verified" and bool(xp.all(xp.isfinite(x))):
            _, residual_norm, info["attainable"] = true_residual(a, b, x)
            kind = "verified"
    if status.ok and not bool(xp.all(xp.isfinite(x))):
        status = Status.NONFINITE
    error_bound = fin.error_bound
    if fin.sigma_min is not None and kind == "verified" and error_bound is not None:
        # A Krylov bound ||A^{-1}|| ||r|| on the recomputed residual, not the recurrence's.
        error_bound = krylov_error_bound(a, residual_norm)
    observed = _contradicted_norm_bound(a, series_norms)
    if observed is None and fin.sigma_min is not None:
        observed = _contradicted_by_krylov(a, fin.sigma_min)
    if observed is not None:
        # The declared ||J|| <= q is false: every bound derived from it is void.
        error_bound = None
        info["norm_bound_contradicted"] = observed
    series = None
    if fin.series_terms is not None:
        # The norms up to the returned iterate (the best one, after a failure).
        recent = _series_norms(solver, final_state, history[:taken])[-4:]
        series = series_estimate(xp, *fin.series_terms, recent)
        series["error_estimate"] += fin.estimate_offset
        info["observed_factor"] = series.get("observed_factor")
    estimate, reliable = _estimate(fin, series, residual_norm, status, history, linear, error_bound)
    if math.isfinite(estimate):
        # Rounding: no product of precision eps resolves x better than about eps * ||x||
        # (the figures above see only the truncation; this term matters in float16/bfloat16).
        estimate += eps * (x_norm if x_norm is not None else _backend.to_float(_backend.norm(xp, x)))
    return Result(
        x=x,
        status=status,
        num_steps=len(history),
        history=tuple(history),
        num_vjp=0,
        num_jvp=0,
        residual_norm=residual_norm,
        b_norm=run.last_scale if run.last_scale is not None else b_norm,
        error_bound=error_bound,
        solver=solver,
        info=info,
        residual_kind=kind,
        error_estimate=estimate,
        estimate_reliable=reliable,
    )


def judged_status(solver, run, eps) -> tuple:
    """``(status, series_norms)``: the run's status with a series solver's fixed budget
    judged (``DIVERGED`` where its terms say the series was not converging), and the
    start and term norms it was judged on (None for the other solvers)."""
    series_norms = _series_norms(solver, run.state, run.history)
    if run.status is Status.BUDGET_SPENT and _diverging_series(solver, series_norms, eps):
        return Status.DIVERGED, series_norms
    return run.status, series_norms


def _estimate(fin, series, residual_norm, status, history, linear, error_bound):
    """``(error_estimate, estimate_reliable)`` of the returned x (see :mod:`rbpsolve._error_estimate`)."""
    if status in (Status.NONFINITE, Status.DIVERGED):
        estimate, reliable = math.inf, False
    elif fin.sigma_min is not None:
        estimate, reliable = krylov_estimate(residual_norm, fin.sigma_min, fin.sigma_settled)
        # An unconverged Krylov space (a fixed budget, the step limit) has often not yet
        # found A's smallest singular value: sigma_min(P) may be far above it. The iterates'
        # own movement is a second, independent figure; take the larger.
        if status is not Status.CONVERGED:
            reliable = False
            estimate = max(estimate, update_tail(fin.updates), stagnation(history))
    elif series is not None:
        estimate, reliable = series["error_estimate"], series["estimate_reliable"]
    elif not linear:
        estimate, reliable = _forward_estimate(history, status)
    else:
        estimate, reliable = math.inf, False
    if error_bound is not None and error_bound < estimate:
        # A rigorous bound below the estimate: the error is at most that.
        estimate, reliable = error_bound, True
    return estimate, reliable


def _forward_estimate(history, status):
    """The error of a forward iterate ``h_{k+1}`` from its residual norms ``||F(h_k) - h_k||``:
    ``r_k q / (1 - q)`` with ``q`` the largest of the last few ratios of successive
    residuals (for Picard, a contraction factor of F near the fixed point)."""
    norms = history[-5:]
    if status is Status.CONVERGED and norms and norms[-1] == 0.0:
        return 0.0, True
    ratios = successive_ratios(norms)
    if not ratios:
        return math.inf, False
    return update_tail(records_of(norms)), steady(ratios)


def _diverging_series(solver, norms, eps) -> bool:
    """A fixed budget of a series solver whose terms say it was not converging.

    ``divergence_factor = math.inf`` switches this off, as it does the running check:
    the plain truncated series of the paper's experiments.
    """
    if norms is None or not math.isfinite(solver.divergence_factor):
        return False
    return series_not_converging(norms, eps)


def _series_norms(solver, state, history):
    """``[norm(b - A x0)] + history`` of a series solver (start and term norms, oldest
    first), or None for the other solvers."""
    if not getattr(solver, "series", False):
        return None
    start = solver.start_residual(state)
    return ([start] if start is not None else []) + list(history)


def _contradicted_norm_bound(a, norms):
    """The largest observed ``||J^T t|| / ||t||`` where it exceeds a declared ``||J|| <= q``.

    Successive terms (or updates) of a series solver are ``t_{k+1} = J^T t_k``, so each
    ratio of their norms is a free lower bound on ``||J||``; one above ``q`` (beyond
    rounding) proves the declared bound wrong. None when nothing contradicts it.
    """
    q = a.op.norm_bound if norms is not None and isinstance(a, IdentityMinus) else None
    if q is None:
        return None
    norms = [v for v in norms if math.isfinite(v)]
    # Updates near the rounding level (FixedPoint's x_{k+1} - x_k cancels) carry no
    # information about ||J||: only terms well above it count.
    floor = 1e4 * product_eps(a) * max(norms, default=0.0)
    ratios = [after / before for before, after in zip(norms, norms[1:]) if before > floor and after > floor]
    worst = max(ratios, default=0.0)
    return worst if worst > q * (1.0 + 1e-3) + 1e-12 else None


def _contradicted_by_krylov(a, sigma):
    """``1 - sigma_min(P)`` where it exceeds a declared ``||J|| <= q``, else None.

    A Krylov solver's small matrix ``P`` satisfies ``sigma_min(P) >= sigma_min(I - J^T)``,
    and ``||J|| <= q`` gives ``sigma_min(I - J^T) >= 1 - q``: a ``sigma_min(P)`` below
    ``1 - q`` (beyond rounding) proves the bound wrong, with ``||J|| >= 1 - sigma_min(P)``.
    """
    if not isinstance(a, IdentityMinus) or a.op.norm_bound is None or not math.isfinite(sigma):
        return None
    q = a.op.norm_bound
    return 1.0 - sigma if sigma < (1.0 - q) * (1.0 - 1e-3) else None


def _lagging_residual(solver, state, history, best_residual, status):
    """The last update (or term) of a series solver: the previous iterate's residual.

    For a failure the returned iterate is the best one, whose figure is ``best_residual``.
    """
    if not history:
        return None
    if status in (Status.DIVERGED, Status.NONFINITE, Status.BREAKDOWN):
        return best_residual if math.isfinite(best_residual) else None
    return history[-1]
