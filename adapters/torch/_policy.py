"""What a failed solve of :func:`fixed_point` does: the ``on_failure`` policies (shared with the
JAX adapter, :mod:`rbpsolve.adapters._failure_policy`), this adapter's warning class and its check
of ``batch_axis`` against a tensor."""

from __future__ import annotations

from .. import _failure_policy as _shared
from .._failure_policy import POLICIES, batched_call, check_batched_solver, policy

__all__ = ["ConvergenceWarning", "POLICIES", "policy", "apply", "check_batch_axis", "check_batched_solver",
           "batched_call"]


class ConvergenceWarning(UserWarning):
    """A forward or backward solve failed and ``on_failure="warn"`` used its best iterate,
    or ``on_failure="mask"`` dropped the failed samples from the gradient."""


def check_batch_axis(batch_axis, h0=None):
    """``batch_axis`` as a non-negative axis of ``h0`` (None stays None); without ``h0``
    only its type is checked (a layer's setting, before it sees a state)."""
    if _shared.check_batch_axis_type(batch_axis) is None or h0 is None:
        return batch_axis
    return _shared.check_axis_range(batch_axis, tuple(h0.shape))


def apply(policy, result, which, stacklevel, axis=None):
    """:func:`rbpsolve.adapters._failure_policy.apply` with this adapter's warning, pointing
    ``stacklevel`` frames above the caller."""
    return _shared.apply(policy, result, which, warning=ConvergenceWarning, stacklevel=stacklevel + 1, axis=axis)
