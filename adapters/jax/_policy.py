"""What a failed solve of :func:`fixed_point` does: the ``on_failure`` policies (shared with the
torch adapter, :mod:`rbpsolve.adapters._failure_policy`), this adapter's warning class, its check of
``batch_axis`` against a jax array, and warnings that point past JAX's frames at the user's line.
"""

from __future__ import annotations

import sys

import jax

from .. import _failure_policy as _shared
from .._failure_policy import POLICIES, batched_call, check_batched_solver, failed_samples, policy

__all__ = ["ConvergenceWarning", "POLICIES", "policy", "apply", "check_batch_axis", "check_batched_solver",
           "batched_call", "failed_samples"]


class ConvergenceWarning(UserWarning):
    """A forward or backward solve failed and ``on_failure="warn"`` used its best iterate,
    or ``on_failure="mask"`` dropped the failed samples from the gradient.

    Not the class of :mod:`rbpsolve.adapters.torch` (importing it would import torch);
    filter both, or ``UserWarning``, to catch either adapter's.
    """


def check_batch_axis(batch_axis, h0):
    """``batch_axis`` as a non-negative axis of ``h0`` (None stays None); ``h0`` must then be
    one jax array, not a pytree (its axes are the samples' axis)."""
    if _shared.check_batch_axis_type(batch_axis) is None:
        return None
    if not isinstance(h0, jax.Array):
        raise TypeError(
            f"batch_axis needs h0 to be a single jax.Array whose axis {batch_axis} indexes the samples; got a "
            f"{type(h0).__name__} (a pytree state has no one batch axis). Stack the samples' states into one "
            "array, or leave batch_axis=None to solve the whole pytree as one system"
        )
    return _shared.check_axis_range(batch_axis, tuple(h0.shape))


def apply(policy, result, which, axis=None):
    """:func:`rbpsolve.adapters._failure_policy.apply` with this adapter's warning, pointing at
    the first frame outside rbpsolve and jax."""
    return _shared.apply(policy, result, which, warning=ConvergenceWarning, stacklevel=_outside_stacklevel(),
                         axis=axis)


def _outside_stacklevel():
    """The ``stacklevel``, for a warning issued in :func:`apply`, of the first frame outside
    rbpsolve and jax: a backward pass runs under a depth of JAX
    frames that no fixed number can skip, and the warning should point at the user's line."""
    frame, level = sys._getframe(2), 2  # level 1 is apply itself
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("rbpsolve", "jax", "jaxlib"):
        frame, level = frame.f_back, level + 1
    return level
