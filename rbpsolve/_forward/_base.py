"""What every forward (fixed-point) solver shares: settings checks and the map ``F``."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .._checks import check_map_output
from .._protocol import AbstractIterativeSolver
from .._space import _Space

__all__ = ["AbstractForwardSolver"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractForwardSolver(AbstractIterativeSolver):
    """Settings shared by the solvers of ``h = F(h)``: the common protocol
    (:class:`~rbpsolve._protocol.AbstractIterativeSolver`) with ``a`` the map ``F`` and
    ``b`` None.

    Parameters
    ----------
    max_steps : int
        The most evaluations of ``F`` (one per step).
    rtol, atol : float
        ``rtol=None`` (the default) is ``1e-5``, or ``16 eps`` for float16/bfloat16 maps.
        Stop at the first iterate with ``norm(F(h_k) - h_k) <= max(rtol * norm(F(h_k)), atol)``,
        the same test in every forward solver. ``rtol = atol = 0`` asks for exactly
        ``max_steps`` steps (a fixed budget, ``Status.BUDGET_SPENT``) unless an iterate is
        an exact fixed point.
    divergence_factor : float
        Report ``Status.DIVERGED`` once ``norm(F(h_k) - h_k)`` is this many times larger
        than its smallest value so far.

    Notes
    -----
    The checks are those of the linear solvers (:class:`~rbpsolve.AbstractSolver`): a
    negative tolerance or ``max_steps < 1`` fails at construction. Forward solvers are
    a separate family so that passing one to ``solve_adjoint`` (or a linear solver to
    ``fixed_point``) is an error that names the mix-up. Each step reports the scale of
    its test, ``norm(F(h_k))`` (``StepReport.scale``); the loop counts the evaluations
    of ``F`` (``Result.info["num_evaluations"]``).
    """

    max_steps: int = 1000
    rtol: float | None = None
    atol: float = 0.0
    divergence_factor: float = 1e4

    # The residual of a step belongs to the iterate the step started from
    # (F(h_k) - h_k), and a forward iteration can diverge.
    residual_lags: ClassVar[bool] = True
    can_diverge: ClassVar[bool] = True


class Map:
    """The user's ``F`` with the metadata the loop reads, checking each output.

    Like the operators, :meth:`with_counter` gives a copy for one solve that counts its
    evaluations of ``F`` in the loop's counter.
    """

    def __init__(self, F, space: _Space, counter=None):
        self._F = F
        self.in_space = space
        self._counter = counter

    @property
    def xp(self):
        return self.in_space.xp

    @property
    def device(self):
        return self.in_space.device

    @property
    def in_shape(self):
        return self.in_space.shape

    def with_counter(self, counter):
        fresh = Map(self._F, self.in_space, counter)
        if hasattr(self, "product_eps"):
            fresh.product_eps = self.product_eps
        return fresh

    def __call__(self, h):
        if self._counter is not None:
            self._counter.evaluations += 1
        return check_map_output(self._F(h), self.in_space, given=h)
