"""What every forward (fixed-point) solver shares: settings checks and the map ``F``."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .. import _backend
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
        out = self._F(h)
        space = self.in_space
        if out is h:
            # The solver compares F(h) with h: a map that updates h in place and returns it
            # makes every step look converged (F(h) - h = 0).
            raise ValueError(
                "F returned its own input array (it updates h in place and returns it), so F(h) - h is "
                "always zero; F must return a new array and leave h unchanged (e.g. `return 0.5 * h + 1` "
                "instead of `h *= 0.5; h += 1; return h`)"
            )
        if not hasattr(out, "shape") or not hasattr(out, "dtype"):
            raise TypeError(f"F returned {type(out).__name__}, not an array; F must map a state to a state")
        if _backend.namespace(out) is not space.xp:
            raise TypeError(
                f"F returned a {type(out).__module__}.{type(out).__name__} for a "
                f"{_backend.describe_namespace(space.xp)} state; F must return an array of the "
                f"library of h0"
            )
        if tuple(out.shape) != space.shape:
            raise ValueError(
                f"F returned an array of shape {tuple(out.shape)} but h0 has shape {space.shape}; "
                f"F must map the state to a state of the same shape"
            )
        if out.dtype != space.dtype:
            raise TypeError(
                f"F returned dtype {out.dtype} but h0 has dtype {space.dtype}; cast inside F or "
                f"pass h0 of dtype {out.dtype}"
            )
        return out
