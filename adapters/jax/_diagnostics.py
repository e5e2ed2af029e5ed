"""What the solves of one :func:`fixed_point` call did, batch-wide and per sample."""

from __future__ import annotations

import dataclasses

import numpy as np

import rbpsolve

__all__ = ["Diagnostics", "SampleRecords"]


@dataclasses.dataclass(frozen=True, eq=False)
class SampleRecords:
    """One solve's records, one entry a sample (host numpy arrays, index = position along
    ``batch_axis``).

    The torch adapter's class of the same name, copied (importing it would import torch).

    Attributes
    ----------
    status : numpy.ndarray of rbpsolve.Status
    num_steps : numpy.ndarray of int
    residual_norm : numpy.ndarray of float
        NaN where a sample has no residual figure.
    error_estimate : numpy.ndarray of float
        An estimate of each sample's ``||x_i - x_i*||`` (NaN where none).
    failed : numpy.ndarray of int
        The indices of the samples whose status is not ok.
    summary : str
        e.g. ``"6 converged, 2 diverged: samples 1, 5"``.
    """

    status: np.ndarray
    num_steps: np.ndarray
    residual_norm: np.ndarray
    error_estimate: np.ndarray
    failed: np.ndarray
    summary: str

    @classmethod
    def of(cls, result):
        """The records of a batched Result (None for an unbatched one, or no Result)."""
        if result is None or result.sample_status is None:
            return None
        failed = np.array([i for i, s in enumerate(result.sample_status) if not s.ok], dtype=np.int64)
        return cls(result.sample_status, result.sample_num_steps, result.sample_residual_norm,
                   result.sample_error_estimate, failed, result.batch_summary)


@dataclasses.dataclass(eq=False)
class Diagnostics:
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

    forward: rbpsolve.Result
    backward: rbpsolve.Result | None = None
    jvp_mode: str | None = None
    backward_calls: int = 0
    batch_axis: int | None = None
    masked: np.ndarray | None = None

    @property
    def forward_history(self) -> tuple:
        return self.forward.history

    @property
    def backward_error_estimate(self) -> float | None:
        """``Result.error_estimate`` of the last backward solve: an estimate of
        ``||z - z*||`` for the adjoint ``z`` (None before any backward)."""
        return None if self.backward is None else self.backward.error_estimate

    @property
    def forward_samples(self) -> SampleRecords | None:
        """The forward solve's per-sample records (None without ``batch_axis``)."""
        return SampleRecords.of(self.forward)

    @property
    def backward_samples(self) -> SampleRecords | None:
        """The last backward solve's per-sample records (None without ``batch_axis`` or
        before any backward)."""
        return SampleRecords.of(self.backward)

    def __repr__(self) -> str:
        fwd = self.forward
        parts = [f"forward={fwd.status.name} in {fwd.num_steps} steps" + _samples(fwd)]
        bwd = self.backward
        if bwd is None:
            parts.append("backward=not run")
        else:
            reliable = "" if bwd.estimate_reliable else ", unreliable"
            residual = "unknown" if bwd.residual_norm is None else f"{bwd.residual_norm:.3g} ({bwd.residual_kind})"
            estimate = "none" if bwd.error_estimate is None else f"{bwd.error_estimate:.3g}"
            parts.append(
                f"backward={bwd.status.name} in {bwd.num_steps} steps, residual {residual}, "
                f"error estimate {estimate}{reliable}" + _samples(bwd)
            )
        if self.masked is not None and len(self.masked):
            parts.append(f"masked samples {', '.join(map(str, self.masked))}")
        return "Diagnostics(" + "; ".join(parts) + ")"


def _samples(result):
    return "" if result.batch_summary is None else f" ({result.batch_summary})"
