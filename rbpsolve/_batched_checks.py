"""The entry checks of a batched solve and its failure policy."""

from __future__ import annotations

import numpy as np

from . import _backend
from ._fallback import Fallback
from ._result import Result, SolveError, Status

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
        if name == "GMRES" and _backend.is_lazy(A.xp):
            # Its batched basis is read and written at (sample, row) pairs: two index
            # arrays at once, which dask's indexing does not support.
            raise NotImplementedError(
                "GMRES does not solve per sample (batch_axis) on dask arrays: dask cannot index its batched Krylov "
                "basis; use CGNE or LSQR per sample, or GMRES with batch_axis=None on each sample"
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
    batch = A.in_shape[axis] if b is not None else x0.shape[axis]
    if batch == 0:
        return _empty(solver, A, b, x0, axis)
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


def _empty(solver, A, b, x0, axis: int) -> Result:
    """A batch of no samples: nothing to solve (x is empty, every sample of none ok)."""
    like = x0 if b is None else b
    x = A.xp.zeros(A.in_shape if b is not None else like.shape, dtype=like.dtype, device=A.device)
    return Result(x, Status.CONVERGED, 0, (), 0, 0, 0.0 if b is not None else None, 0.0, 0.0, solver,
                  info={"batch_size": 0, "batch_axis": axis, "sample_results": ()},
                  residual_kind="verified" if b is not None else None, error_estimate=0.0, estimate_reliable=True,
                  sample_status=np.array([], dtype=object), sample_num_steps=np.zeros(0, dtype=np.int64),
                  sample_residual_norm=np.zeros(0), sample_error_estimate=np.zeros(0))
