"""What a failed solve of :func:`fixed_point` does: the ``on_failure`` policies.

The torch adapter's policies without its per-sample one (``"mask"`` needs ``batch_axis``,
which this adapter does not have yet): ``"raise"``, ``"warn"`` and an
:class:`rbpsolve.Fallback` chain that adds solvers and then raises.
"""

from __future__ import annotations

import sys
import warnings

import jax.numpy as jnp

import rbpsolve

__all__ = ["ConvergenceWarning", "POLICIES", "policy", "apply"]

POLICIES = ("raise", "warn")


class ConvergenceWarning(UserWarning):
    """A forward or backward solve failed and ``on_failure="warn"`` used its best iterate.

    Not the class of :mod:`rbpsolve.adapters.torch` (importing it would import torch);
    filter both, or ``UserWarning``, to catch either adapter's.
    """


def _chain(first, extra):
    solvers = first.solvers if isinstance(first, rbpsolve.Fallback) else (first,)
    return first if not extra else rbpsolve.Fallback(*solvers, *extra)


def policy(on_failure, forward, backward):
    """``(policy, forward chain, backward chain)`` from ``on_failure`` and the two solvers."""
    if isinstance(on_failure, rbpsolve.Fallback):
        fwd = tuple(s for s in on_failure.solvers if isinstance(s, rbpsolve.AbstractForwardSolver))
        bwd = tuple(s for s in on_failure.solvers if isinstance(s, rbpsolve.AbstractSolver))
        return "raise", _chain(forward, fwd), _chain(backward, bwd)
    if isinstance(on_failure, str) and on_failure in POLICIES:
        return on_failure, forward, backward
    if isinstance(on_failure, str) and on_failure == "mask":
        raise ValueError(
            "on_failure='mask' drops failed samples of a batch, and the JAX adapter has no batch_axis yet; "
            "use 'raise', 'warn' or an rbpsolve.Fallback (or the torch adapter's fixed_point for per-sample solves)"
        )
    raise ValueError(
        f"on_failure must be 'raise', 'warn' or an rbpsolve.Fallback of solvers to try next; got {on_failure!r}"
    )


def apply(policy, result, which):
    """Apply the failure policy to ``result``.

    Raises :class:`rbpsolve.SolveError` for a failure under ``"raise"``, and under
    ``"warn"`` where the best iterate is not finite (its NaNs would reach every gradient).
    """
    if result.ok:
        return
    if policy == "warn" and bool(jnp.all(jnp.isfinite(result.x))):
        warnings.warn(
            f"rbpsolve: the {which} solve ended {result.status.name} after {result.num_steps} steps; "
            f"using its best iterate. {result.status.value}",
            ConvergenceWarning,
            stacklevel=_outside_stacklevel(),
        )
        return
    raise rbpsolve.SolveError(result)


def _outside_stacklevel():
    """The ``stacklevel``, for a warning issued in :func:`apply`, of the first frame outside
    rbpsolve and jax: a backward pass runs under a depth of JAX
    frames that no fixed number can skip, and the warning should point at the user's line."""
    frame, level = sys._getframe(2), 2  # level 1 is apply itself
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("rbpsolve", "jax", "jaxlib"):
        frame, level = frame.f_back, level + 1
    return level
