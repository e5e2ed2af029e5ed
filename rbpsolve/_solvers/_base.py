"""What every linear solver shares beyond the common protocol (:mod:`rbpsolve._protocol`):
verification of the returned residual, and the restart after a failed verification."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .._protocol import AbstractIterativeSolver, Finish, StepReport, Trace, check_real, check_settings

__all__ = ["AbstractSolver", "StepReport", "Finish", "Trace", "check_real", "check_settings"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractSolver(AbstractIterativeSolver):
    """Settings shared by every solver of ``A x = b``.

    Parameters
    ----------
    max_steps : int
        The most iterations; each costs at least one operator product.
    rtol, atol : float
        Stop when ``norm(b - A x) <= max(rtol * norm(b), atol)``, the same test in every
        solver (which residual each one can see is in its Notes). ``rtol=None`` (the
        default) follows the dtype: ``1e-5``, or ``16 eps`` of float16/bfloat16 products
        (1.6e-2 and 0.125), which cannot certify less. ``rtol = atol = 0``
        asks for exactly ``max_steps`` steps: a fixed budget, reported as
        ``Status.BUDGET_SPENT``. Nothing needs deciding before its end, so its steps
        move nothing to the host (a GPU never waits): the reports are read after the
        last step, and at steps 64, 128, 256, ... of longer budgets so that a failing
        one stops early. A failure (divergence, a non-finite value, a breakdown) has the
        status and returns the best iterate a step-by-step run would have; the steps
        taken until it was read are spent and in ``history``. An exactly zero residual
        meets the budget's test (later steps change nothing). With a callback, each step
        is read as it is taken. ``b = 0`` returns ``x = 0`` at once, without a step.
    verify : bool or None
        Whether the loop recomputes the true residual ``norm(b - A x)`` of the returned
        ``x`` (one more product, counted in ``num_vjp``/``num_jvp``). None (default):
        before every ``CONVERGED`` claim, which is then decided on that figure (a
        recurrence can drift below the true residual in floating point), but not at the
        end of a fixed budget, which keeps its exact product count. True: at every end
        (fixed budgets and failures too). False: never; ``Result.residual_kind`` then
        says the residual is the solver's own figure.
    """

    max_steps: int = 1000
    rtol: float | None = None
    atol: float = 0.0
    verify: bool | None = None

    # Which products of A the solver needs, whether A must be square, and what the
    # reported residual is (see Result.residual_kind).
    needs_mv: ClassVar[bool] = True
    needs_rmv: ClassVar[bool] = False
    needs_square: ClassVar[bool] = True
    residual_kind: ClassVar[str] = "recurrence"

    def __post_init__(self):
        super().__post_init__()
        if self.verify is not None and not isinstance(self.verify, bool):
            raise TypeError(f"verify must be None, True or False; got {self.verify!r}")

    def restart(self, a, b, state, x, r):
        """The state to go on from after a verification found ``r = b - A x`` above the
        tolerance the recurrence claimed. The series solvers simply go on; CGNE and LSQR
        restart their recurrences from the true residual."""
        return state
