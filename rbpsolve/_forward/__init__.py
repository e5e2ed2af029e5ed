"""Forward solvers: find ``h* = F(h*)`` (the steady state whose adjoint rbpsolve solves).

One algorithm per file, like ``_solvers/``; they run in the same loop (``_loop.py``) and
return the same :class:`~rbpsolve.Result`.
"""

from ._base import AbstractForwardSolver
from .anderson import Anderson
from .picard import Picard
from .solve import fixed_point

__all__ = ["AbstractForwardSolver", "Picard", "Anderson", "fixed_point"]
