"""What the solves of one :func:`fixed_point` call did, batch-wide and per sample."""

from __future__ import annotations

from .._solve_records import SampleRecords, SolveDiagnostics

__all__ = ["Diagnostics", "SampleRecords"]


class Diagnostics(SolveDiagnostics):  # no decorator: the base's fields, __init__ and __repr__ stay
    """What the solves of one :func:`fixed_point` call did; filled in by ``loss.backward()``.

    Attributes
    ----------
    forward : rbpsolve.Result
        The forward solve: ``history`` is ``||h_{k+1} - h_k||`` per step (Picard; the
        fixed-point residual for Anderson), the curve of Fig. 1c/3c of Liao et al.;
        ``info["num_evaluations"]`` counts calls of ``f`` without a graph.
    backward : rbpsolve.Result or None
        The adjoint solve ``(I - J^T) z = dL/dh*`` of the last backward pass through this
        call (None before any); ``num_vjp`` and ``num_jvp`` are its products,
        ``error_estimate`` an estimate of the adjoint's error (also
        ``backward_error_estimate``, and in ``repr``) and ``attempts`` the failed solvers
        of a fallback chain. Under ``on_failure="mask"`` its ``x`` is the adjoint before
        the failed samples were zeroed.
    jvp_mode : str or None
        How the backward's JVPs were made (``"double_backward"`` or ``"forward"``, after
        any fallback); None when the backward solver needed none.
    backward_calls : int
        How many backward passes went through this call.
    batch_axis : int or None
        The axis of the state that indexes the samples (non-negative), or None for an
        unbatched call.
    masked : numpy.ndarray of int or None
        Under ``on_failure="mask"``: the samples whose gradient contribution was set to
        zero, those whose forward solve failed and (after ``loss.backward()``) those whose
        last backward solve failed, in increasing order. None under the other policies.
    """
