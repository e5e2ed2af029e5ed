"""Plain fixed-point (Picard) iteration ``h <- F(h)``: the forward pass of an RNN run to steady state."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from .. import _backend
from .._protocol import StepReport
from ._base import AbstractForwardSolver

__all__ = ["Picard"]


class _State(NamedTuple):
    h: Any  # the next iterate: F of the last one tested


@dataclasses.dataclass(frozen=True, kw_only=True)
class Picard(AbstractForwardSolver):
    r"""Picard iteration ``h_{k+1} = F(h_k)`` for a fixed point ``h* = F(h*)``.

    Parameters
    ----------
    max_steps : int
        The most evaluations of ``F``; with ``rtol = atol = 0`` exactly this many (a
        fixed number of forward steps ``T``, as in BPTT, reported as ``BUDGET_SPENT``).
    rtol, atol : float
        Stop when ``norm(h_{k+1} - h_k) <= max(rtol * norm(h_{k+1}), atol)``, where
        ``h_{k+1} - h_k = F(h_k) - h_k`` is the fixed-point residual of ``h_k``: the
        common forward test (:class:`AbstractForwardSolver`). The returned ``h_{k+1}``
        is one step further; for a map with Lipschitz constant ``q < 1`` its residual is
        at most ``q`` times the tested one and its error at most ``q / (1 - q)`` times it.
    divergence_factor : float
        Report ``Status.DIVERGED`` once a step is this many times longer than the shortest.

    Notes
    -----
    ``Result.history`` holds ``norm(h_{k+1} - h_k)`` per step, the convergence curve of
    Fig. 1c and 3c of Liao et al. (2018). Each step costs one evaluation of ``F``
    (``Result.info["num_evaluations"]``); its two norms reach the host in the loop's one
    transfer a step (none until the end of a fixed budget). Converges for
    every start when ``F`` is a contraction, and near ``h*`` when the spectral radius of
    ``dF/dh`` there is below 1; otherwise it diverges or cycles (Anderson may still work).
    ``Result.b_norm`` is ``norm(F(h_k))`` of the last test, the scale of ``rtol``. A
    failed solve returns the iterate with the smallest residual seen.

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> res = rbpsolve.fixed_point(np.cos, np.zeros(1), rbpsolve.Picard(rtol=1e-10))
    >>> res.status.name, round(float(res.x[0]), 6)
    ('CONVERGED', 0.739085)
    """

    def init(self, a, b, x0, tol, *, deferred=False):
        return _State(x0)

    def step(self, a, b, state):
        xp = a.xp
        h_new = a(state.h)
        # Both norms stay on the device: the loop reads them in its one transfer.
        residual, scale = _backend.reductions(xp, (h_new - state.h,), (h_new,))  # one all-reduce when split
        return _State(h_new), StepReport(residual, scale=scale)

    def solution(self, a, b, state):
        return state.h
