"""What a failed solve of :func:`fixed_point` does: the ``on_failure`` policies, and the
checks of ``batch_axis`` they depend on.

The torch adapter's policies (``adapters/torch/_policy.py``), ported: ``"raise"`` and
``"warn"`` judge the batch as a whole (its status is ok only when every sample's is);
``"mask"`` (eager, with ``batch_axis``) judges each sample and drops the failed ones from
the gradient; an :class:`rbpsolve.Fallback` adds solvers to the chains and then raises.
"""

from __future__ import annotations

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import rbpsolve

__all__ = ["ConvergenceWarning", "POLICIES", "policy", "apply", "check_batch_axis", "check_batched_solver",
           "batched_call"]

POLICIES = ("raise", "warn", "mask")


class ConvergenceWarning(UserWarning):
    """A forward or backward solve failed and ``on_failure="warn"`` used its best iterate,
    or ``on_failure="mask"`` dropped the failed samples from the gradient.

    Not the class of :mod:`rbpsolve.adapters.torch` (importing it would import torch);
    filter both, or ``UserWarning``, to catch either adapter's.
    """


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
        f"batch_axis; got {on_failure!r}"
    )


def check_batch_axis(batch_axis, h0):
    """``batch_axis`` as a non-negative axis of ``h0`` (None stays None); ``h0`` must then be
    one jax array, not a pytree (its axes are the samples' axis)."""
    if batch_axis is None:
        return None
    if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
        raise TypeError(
            "batch_axis must be an int, the axis of h0 that indexes the samples (0 for h0 of shape (batch, n)), "
            f"or None to solve the whole state as one system; got {batch_axis!r} ({type(batch_axis).__name__})"
        )
    if not isinstance(h0, jax.Array):
        raise TypeError(
            f"batch_axis needs h0 to be a single jax.Array whose axis {batch_axis} indexes the samples; got a "
            f"{type(h0).__name__} (a pytree state has no one batch axis). Stack the samples' states into one "
            "array, or leave batch_axis=None to solve the whole pytree as one system"
        )
    ndim = h0.ndim
    if ndim == 0:
        raise ValueError("batch_axis needs an axis of h0 that indexes the samples, but h0 is 0-d; "
                         "give h0 a batch axis or leave batch_axis=None")
    if not -ndim <= batch_axis < ndim:
        raise ValueError(
            f"batch_axis={batch_axis} is out of range for h0 of shape {tuple(h0.shape)} ({ndim} axes): use an axis "
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

    As the torch adapter: the core is asked, by a batched solve of a 1 x 1 numpy system
    with ``g = 0`` (every sample solved before any step), which runs its entry checks and
    nothing else; one probe a kind of solver.
    """
    if axis is None:
        return
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


def apply(policy, result, which, axis=None):
    """Apply the failure policy to ``result``; return the indices of the samples it
    masked (``policy == "mask"``), else an empty tuple.

    Raises :class:`rbpsolve.SolveError` for a failure under ``"raise"``, and under
    ``"warn"`` and ``"mask"`` where the iterate handed on would be non-finite (a NaN in
    one sample's output or adjoint poisons every sample's gradient).
    """
    if result.ok:
        return ()
    if policy == "mask":
        failed = failed_samples(result)
        # The failed samples' adjoints are zeroed, so only their forward outputs must be finite.
        if which == "forward" and not bool(jnp.all(jnp.isfinite(jnp.take(result.x, jnp.array(failed), axis=axis)))):
            raise _error(result, which)
        warnings.warn(
            f"rbpsolve: the {which} solve failed on samples {', '.join(map(str, failed))} "
            f"({result.batch_summary}); their gradient contribution is set to zero. {_status_words(result)}",
            ConvergenceWarning,
            stacklevel=_outside_stacklevel(),
        )
        return failed
    if policy == "warn" and bool(jnp.all(jnp.isfinite(result.x))):
        per_sample = "" if result.batch_summary is None else f" ({result.batch_summary})"
        warnings.warn(
            f"rbpsolve: the {which} solve ended {result.status.name} after {result.num_steps} steps{per_sample}; "
            f"using its best iterate. {result.status.value}",
            ConvergenceWarning,
            stacklevel=_outside_stacklevel(),
        )
        return ()
    raise _error(result, which)


def _status_words(result):
    return "; ".join(sorted({s.value for s in result.sample_status if not s.ok}))


def _outside_stacklevel():
    """The ``stacklevel``, for a warning issued in :func:`apply`, of the first frame outside
    rbpsolve and jax: a backward pass runs under a depth of JAX
    frames that no fixed number can skip, and the warning should point at the user's line."""
    frame, level = sys._getframe(2), 2  # level 1 is apply itself
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("rbpsolve", "jax", "jaxlib"):
        frame, level = frame.f_back, level + 1
    return level
