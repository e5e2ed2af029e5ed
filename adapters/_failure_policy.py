"""The ``on_failure`` policies of :func:`fixed_point`, shared by the torch and JAX adapters (no
framework imported here: finiteness is read through the array API).

``"raise"`` and ``"warn"`` judge the batch as a whole (its status is ok only when every sample's
is); ``"mask"`` judges each sample and drops the failed ones from the gradient; an
:class:`rbpsolve.Fallback` adds solvers to the chains and then raises. Each adapter keeps its own
``ConvergenceWarning`` class, the check of ``batch_axis`` against its own arrays, and where its
warnings point.
"""

from __future__ import annotations

import warnings

import array_api_compat
import numpy as np

import rbpsolve

__all__ = ["POLICIES", "policy", "check_batch_axis_type", "check_axis_range", "check_batched_solver",
           "batched_call", "failed_samples", "apply"]

POLICIES = ("raise", "warn", "mask")


def _chain(first, extra):
    solvers = first.solvers if isinstance(first, rbpsolve.Fallback) else (first,)
    return first if not extra else rbpsolve.Fallback(*solvers, *extra)


def policy(on_failure, forward, backward, batch_axis=None):
    """``(policy, forward chain, backward chain)`` from ``on_failure`` and the two solvers."""
    if isinstance(on_failure, rbpsolve.Fallback):
        fwd = tuple(s for s in on_failure.solvers if isinstance(s, rbpsolve.AbstractForwardSolver))
        bwd = tuple(s for s in on_failure.solvers if isinstance(s, rbpsolve.AbstractSolver))
        return "raise", _chain(forward, fwd), _chain(backward, bwd)
    if isinstance(on_failure, str) and on_failure in POLICIES:
        if on_failure == "mask" and batch_axis is None:
            raise ValueError(
                "on_failure='mask' drops failed samples from the gradient, so it needs batch_axis (the axis of h0 "
                "that indexes the samples, e.g. batch_axis=0); without a batch use 'raise' or 'warn'"
            )
        return on_failure, forward, backward
    raise ValueError(
        "on_failure must be 'raise', 'warn' or an rbpsolve.Fallback of solvers to try next, or 'mask' with "
        f"batch_axis (the policies: 'raise', 'warn', 'mask'); got {on_failure!r}"
    )


def check_batch_axis_type(batch_axis):
    """``batch_axis`` if it is an int (not a bool) or None; a TypeError naming the fix otherwise."""
    if batch_axis is not None and (isinstance(batch_axis, bool) or not isinstance(batch_axis, int)):
        raise TypeError(
            "batch_axis must be an int, the axis of h0 that indexes the samples (0 for h0 of shape (batch, n)), "
            f"or None to solve the whole state as one system; got {batch_axis!r} ({type(batch_axis).__name__})"
        )
    return batch_axis


def check_axis_range(batch_axis, shape) -> int:
    """``batch_axis`` as a non-negative axis of a state of ``shape``; a ValueError naming the fix otherwise."""
    ndim = len(shape)
    if ndim == 0:
        raise ValueError("batch_axis needs an axis of h0 that indexes the samples, but h0 is 0-d; "
                         "give h0 a batch axis or leave batch_axis=None")
    if not -ndim <= batch_axis < ndim:
        raise ValueError(
            f"batch_axis={batch_axis} is out of range for h0 of shape {tuple(shape)} ({ndim} axes): use an axis "
            f"in [{-ndim}, {ndim - 1}] that indexes the samples, e.g. 0 for a batch-first state"
        )
    return batch_axis % ndim


def _refusal(axis, which, err):
    return NotImplementedError(
        f"fixed_point(batch_axis={axis}): the {which} solver cannot solve per sample: {err}. Pass a "
        f"{which} solver that can (or a chain of them), or leave batch_axis=None"
    )


