"""The entry checks of a batched solve and its failure policy."""

from __future__ import annotations

from ._fallback import Fallback
from ._result import Result, SolveError

__all__ = ["check_batch", "run_batched", "BATCHED_SOLVERS"]

# The solvers whose steps run per sample (their scalars reduce per sample through the
# batched namespace; RandomizedNeumann draws one depth a sample; GMRES has its own batched
# implementation, each sample its own Krylov space). The forward solvers follow.
BATCHED_SOLVERS = ("FixedPoint", "Neumann", "CGNE", "LSQR", "RandomizedNeumann", "GMRES")


def check_batch(solver, A, batch_axis) -> int:
    """``batch_axis`` as a non-negative axis of ``A``'s arrays, after checking it and the solver."""
    if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
        raise TypeError(f"batch_axis must be an int (the axis of b that indexes the samples) or None; got {batch_axis!r}")
    ndim = len(A.in_shape)
    if A.in_shape != A.out_shape:
        raise ValueError(
            f"batch_axis needs a square operator (one system a sample); this one maps shape {A.in_shape} "
            f"to {A.out_shape}"
        )
    if not -ndim <= batch_axis < ndim:
        raise ValueError(f"batch_axis={batch_axis} is out of range for arrays of shape {A.in_shape} ({ndim} axes)")
    for member in (solver.solvers if isinstance(solver, Fallback) else (solver,)):
        name = type(member).__name__
        if name not in BATCHED_SOLVERS:
            raise NotImplementedError(
                f"{name} does not solve per sample yet (batch_axis); per-sample solvers: "
                f"{', '.join(BATCHED_SOLVERS)}; or leave batch_axis=None to solve the batch as one system"
            )
    return batch_axis % ndim


def run_batched(solver, A, b, x0, callback, throw, axis: int) -> Result:
    from ._batched_loop import iterate_batched

    xp = A.xp
    if xp.finfo(A.in_space.dtype).bits < 32:
        raise NotImplementedError(
            "batched solves in float16/bfloat16 are not supported yet; cast to float32 first"
        )
    if isinstance(solver, Fallback):
        from ._batched_fallback import run_chain_batched

        result = run_chain_batched(solver, A, b, x0, axis, callback)
    else:
        result = iterate_batched(solver, A, b, x0, axis, callback)
    if throw and not result.ok:
        raise SolveError(result)
    return result
