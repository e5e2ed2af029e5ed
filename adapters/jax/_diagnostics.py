"""What the solves of one :func:`fixed_point` call did."""

from __future__ import annotations

import dataclasses

import rbpsolve

__all__ = ["Diagnostics"]


@dataclasses.dataclass(eq=False)
class Diagnostics:
    """What the solves of one :func:`fixed_point` call did; filled in by the backward pass.

    JAX returns gradients, not state: this object, which the caller holds (return it as
    ``has_aux`` output of ``jax.grad``/``jax.vjp``, or keep it in a variable), is how
    the backward solve's Result reaches the user. The backward runs eagerly, so
    ``backward`` is set when the cotangent has been pulled back through this call.

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
        solvers of a fallback chain.
    jvp_mode : str or None
        ``"linearize"`` when the backward solver asked for JVPs (``jax.linearize``), None
        when it needed none.
    backward_calls : int
        How many backward passes went through this call.
    """

    forward: rbpsolve.Result
    backward: rbpsolve.Result | None = None
    jvp_mode: str | None = None
    backward_calls: int = 0

    @property
    def forward_history(self) -> tuple:
        return self.forward.history

    @property
    def backward_error_estimate(self) -> float | None:
        """``Result.error_estimate`` of the last backward solve: an estimate of
        ``||z - z*||`` for the adjoint ``z`` (None before any backward)."""
        return None if self.backward is None else self.backward.error_estimate

    def __repr__(self) -> str:
        fwd = self.forward
        parts = [f"forward={fwd.status.name} in {fwd.num_steps} steps"]
        bwd = self.backward
        if bwd is None:
            parts.append("backward=not run")
        else:
            reliable = "" if bwd.estimate_reliable else ", unreliable"
            residual = "unknown" if bwd.residual_norm is None else f"{bwd.residual_norm:.3g} ({bwd.residual_kind})"
            estimate = "none" if bwd.error_estimate is None else f"{bwd.error_estimate:.3g}"
            parts.append(
                f"backward={bwd.status.name} in {bwd.num_steps} steps, residual {residual}, "
                f"error estimate {estimate}{reliable}"
            )
        return "Diagnostics(" + "; ".join(parts) + ")"
