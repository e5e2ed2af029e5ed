"""PyTorch adapter: Jacobians from autograd, implicit fixed-point layers, BPTT/TBPTT baselines.

The only module of rbpsolve that imports torch.

- :func:`jacobian_operator` -- ``J = df/dh`` as an :class:`rbpsolve.JacobianOperator`
  from one retained graph (VJPs by reverse mode, JVPs by double backward or forward mode).
- :func:`fixed_point` / :class:`FixedPointLayer` -- ``h* = f(h*)`` found without a graph,
  differentiated by solving ``(I - J^T) z = dL/dh*`` with any rbpsolve solver.
- :func:`unroll` -- the baselines: BPTT, K-step TBPTT and the unbiased randomised
  truncation of Tallec & Ollivier.
"""

from ._implicit import ConvergenceWarning, Diagnostics, FixedPointLayer, fixed_point
from ._jacobian import jacobian_operator
from ._unroll import RandomTruncation, unroll

__all__ = [
    "jacobian_operator",
    "fixed_point",
    "FixedPointLayer",
    "Diagnostics",
    "ConvergenceWarning",
    "unroll",
    "RandomTruncation",
]