def check_batched_solver(solver, axis):
    """Refuse at the call, not at the backward pass, a backward solver (or chain) that the
    core cannot run per sample.

    Rather than keep its own list of what the core supports (which changes), the adapter
    asks the core: a batched solve of a 1 x 1 system with ``g = 0`` (every sample solved
    before any step) runs the core's entry checks and nothing else.
    """
    if axis is None:
        return
    # Whether the core batches a solver depends on its kind (and a chain's members'), not
    # on its settings: one probe a kind (about a millisecond) serves every later call.
    members = solver.solvers if isinstance(solver, rbpsolve.Fallback) else (solver,)
    key = (isinstance(solver, rbpsolve.Fallback), tuple(type(s) for s in members))
    if key not in _REFUSED:
        like = np.zeros((1, 1))
        J = rbpsolve.JacobianOperator(lambda u: u, lambda v: v, like=like)
        try:
            rbpsolve.solve_adjoint(J, like, solver, batch_axis=0, throw=False)
            _REFUSED[key] = None
        except NotImplementedError as err:
            _REFUSED[key] = err
    err = _REFUSED[key]
    if err is not None:
        raise _refusal(axis, "backward", err) from err


_REFUSED: dict = {}  # the probe's answer a kind of backward solver: None, or the core's error


def batched_call(call, axis, which):
    """``call()``, with the core's NotImplementedError for a batched solve named for the adapter."""
    try:
        return call()
    except NotImplementedError as err:
        if axis is None:
            raise
        raise _refusal(axis, which, err) from err


def _error(result, which):
    err = rbpsolve.SolveError(result)
    summary = result.batch_summary
    if summary is not None and summary not in str(err):
        # Name the failing samples: one bad sample in a batch is a different fix from a bad model.
        err.args = (f"{err.args[0]} (the {which} solve, per sample: {summary})",)
    return err


def failed_samples(result):
    """The indices of a batched Result's samples whose status is not ok."""
    return tuple(int(i) for i, s in enumerate(result.sample_status) if not s.ok)


def _finite(x, axis=None, samples=None):
    """Whether ``x`` (or its ``samples`` along ``axis``) is finite; one host read."""
    xp = array_api_compat.array_namespace(x)
    if samples is not None:
        x = xp.take(x, xp.asarray(list(samples), device=array_api_compat.device(x)), axis=axis)
    return bool(xp.all(xp.isfinite(x)))


def apply(policy, result, which, *, warning, stacklevel, axis=None):
    """Apply the failure policy to ``result``; return the indices of the samples it
    masked (``policy == "mask"``), else an empty tuple. ``warning`` is the adapter's
    ``ConvergenceWarning``; ``stacklevel`` counts from the caller of this function.

    Raises :class:`rbpsolve.SolveError` for a failure under ``"raise"``, and under
    ``"warn"`` and ``"mask"`` where the iterate handed on would be non-finite (a NaN in
    one sample's output or adjoint poisons every sample's gradient).
    """
    if result.ok:
        return ()
    if policy == "mask":
        failed = failed_samples(result)
        # The failed samples' adjoints are zeroed, so only their forward outputs must be finite.
        if which == "forward" and not _finite(result.x, axis, failed):
            raise _error(result, which)
        warnings.warn(
            f"rbpsolve: the {which} solve failed on samples {', '.join(map(str, failed))} "
            f"({result.batch_summary}); their gradient contribution is set to zero. {_status_words(result)}",
            warning,
            stacklevel=stacklevel + 1,
        )
        return failed
    if policy == "warn" and _finite(result.x):
        per_sample = "" if result.batch_summary is None else f" ({result.batch_summary})"
        warnings.warn(
            f"rbpsolve: the {which} solve ended {result.status.name} after {result.num_steps} steps{per_sample}; "
            f"using its best iterate. {result.status.value}",
            warning,
            stacklevel=stacklevel + 1,
        )
        return ()
    raise _error(result, which)


def _status_words(result):
    return "; ".join(sorted({s.value for s in result.sample_status if not s.ok}))
