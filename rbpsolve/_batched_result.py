"""The :class:`Result` of a batched solve, from its samples' results: the batch's fields
for the whole batch as one vector, and the per-sample records."""

from __future__ import annotations

import math

import numpy as np

from ._result import Result, Status

__all__ = ["combine", "GRAVITY"]

# The batch's status where samples differ: the gravest present, in this order (an ok
# status only when every sample is ok).
GRAVITY = (Status.NONFINITE, Status.DIVERGED, Status.BREAKDOWN, Status.LEAST_SQUARES, Status.ACCURACY_LIMIT,
           Status.MAX_STEPS, Status.STOPPED, Status.BUDGET_SPENT, Status.CONVERGED)


def _root_sum_squares(values):
    if any(v is None for v in values):
        return None
    # hypot: no overflow of the squares where samples are huge (each is scaled on its own).
    return math.hypot(*values) if all(math.isfinite(v) for v in values) else math.inf


def combine(results: list, x, solver, counter, axis: int, b_norm: float) -> Result:
    """The batch's Result: ``results`` one a sample (host figures), ``x`` the batch's iterate."""
    statuses = [r.status for r in results]
    status = next(s for s in GRAVITY if s in statuses)
    steps = max((r.num_steps for r in results), default=0)
    history = []
    for k in range(steps):
        # Each sample's latest residual at step k (a stopped sample: its last one).
        latest = [r.history[min(k, len(r.history) - 1)] for r in results if r.history]
        history.append(math.hypot(*latest))
    kinds = {r.residual_kind for r in results if r.num_steps or r.residual_kind != "verified"}
    kind = kinds.pop() if len(kinds) == 1 else ("verified" if not kinds else "per sample")
    info = {"batch_size": len(results), "batch_axis": axis, "sample_results": tuple(results)}
    for key in getattr(solver, "sample_info", ()):
        # A solver's per-sample figures (RandomizedNeumann's depths): one entry a sample,
        # None where a sample has none (b_i = 0, solved in no step).
        info[key] = np.array([r.info.get(key) for r in results])
    return Result(
        x=x,
        status=status,
        num_steps=steps,
        history=tuple(history),
        num_vjp=counter.vjp,
        num_jvp=counter.jvp,
        residual_norm=_root_sum_squares([r.residual_norm for r in results]),
        b_norm=b_norm,
        error_bound=_root_sum_squares([r.error_bound for r in results]),
        solver=solver,
        info=info,
        residual_kind=kind,
        error_estimate=_root_sum_squares([r.error_estimate for r in results]),
        estimate_reliable=all(bool(r.estimate_reliable) for r in results),
        sample_status=np.array(statuses, dtype=object),
        sample_num_steps=np.array([r.num_steps for r in results], dtype=np.int64),
        sample_residual_norm=np.array([np.nan if r.residual_norm is None else r.residual_norm for r in results]),
        sample_error_estimate=np.array([np.nan if r.error_estimate is None else r.error_estimate for r in results]),
    )
