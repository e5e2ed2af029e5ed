"""One algorithm per file; each is a frozen settings object with ``init`` and ``step``."""

from ._base import AbstractSolver, StepReport
from .cgne import CGNE
from .fixed_point import FixedPoint
from .gmres import GMRES
from .lsqr import LSQR
from .neumann import Neumann
from .randomized_neumann import RandomizedNeumann

__all__ = ["AbstractSolver", "StepReport", "FixedPoint", "Neumann", "RandomizedNeumann", "CGNE", "LSQR", "GMRES"]
