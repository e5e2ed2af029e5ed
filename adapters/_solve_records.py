"""What the solves of one ``fixed_point`` call did, batch-wide and per sample: the records both
framework adapters return (no framework imported here)."""

from __future__ import annotations

import dataclasses

import numpy as np

import rbpsolve

__all__ = ["SampleRecords", "SolveDiagnostics"]


@dataclasses.dataclass(frozen=True, eq=False)
class SampleRecords:
    """One solve's records, one entry a sample (host numpy arrays, index = position along
    ``batch_axis``).

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
class SolveDiagnostics:
    """The forward and backward Results of one ``fixed_point`` call and what its policy did;
    each adapter's ``Diagnostics`` subclasses it with its own documentation."""

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
