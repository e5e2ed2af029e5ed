"""The entry checks of a batched solve and its failure policy."""

from __future__ import annotations

from ._fallback import Fallback
from ._result import Result, SolveError

__all__ = ["check_batch", "run_batched", "BATCHED_SOLVERS"]

# The solvers whose steps run per sample (their scalars reduce per sample through the
# batched namespace; RandomizedNeumann draws one depth a sample; GMRES has its own batched
# implementation, each sample its own Krylov space; Picard and Anderson solve forward).
BATCHED_SOLVERS = ("FixedPoint", "Neumann", "CGNE", "LSQR", "RandomizedNeumann", "GMRES", "Picard", "Anderson")


def check_batch(solver, A, batch_axis, *, array: str = "b") -> int:
    """``batch_axis`` as a non-negative axis of ``A``'s arrays, after checking it and the solver.

    ``A`` is an operator, or a forward map (:class:`~rbpsolve._forward._base.Map`, which maps
    a state to a state: square by construction); ``array`` names the user's array whose
    axis it is (``"b"``, ``"h0"``).
    """
    if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
        raise TypeError(
            f"batch_axis must be an int (the axis of {array} that indexes the samples) or None; got {batch_axis!r}"
        )
    shape = getattr(A, "out_shape", A.in_shape)  # b's shape (a forward map: h0's)
    ndim = len(shape)
    if not -ndim <= batch_axis < ndim:
        raise ValueError(f"batch_axis={batch_axis} is out of range for {array} of shape {shape} ({ndim} axes)")
    axis = batch_axis % ndim
    # A rectangular A (LSQR, CGNE: one least-squares problem a sample) needs the batch on
    # the same axis, of the same length, of x and b.
    if len(A.in_shape) != ndim or A.in_shape[axis] != shape[axis]:
        raise ValueError(
            f"batch_axis={batch_axis} needs the samples on that axis of both x and b, but A maps shape {A.in_shape} "
            f"to {shape}; lay out both with the batch on one axis"
        )
    for member in (solver.solvers if isinstance(solver, Fallback) else (solver,)):
        name = type(member).__name__
        if name not in BATCHED_SOLVERS:
            raise NotImplementedError(
                f"{name} does not solve per sample yet (batch_axis); per-sample solvers: "
                f"{', '.join(BATCHED_SOLVERS)}; or leave batch_axis=None to solve the batch as one system"
            )
    return axis


def run_batched(solver, A, b, x0, callback, throw, axis: int) -> Result:
    """The batched solve of ``A x = b``, or with ``b = None`` of the fixed points of the map
    ``A`` from ``x0`` (``fixed_point``)."""
    from ._batched_forward import iterate_forward_batched
    from ._batched_loop import iterate_batched

    xp = A.xp
    if xp.finfo(A.in_space.dtype).bits < 32:
        raise NotImplementedError(
            "batched solves in float16/bfloat16 are not supported yet; cast to float32 first"
        )
    if isinstance(solver, Fallback):
        from ._batched_fallback import run_chain_batched

        result = run_chain_batched(solver, A, b, x0, axis, callback)
    elif b is None:
        result = iterate_forward_batched(solver, A, x0, axis, callback)
    else:
        result = iterate_batched(solver, A, b, x0, axis, callback)
    if throw and not result.ok:
        raise SolveError(result)
    return result
