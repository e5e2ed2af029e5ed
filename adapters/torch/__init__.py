"""PyTorch adapter: Jacobians from autograd, implicit fixed-point layers, BPTT/TBPTT baselines.

The only module of rbpsolve that imports torch.

- :func:`jacobian_operator` -- ``J = df/dh`` as an :class:`rbpsolve.JacobianOperator`
  from one retained graph (VJPs by reverse mode, JVPs by double backward or forward mode).
- :func:`fixed_point` / :class:`FixedPointLayer` -- ``h* = f(h*)`` found without a graph,
  differentiated by solving ``(I - J^T) z = dL/dh*`` with any rbpsolve solver; with
  ``batch_axis``, one fixed point and one adjoint a sample (a DEQ's batch), and
  ``on_failure="mask"`` to drop failed samples from the gradient.
- Jacobian regularisers (:func:`jacobian_frobenius`, :func:`column_penalty`,
  :func:`gershgorin_penalty`, :func:`smallest_eigenvalue_penalty`) that keep condition II
  during training, and :class:`TrainingMonitor`, which warns before the backward fails.
- :func:`halo_exchange` / :class:`Partition` -- a node-partitioned graph state's halo
  exchange over ``torch.distributed``, differentiable (its backward is the transpose).
- :func:`unroll` -- the baselines: BPTT, K-step TBPTT and the unbiased randomised
  truncation of Tallec & Ollivier.
"""

from ._diagnostics import Diagnostics, SampleRecords
from ._implicit import fixed_point
from ._halo import HaloPlan, Partition, halo_exchange, halo_transpose, node_order
from ._layer import FixedPointLayer
from ._policy import ConvergenceWarning
from ._jacobian import jacobian_operator
from ._monitor import AdjointRiskWarning, MonitorRecord, TrainingMonitor, forward_rate
from ._regularisers import Penalty, column_penalty, gershgorin_penalty, jacobian_frobenius
from ._smallest_eigenvalue import smallest_eigenvalue_penalty
from ._unroll import RandomTruncation, unroll

__all__ = [
    "jacobian_operator",
    "fixed_point",
    "FixedPointLayer",
    "Diagnostics",
    "SampleRecords",
    "ConvergenceWarning",
    "unroll",
    "RandomTruncation",
    "Penalty",
    "jacobian_frobenius",
    "column_penalty",
    "gershgorin_penalty",
    "smallest_eigenvalue_penalty",
    "TrainingMonitor",
    "MonitorRecord",
    "AdjointRiskWarning",
    "forward_rate",
    "Partition",
    "HaloPlan",
    "halo_exchange",
    "halo_transpose",
    "node_order",
]
