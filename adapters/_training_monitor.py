r"""A training-time monitor: is the adjoint system about to become unsolvable?

Framework-neutral (it reads :class:`rbpsolve.Result` objects and array-API norms): the torch
and JAX adapters each subclass :class:`TrainingMonitor` with their own warning class.

Every training step's :func:`fixed_point` call already measured what matters: the forward
iteration's rate of convergence (for Picard, an estimate of ``rho(J)`` at ``h*``, the rate the
series backward shares) and the backward's error estimate. :class:`TrainingMonitor` keeps
them, one record a step, from host scalars the solves computed anyway (one more: ``||z||``),
and warns *before* the backward fails: when the rate nears 1, when its trend will reach 1
soon, or when the backward's relative error estimate grows.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import array_api_compat

__all__ = ["TrainingMonitor", "MonitorRecord", "forward_rate"]


@dataclasses.dataclass(frozen=True)
class MonitorRecord:
    """One training step, as the monitor saw it (host floats; NaN where unknown)."""

    step: int
    forward_status: str
    forward_steps: int
    rate: float  # forward_rate of the forward history
    backward_status: str
    backward_steps: int
    backward_error_estimate: float
    relative_error: float  # backward_error_estimate / ||z||
    estimate_reliable: bool | None


def forward_rate(history, window: int = 5, floor: float = 1.5e-8) -> float:
    r"""The forward iteration's rate: ``(d_K / d_{K-w})^{1/w}`` over its last ``w + 1``
    positive finite step norms ``d_k = ||h_{k+1} - h_k||`` above ``floor * max_k d_k``.

    The floor (``sqrt(eps)`` of float64 by default; :class:`TrainingMonitor` uses that of
    the state's dtype) drops the steps taken once the iteration has reached rounding
    level, whose ratios are noise.

    For Picard ``h <- f(h)`` near ``h*`` the error obeys ``e_{k+1} ~= J e_k``, so the rate tends
    to ``|lambda_max(J)| = rho(J)`` (when the dominant eigenvalue is simple): the same
    ``rho`` at which Neumann-RBP and RBP converge (their ``K``-term error shrinks like
    ``rho^K``) and past 1 diverge. NaN with fewer than two usable entries, or when the
    iteration stopped at an exact fixed point. For Anderson histories (residuals of an
    accelerated method) it is the method's rate, not ``rho(J)``.
    """
    values = [float(d) for d in history if d is not None and math.isfinite(float(d)) and float(d) > 0]
    if values:
        top = max(values)
        values = [d for d in values if d > floor * top]
    values = values[-(window + 1):]
    if len(values) < 2:
        return math.nan
    return (values[-1] / values[0]) ** (1.0 / (len(values) - 1))


class TrainingMonitor:
    r"""Log the forward rate and the backward error estimate of every training step; warn early.

    Parameters
    ----------
    rate_warn : float
        Warn when the forward rate reaches this (default 0.9; the series backward keeps
        ``rate^K`` of its error after ``K`` steps and fails at 1).
    error_warn : float
        Warn when the backward's relative error estimate ``error_estimate / ||z||``
        reaches this (default 0.01) while its status is still ok (the message says when the
        estimate is also flagged unreliable).
    window : int
        Steps over which the rate's trend is fitted (least squares); warn when the line
        reaches 1 within ``window`` more steps (default 10).
    warn : bool
        Emit the adapter's ``AdjointRiskWarning`` (default True). Each kind of warning is
        given once, then again only after its condition has cleared.

    Examples
    --------
    >>> monitor = TrainingMonitor()                         # doctest: +SKIP
    >>> for x, y in loader:                                 # doctest: +SKIP
    ...     h, diag = fixed_point(f, h0)
    ...     loss(h, y).backward()
    ...     monitor.update(diag)                            # after backward: both solves
    >>> monitor.records[-1].rate, monitor.as_dict()         # doctest: +SKIP
    """

    #: The warning class; each adapter sets its own ``AdjointRiskWarning``.
    warning = UserWarning

    def __init__(self, *, rate_warn: float = 0.9, error_warn: float = 1e-2, window: int = 10, warn: bool = True):
        if not (0 < float(rate_warn) <= 1):
            raise ValueError(f"rate_warn must lie in (0, 1]; got {rate_warn!r}")
        if not (float(error_warn) > 0):
            raise ValueError(f"error_warn must be positive; got {error_warn!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window must be an int >= 2; got {window!r}")
        self.rate_warn, self.error_warn, self.window, self.warn = float(rate_warn), float(error_warn), window, warn
        self.records: list[MonitorRecord] = []
        self.warnings: list[tuple[int, str]] = []
        self._armed = {"rate": True, "trend": True, "error": True}

    def update(self, diagnostics=None, *, forward=None, backward=None) -> MonitorRecord:
        """Record one step from a :class:`Diagnostics` (after ``loss.backward()``), or from
        the forward and backward :class:`rbpsolve.Result` of a loop of one's own."""
        if diagnostics is not None:
            forward, backward = diagnostics.forward, diagnostics.backward
        if forward is None and backward is None:
            raise ValueError("nothing to record: pass a Diagnostics, or forward= and/or backward= Results")
        record = MonitorRecord(
            step=len(self.records),
            forward_status="none" if forward is None else forward.status.name,
            forward_steps=0 if forward is None else forward.num_steps,
            rate=math.nan if forward is None else forward_rate(forward.history, floor=_sqrt_eps(forward.x)),
            backward_status="none" if backward is None else backward.status.name,
            backward_steps=0 if backward is None else backward.num_steps,
            backward_error_estimate=_float(None if backward is None else backward.error_estimate),
            relative_error=_relative(backward),
            estimate_reliable=None if backward is None else backward.estimate_reliable,
        )
        self.records.append(record)
        self._check(record, backward)
        return record

    def as_dict(self) -> dict:
        """The records as columns (lists), ready for JSON or a plot."""
        names = [f.name for f in dataclasses.fields(MonitorRecord)]
        return {name: [getattr(r, name) for r in self.records] for name in names}

    def trend(self) -> float:
        """Least-squares slope of the rate over the last ``window`` steps (NaN if too few)."""
        rates = [(r.step, r.rate) for r in self.records[-self.window:] if math.isfinite(r.rate)]
        if len(rates) < 3:
            return math.nan
        n = len(rates)
        mx, my = sum(s for s, _ in rates) / n, sum(r for _, r in rates) / n
        sxx = sum((s - mx) ** 2 for s, _ in rates)
        return sum((s - mx) * (r - my) for s, r in rates) / sxx

    def _check(self, record: MonitorRecord, backward) -> None:
        slope = self.trend()
        steps_to_one = (1.0 - record.rate) / slope if slope > 0 and math.isfinite(record.rate) else math.inf
        self._maybe("rate", record.rate >= self.rate_warn, record,
                    f"the forward rate (an estimate of rho(J)) is {record.rate:.3g} >= {self.rate_warn:g}: a "
                    "series backward (RBP, Neumann-RBP) keeps about rate^K of its error and diverges at 1. "
                    "Add a Jacobian regulariser, or use GMRES/LSQR backward")
        self._maybe("trend", 0 <= steps_to_one <= self.window and record.rate < 1, record,
                    f"the forward rate {record.rate:.3g} rises by {slope:.2g} a step and will reach 1 in about "
                    f"{steps_to_one:.0f} steps")
        bad_estimate = record.relative_error >= self.error_warn
        self._maybe("error", backward is not None and backward.status.ok and bad_estimate, record,
                    f"the backward still reports {record.backward_status}, but its relative error estimate is "
                    f"{record.relative_error:.3g} >= {self.error_warn:g}"
                    + (" (and flagged unreliable)" if record.estimate_reliable is False else ""))

    def _maybe(self, kind: str, condition: bool, record: MonitorRecord, message: str) -> None:
        if not condition:
            self._armed[kind] = True
            return
        if self._armed[kind]:
            self._armed[kind] = False
            self.warnings.append((record.step, message))
            if self.warn:
                warnings.warn(f"step {record.step}: {message}", self.warning, stacklevel=4)  # at update's caller

    def __repr__(self) -> str:
        if not self.records:
            return "TrainingMonitor(no steps)"
        last = self.records[-1]
        return (f"TrainingMonitor({len(self.records)} steps; last: rate {last.rate:.3g}, backward "
                f"{last.backward_status}, relative error {last.relative_error:.3g}; {len(self.warnings)} warnings)")


def _sqrt_eps(x) -> float:
    return math.sqrt(float(array_api_compat.array_namespace(x).finfo(x.dtype).eps))


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _relative(backward) -> float:
    if backward is None or backward.error_estimate is None:
        return math.nan
    x = backward.x
    xp = array_api_compat.array_namespace(x)
    norm = float(xp.linalg.vector_norm(xp.reshape(x, (-1,))))
    return float(backward.error_estimate) / norm if norm > 0 else math.inf
