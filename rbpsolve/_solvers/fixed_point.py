"""The original recurrent back-propagation iteration (Almeida 1987, Pineda 1987)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

from .. import _backend
from .._bounds import contraction_bound
from .._algebra import iteration_operator
from ._base import AbstractSolver, Finish, StepReport

__all__ = ["FixedPoint"]


class _State(NamedTuple):
    x: Any
    x_is_zero: bool
    update: Any = None  # x_k - x_{k-1}, and the update before it, for the error estimate
    previous_update: Any = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FixedPoint(AbstractSolver):
    r"""Fixed-point iteration ``z <- J^T z + g``: the original RBP (Algorithm 1 of Liao et al.).

    For a general system ``A x = b`` this is Richardson's iteration
    ``x <- (I - A) x + b``; :func:`~rbpsolve.solve_adjoint` uses ``A = I - J^T``.

    Parameters
    ----------
    max_steps, rtol, atol : see :class:`AbstractSolver`
        Stopping test: ``norm(x_k - x_{k-1}) <= max(rtol * norm(b), atol)``. The update
        ``x_k - x_{k-1}`` *is* the residual ``b - A x_{k-1}`` of the previous iterate,
        so this is the common residual test applied one step late; the returned ``x_k``
        has residual ``M (x_k - x_{k-1})``, at most ``||J||`` times the tolerance.
    divergence_factor : float
        Report ``Status.DIVERGED`` once an update is this many times larger than the
        smallest one so far; detected within ``log(divergence_factor) / log(rho)``
        steps when the spectral radius ``rho`` of J exceeds 1. A fixed budget
        (``rtol = atol = 0``) too short for that is judged at its end, as in
        :class:`Neumann`; ``math.inf`` switches both checks off.

    Notes
    -----
    Converges for every start iff the spectral radius of J is below 1 (Table 1 of the
    paper shows how often it fails in practice). Each step costs one VJP; the first step
    from ``x0 = None`` (zero) costs none, since ``J^T 0 = 0``. ``K + 1`` steps from zero
    give the ``K``-step truncated Neumann series (Proposition 3).

    With a declared bound ``q = ||J|| < 1`` the result carries the contraction
    certificate ``||z - z_k|| <= q / (1 - q) * ||z_k - z_{k-1}||`` as ``error_bound``.

    References
    ----------
    Liao et al., "Reviving and Improving Recurrent Back-Propagation", ICML 2018, Alg. 1.
    """

    max_steps: int = 1000
    divergence_factor: float = 1e4

    residual_lags: ClassVar[bool] = True
    can_diverge: ClassVar[bool] = True
    residual_kind: ClassVar[str] = "previous iterate"
    series: ClassVar[bool] = True

    def init(self, a, b, x0, tol, *, deferred=False):
        if x0 is None:
            return _State(a.xp.zeros(b.shape, dtype=b.dtype, device=a.device), True)
        return _State(x0, False)

    def step(self, a, b, state):
        xp = a.xp
        if state.x_is_zero:
            # From zero the first iterate is b itself: no product needed.
            x_new = b + 0.0
            update = b
        else:
            x_new = iteration_operator(a).mv(state.x) + b
            update = x_new - state.x
        new = _State(x_new, False, update, state.update)
        return new, StepReport(_backend.norm(xp, update))

    def solution(self, a, b, state):
        return state.x

    def finish(self, a, b, state, trace):
        # The last update norm the loop read is this state's own.
        update_norm = trace.residuals[-1] if trace.residuals else None
        return Finish(error_bound=certificate(iteration_operator(a).norm_bound, update_norm),
                      series_terms=(state.update, state.previous_update))


def certificate(q: float | None, update_norm: float | None) -> float | None:
    """The contraction certificate where a bound ``||M|| <= q < 1`` is declared, else None."""
    if q is None or q >= 1 or update_norm is None:
        return None
    return contraction_bound(q, update_norm)
