"""rbpsolve: matrix-free adjoint solvers with diagnostics for differentiating through fixed points.

At a steady state ``h* = F(h*)`` the gradient of a loss needs ``z`` with
``(I - J^T) z = g`` (recurrent back-propagation; Liao et al., ICML 2018).
"""

from ._analyze import Report, SolverAdvice, analyze
from ._bounds import contraction_bound, neumann_bound, neumann_steps
from ._estimates import Estimate, estimate_norm, estimate_singular_values, estimate_spectral_radius
from ._forward import AbstractForwardSolver, Anderson, Picard, fixed_point
from ._loop import CallbackError, StepInfo
from ._algebra import IdentityMinus
from ._dottest import dottest
from ._interop import aslinearoperator
from ._operator import FunctionOperator, Identity, JacobianOperator, MatrixOperator, Operator
from ._result import Result, SolveError, Status
from ._sharding import Sharding
from ._solve import Fallback, solve, solve_adjoint
from ._solvers import CGNE, GMRES, LSQR, AbstractSolver, FixedPoint, Neumann, RandomizedNeumann

__version__ = "0.1.0"

__all__ = [
    "Operator",
    "JacobianOperator",
    "FunctionOperator",
    "MatrixOperator",
    "Identity",
    "IdentityMinus",
    "aslinearoperator",
    "dottest",
    "AbstractSolver",
    "FixedPoint",
    "Neumann",
    "RandomizedNeumann",
    "CGNE",
    "LSQR",
    "GMRES",
    "Fallback",
    "solve",
    "solve_adjoint",
    "AbstractForwardSolver",
    "Picard",
    "Anderson",
    "fixed_point",
    "Sharding",
    "Result",
    "Status",
    "SolveError",
    "StepInfo",
    "CallbackError",
    "estimate_norm",
    "estimate_singular_values",
    "estimate_spectral_radius",
    "Estimate",
    "neumann_bound",
    "neumann_steps",
    "contraction_bound",
    "analyze",
    "Report",
    "SolverAdvice",
]
