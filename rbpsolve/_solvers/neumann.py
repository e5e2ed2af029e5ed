"""The truncated Neumann series, Neumann-RBP (Algorithm 2 of Liao et al. 2018)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

from .. import _backend
from .._algebra import iteration_operator
from ._base import AbstractSolver, Finish, StepReport
from .fixed_point import certificate

__all__ = ["Neumann"]


class _State(NamedTuple):
    partial_sum: Any
    term: Any
    b_norm: Any  # norm(b - A x0), a 0-d array
    steps: int
    previous: Any = None  # the term before `term`, for the error estimate


@dataclasses.dataclass(frozen=True, kw_only=True)
class Neumann(AbstractSolver):
    r"""Truncated Neumann series ``z_K = sum_{t=0}^{K} (J^T)^t g``.

    Parameters
    ----------
    max_steps : int
        The truncation ``K``: with ``rtol = atol = 0`` (the default) exactly ``K`` VJPs,
        the fixed budget that, at a converged state, gives the same gradient as truncated
        BPTT through the last ``K + 1`` applications of F (``K`` Jacobian products and
        ``K + 1`` terms each; Proposition 1).
    rtol, atol : float
        With tolerances, stop after the first term with
        ``norm((J^T)^k g) <= max(rtol * norm(g), atol)``. That term is the residual
        ``g - (I - J^T) z_{k-1}`` of the previous partial sum, so this is the common
        residual test one step late; the term is still added to the returned sum.
    divergence_factor : float
        Report ``Status.DIVERGED`` once a term is this many times larger than the
        smallest term so far. A fixed budget too short for that (with the default
        ``1e4`` and ``K = 20``: ``rho(J)`` up to about 1.58) is judged at its end: if the
        last term is no smaller than ``norm(g)`` (the sum is no better than ``z = 0``) or
        larger than the term half-way through, the series is not converging and the
        status is ``DIVERGED``, not ``BUDGET_SPENT``. ``math.inf`` switches both checks
        off: the plain truncated series, whatever it is worth.

    Notes
    -----
    For a general system ``A x = b`` the series is ``sum_t (I - A)^t b``. With
    ``x0`` the series corrects the start: ``x0 + sum_t M^t (b - A x0)`` (one extra product).

    Converges iff the spectral radius of J is below 1. With a declared ``q = ||J|| < 1``,
    Proposition 2 (``||sum_{t<=K} J^t - (I - J)^{-1}|| <= ||(I - J)^{-1}|| q^{K+1}``)
    gives ``||z - z_K|| <= q^{K+1} / (1 - q) * ||g||`` a priori (``info["prior_bound"]``);
    the tighter a-posteriori form ``q / (1 - q) * ||(J^T)^K g||`` is ``error_bound``.

    References
    ----------
    Liao et al., ICML 2018, Algorithm 2, Propositions 2 and 3.
    """

    max_steps: int = 20
    rtol: float = 0.0
    atol: float = 0.0
    divergence_factor: float = 1e4

    residual_lags: ClassVar[bool] = True
    can_diverge: ClassVar[bool] = True
    residual_kind: ClassVar[str] = "previous iterate"
    series: ClassVar[bool] = True

    def init(self, a, b, x0, tol, *, deferred=False):
        r0 = b if x0 is None else b - a.mv(x0)
        start = r0 + 0.0 if x0 is None else x0 + r0
        return _State(start, r0, _backend.norm(a.xp, r0), 0, None)

    def step(self, a, b, state):
        term = iteration_operator(a).mv(state.term)
        new = _State(state.partial_sum + term, term, state.b_norm, state.steps + 1, state.term)
        return new, StepReport(_backend.norm(a.xp, term))

    def solution(self, a, b, state):
        return state.partial_sum

    def start_residual(self, state):
        return _backend.to_float(state.b_norm)

    def finish(self, a, b, state, trace):
        q = iteration_operator(a).norm_bound
        b_norm = _backend.to_float(state.b_norm)
        info = {}
        if q is not None and q < 1:
            info["prior_bound"] = q ** (state.steps + 1) / (1.0 - q) * b_norm
        term_norm = trace.residuals[-1] if trace.residuals else b_norm
        return Finish(error_bound=certificate(q, term_norm), info=info, series_terms=(state.term, state.previous))
