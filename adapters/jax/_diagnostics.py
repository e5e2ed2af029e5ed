"""What the solves of one :func:`fixed_point` call did, batch-wide and per sample."""

from __future__ import annotations

from .._solve_records import SampleRecords, SolveDiagnostics

__all__ = ["Diagnostics", "SampleRecords"]


class Diagnostics(SolveDiagnostics):  # no decorator: the base's fields, __init__ and __repr__ stay
    """What the solves of one :func:`fixed_point` call did; filled in by the backward pass.

    JAX returns gradients, not state: this object, which the caller holds (return it as
    ``has_aux`` output of ``jax.grad``/``jax.vjp``, or keep it in a variable), is how
    the backward solve's Result reaches the user. The backward runs eagerly, so
    ``backward`` is set when the cotangent has been pulled back through this call.
    With ``batch_axis`` both Results are batched (``Result.sample_status`` and the other
    per-sample fields), on the state's own shape rather than raveled.

    Attributes
    ----------
    forward : rbpsolve.Result
        The forward solve, on the flat state (``jax.flatten_util.ravel_pytree`` order):
        ``history`` is ``||h_{k+1} - h_k||`` per step (Picard; the fixed-point residual
        for Anderson); ``info["num_evaluations"]`` counts calls of ``f``.
    backward : rbpsolve.Result or None
        The adjoint solve ``(I - J^T) z = dL/dh*`` of the last backward pass through this
        call (None before any); ``num_vjp`` and ``num_jvp`` are its products,
        ``error_estimate`` an estimate of the adjoint's error and ``attempts`` the failed
        solvers of a fallback chain. Under ``on_failure="mask"`` its ``x`` is the adjoint
        before the failed samples were zeroed.
    jvp_mode : str or None
        ``"linearize"`` when the backward solver asked for JVPs (``jax.linearize``), None
        when it needed none.
    backward_calls : int
        How many backward passes went through this call.
    batch_axis : int or None
        The axis of the state that indexes the samples (non-negative), or None for an
        unbatched call.
    masked : numpy.ndarray of int or None
        Under ``on_failure="mask"``: the samples whose gradient contribution was set to
        zero, those whose forward solve failed and (after a backward pass) those whose
        last backward solve failed, in increasing order. None under the other policies.
    """
