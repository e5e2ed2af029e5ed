"""The training monitor with the torch adapter's warning class (see :mod:`rbpsolve.adapters._training_monitor`)."""

from __future__ import annotations

from .._training_monitor import MonitorRecord, forward_rate
from .._training_monitor import TrainingMonitor as _Monitor
from ._policy import ConvergenceWarning

__all__ = ["TrainingMonitor", "MonitorRecord", "AdjointRiskWarning", "forward_rate"]


class AdjointRiskWarning(ConvergenceWarning):
    """The adjoint solves are nearing failure (a :class:`ConvergenceWarning`)."""


class TrainingMonitor(_Monitor):
    __doc__ = _Monitor.__doc__
    warning = AdjointRiskWarning
