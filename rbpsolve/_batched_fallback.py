"""A :class:`~rbpsolve.Fallback` chain on a batch: each member re-solves only the samples
that every member before it failed on, keeping the others' answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import _backend
from ._batched import merge
from ._batched_conclude import batched_true_residual
from ._batched_loop import iterate_batched
from ._batched_result import combine
from ._result import Result, Status

__all__ = ["run_chain_batched"]


def run_chain_batched(chain, A, b, x0, axis: int, callback) -> Result:
    """Each member on the samples still failing (products stay batched: the others ride
    along on zeros). A sample keeps the first ok answer; a sample every member failed on
    gets its best attempt, the smallest verified residual ``norm(b_i - A x_i)``.

    ``attempts`` holds each member's batch Result; ``info["sample_fallback_index"]`` the
    member each sample's answer comes from.
    """
    batch = A.in_shape[axis]
    attempts, chosen = [], [None] * batch
    pending = [True] * batch
    for s in chain.solvers:
        result = iterate_batched(s, A, b, x0, axis, callback, only=pending)
        attempts.append(_mark_skipped(result, pending))
        samples = result.info["sample_results"]
        for i in range(batch):
            if pending[i] and (samples[i].ok or samples[i].status is Status.STOPPED):
                chosen[i], pending[i] = len(attempts) - 1, False
        if not any(pending) or any(samples[i].status is Status.STOPPED for i in range(batch)):
            break
    if any(pending):
        _choose_best(A, b, axis, attempts, chosen, pending)
    return _assemble(A, axis, chain, attempts, chosen)


def _choose_best(A, b, axis, attempts, chosen, pending) -> None:
    """The attempt with the smallest verified residual, for each sample no member solved
    (one batched product an attempt to verify them)."""
    from ._batched import per_sample

    xp = A.xp
    a = per_sample(A, axis)
    moved_b = b if axis == 0 else xp.moveaxis(b, axis, 0)
    residuals = []
    for attempt in attempts:
        x = attempt.x if axis == 0 else xp.moveaxis(attempt.x, axis, 0)
        finite = xp.isfinite(x)
        whole = _backend.to_host(a.xp, xp.all(finite, axis=tuple(range(1, x.ndim))))
        norms = batched_true_residual(a, moved_b, xp.where(finite, x, 0.0))[1]
        residuals.append([n if ok and math.isfinite(n) else math.inf for n, ok in zip(norms, whole)])
    for i in range(len(chosen)):
        if pending[i]:  # every member ran on it and failed
            chosen[i] = min(range(len(attempts)), key=lambda j: residuals[j][i])


def _assemble(A, axis, chain, attempts, chosen) -> Result:
    """The chain's batch Result: each sample's answer from its chosen attempt."""
    xp = A.xp
    batch = len(chosen)
    moved = [a.x if axis == 0 else xp.moveaxis(a.x, axis, 0) for a in attempts]
    x = moved[0]
    for j in range(1, len(attempts)):
        take = [chosen[i] == j for i in range(batch)]
        if any(take):
            x = merge(xp, take, moved[j], x, batch)
    if axis != 0:
        x = xp.moveaxis(x, 0, axis)
    samples = [attempts[chosen[i]].info["sample_results"][i] for i in range(batch)]
    counter = _Counts(sum(a.num_vjp for a in attempts), sum(a.num_jvp for a in attempts))
    result = combine(samples, x, chain.solvers[chosen[0]] if len(set(chosen)) == 1 else chain, counter, axis,
                     attempts[0].b_norm)
    info = dict(result.info)
    info["sample_fallback_index"] = np.array(chosen, dtype=np.int64)
    return dataclasses.replace(result, attempts=tuple(attempts), info=info)


def _mark_skipped(result: Result, solved) -> Result:
    """A member's Result with the samples it did not solve (an earlier member had) shown as
    such: status None, no steps, no figures."""
    if all(solved):
        return result
    status = result.sample_status.copy()
    steps = result.sample_num_steps.copy()
    residual, estimate = result.sample_residual_norm.copy(), result.sample_error_estimate.copy()
    for i, s in enumerate(solved):
        if not s:
            status[i], steps[i], residual[i], estimate[i] = None, 0, np.nan, np.nan
    return dataclasses.replace(result, sample_status=status, sample_num_steps=steps, sample_residual_norm=residual,
                               sample_error_estimate=estimate)


class _Counts:
    def __init__(self, vjp, jvp):
        self.vjp, self.jvp = vjp, jvp
