"""The end of a batched solve: each sample's iterate chosen and its claims checked (one
batched product for every sample that needs its residual recomputed), then each sample
concluded by the unbatched :func:`rbpsolve._loop.conclude`."""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._batched import merge, sample_state, sample_view, scalars_on_host
from ._loop import conclude, judged_status
from ._result import Result, Status
from ._verify import residual_norms, rounding_floor

__all__ = ["batched_true_residual", "conclude_samples"]


def batched_true_residual(a, b, x):
    """``(r, norms, floors)``: ``r = b - A x`` for the whole batch (one batched product)
    and each sample's residual norm and rounding floor."""
    r, values, eps = residual_norms(a, b, x)
    values = np.reshape(np.asarray(values), (-1, a.in_shape[0]))  # (norms, samples)
    return r, values[0].tolist(), rounding_floor(eps, values[1:]).tolist()


def conclude_samples(run, eps: float, b_norms, zero):
    """Each sample's Result (host figures; its ``x`` a view) and the batch's iterate."""
    solver, a, b, xp = run.solver, run.a, run.b, run.a.xp
    native = run.native
    sample_ndim = len(a.in_shape) - 1
    sample_size = math.prod(a.in_shape[1:])
    host = None if native else scalars_on_host(xp, run.state, run.size, sample_ndim, sample_size)
    for i in [i for i, z in enumerate(zero) if not z]:
        r = run.runs[i]
        r.state = (native.sample_state(run.state, i) if native
                   else sample_state(run.state, i, sample_ndim, sample_size, host))
        # A fixed budget whose series was not converging fails here, before the iterate
        # is chosen: it hands back its best one, as alone.
        r.status = judged_status(solver, r, eps)[0]
    # A native batched solver keeps a failed sample's last good state itself.
    failed = [r.status not in _KEEPS_LAST and not z and native is None for r, z in zip(run.runs, zero)]
    x = (native or solver).solution(a, b, run.state)
    if any(failed):
        x = merge(xp, failed, run.best_x, x, run.size)
    if any(zero):
        x = merge(xp, [not z for z in zero], x, None, run.size)
    verify = run.settings[0].verify
    # A sample whose single Gram-Schmidt pass cancelled (a native fixed budget) has its
    # residual recomputed, as the unbatched solver does.
    skewed = getattr(run.state, "skewed", None) or [False] * run.size
    need = [not z and run.runs[i].checked is None and (verify or skewed[i]) for i, z in enumerate(zero)]
    if any(need):
        _, trues, floors = batched_true_residual(a, b, x)
        for i in [i for i, n in enumerate(need) if n]:
            if math.isfinite(trues[i]):
                run.runs[i].checked = (trues[i], floors[i])
    x_norms = _backend.to_host(xp, _backend.norm(xp, x))
    view = sample_view(a)
    results = []
    for i, r in enumerate(run.runs):
        x_i = x[i]
        if zero[i]:
            results.append(Result(x_i, Status.CONVERGED, 0, (), 0, 0, 0.0, 0.0, 0.0, solver,
                                  residual_kind="verified", error_estimate=0.0, estimate_reliable=True))
            continue
        r.best_x = x_i if failed[i] else None
        if r.checked is not None:
            r.checked = (x_i, *r.checked)
        b_i = None if b is None else b[i]  # None: a forward fixed point
        results.append(conclude(solver, view, b_i, r, run.settings[i], eps, b_norms[i], x_norm=x_norms[i]))
    return results, x


_KEEPS_LAST = (Status.CONVERGED, Status.BUDGET_SPENT, Status.MAX_STEPS, Status.STOPPED,
               Status.LEAST_SQUARES, Status.ACCURACY_LIMIT)
