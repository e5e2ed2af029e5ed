"""A batch of forward fixed points, ``fixed_point(F, h0, solver, batch_axis=k)``: one
independent ``h_i* = F(h*)_i`` a sample (a deep-equilibrium model's forward pass).

The batched loop (:mod:`rbpsolve._batched_loop`) runs it as it runs a batch of linear
systems, with ``b = None`` as the unbatched loop does (:func:`rbpsolve._loop.iterate`): the
solver's own step on the whole batch (one evaluation of ``F`` a step for every sample,
per-sample norms through :class:`~rbpsolve._backend.PerSample`), each sample tested against
its own scale ``max(rtol * norm(F(h_k)_i), atol)`` (the step's ``StepReport.scale``),
judged, decided and concluded by the unbatched code, stopped samples frozen and poisoned
ones zeroed. Only the set-up differs from a linear batch: no right-hand side to scale, no
sample solved before the first step.
"""

from __future__ import annotations

import dataclasses

from ._batched import per_sample
from ._batched_conclude import conclude_samples
from ._batched_loop import _Batch, _run_deferred, _run_eager, _unfinished_status
from ._batched_result import _root_sum_squares, combine
from ._precision import default_rtol, product_eps
from ._result import Result
from ._space import ProductCounter
from ._steps import Run, settings

__all__ = ["iterate_forward_batched"]


def iterate_forward_batched(solver, F, h0, axis: int, callback=None) -> Result:
    """Iterate ``F`` (a :class:`~rbpsolve._forward._base.Map` of the whole batch) from ``h0``
    with every slice along ``axis`` an independent fixed point.

    ``Result.info["num_evaluations"]`` counts calls of ``F``, each on the whole batch: one a
    step, however many samples are still iterating.
    """
    xp = F.xp
    counter = ProductCounter()
    a = per_sample(F, axis).with_counter(counter)
    # The loop's own copy, batch first: the caller's h0 is never handed to F.
    h0 = xp.asarray(xp.moveaxis(h0, axis, 0) if axis != 0 else h0, copy=True)
    batch = a.in_shape[0]
    eps = product_eps(a)
    rtol = default_rtol(eps) if solver.rtol is None else solver.rtol
    atol = float(solver.atol)
    # As the unbatched forward loop: the tolerance is atol until a step reports its scale.
    s = settings(solver, atol, rtol, atol, False)
    run = _Batch(solver, a, None, batch, [Run(None) for _ in range(batch)], [s] * batch, [True] * batch, axis=axis)
    deferred = solver.fixed_budget and callback is None
    run.state = solver.init(a, None, h0, atol, deferred=deferred)
    run.best_x = solver.solution(a, None, run.state)
    (_run_deferred if deferred else _run_eager)(run, callback)
    for r in run.runs:
        r.status = r.status or _unfinished_status(solver)
    results, x = conclude_samples(run, eps, [None] * batch, [False] * batch)
    if axis != 0:
        x = xp.moveaxis(x, 0, axis)
    # The scale of the batch's test: each sample's norm(F(h_k)_i) at its last test.
    result = combine(results, x, solver, counter, axis, _root_sum_squares([r.b_norm for r in results]))
    info = dict(result.info, num_evaluations=counter.evaluations)
    return dataclasses.replace(result, info=info)
