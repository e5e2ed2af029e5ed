"""JAX adapter: Jacobians from ``jax.vjp``, implicit fixed points with an rbpsolve adjoint solve.

The only module tree of rbpsolve that imports jax.

- :func:`jacobian_operator` -- ``J = df/dh`` as an :class:`rbpsolve.JacobianOperator`
  from one linearisation (VJPs by ``jax.vjp``, JVPs by ``jax.linearize``); pytree states
  are raveled into one flat vector.
- :func:`fixed_point` -- ``h* = f(h*, params)`` found by an rbpsolve forward solver,
  differentiated with respect to ``params`` through a ``jax.custom_vjp`` that solves
  ``(I - J^T) z = dL/dh*`` with any rbpsolve solver, its Result kept in a
  :class:`Diagnostics` the caller holds. With ``batch_axis`` (eager) each sample has its
  own forward and adjoint solve, judged per sample (:class:`SampleRecords`), and
  ``on_failure="mask"`` drops the failed samples from the gradient.
- Jacobian regularisers (:func:`jacobian_frobenius`, :func:`column_penalty`,
  :func:`gershgorin_penalty`: pure JAX, jit-able; :func:`smallest_eigenvalue_penalty`: eager)
  and :class:`TrainingMonitor`, as in the torch adapter.

Inside ``jax.jit`` and ``jax.vmap``, :func:`fixed_point` runs fixed budgets (Picard
forward, Neumann or FixedPoint backward, ``rtol = atol = 0``) as pure JAX and returns a
:class:`TracedDiagnostics` of status codes; the backward's status comes out as the
gradient of a :func:`backward_probe` (:func:`backward_report`). Every other solver reads
its residual on the host each step, so there these functions raise
``jax.errors.ConcretizationTypeError`` naming the alternatives.
"""

from ._diagnostics import Diagnostics, SampleRecords
from ._implicit import fixed_point
from ._jacobian import jacobian_operator
from ._monitor import AdjointRiskWarning, MonitorRecord, TrainingMonitor, forward_rate
from ._policy import ConvergenceWarning
from ._results import TracedDiagnostics, TracedSolve, backward_probe, backward_report, status_of
from ._regularisers import (
    Penalty,
    column_penalty,
    gershgorin_penalty,
    jacobian_frobenius,
    smallest_eigenvalue_penalty,
)

__all__ = [
    "jacobian_operator",
    "fixed_point",
    "Diagnostics",
    "SampleRecords",
    "TracedDiagnostics",
    "TracedSolve",
    "backward_probe",
    "backward_report",
    "status_of",
    "ConvergenceWarning",
    "Penalty",
    "jacobian_frobenius",
    "column_penalty",
    "gershgorin_penalty",
    "smallest_eigenvalue_penalty",
    "TrainingMonitor",
    "MonitorRecord",
    "AdjointRiskWarning",
    "forward_rate",
]
