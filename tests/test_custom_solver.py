"""A solver of one's own through the documented protocol (rbpsolve.extending): the loop
decides, verifies and estimates for it as for the built-in ones."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

import rbpsolve
from rbpsolve import _backend
from rbpsolve.extending import Finish, StepReport


class _State(NamedTuple):
    x: object


@dataclasses.dataclass(frozen=True, kw_only=True)
class Richardson(rbpsolve.AbstractSolver):
    """x <- x + omega (b - A x): two products a step (one for the residual)."""

    omega: float = 1.0

    def init(self, a, b, x0, tol, *, deferred=False):
        return _State(a.xp.zeros(a.in_shape, dtype=b.dtype, device=a.device) if x0 is None else x0)

    def step(self, a, b, state):
        r = b - a.mv(state.x)
        x = state.x + self.omega * r
        # The residual of the previous iterate; the norm stays on the device.
        return _State(x), StepReport(_backend.norm(a.xp, r))

    residual_lags = True

    def solution(self, a, b, state):
        return state.x

    def finish(self, a, b, state, trace):
        return Finish(info={"steps_seen": len(trace.residuals)})


def test_a_solver_of_ones_own_runs_in_the_loop():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((20, 20))
    W *= 0.5 / np.linalg.norm(W, 2)
    J = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(20))
    g = np.ones(20)
    res = rbpsolve.solve_adjoint(J, g, Richardson(rtol=1e-10))
    exact = np.linalg.solve(np.eye(20) - W.T, g)
    assert res.status is rbpsolve.Status.CONVERGED and res.residual_kind == "verified"
    np.testing.assert_allclose(res.x, exact, rtol=1e-8)
    assert res.info["steps_seen"] == res.num_steps
    fixed = rbpsolve.solve_adjoint(J, g, Richardson(max_steps=30, rtol=0.0))
    assert fixed.status is rbpsolve.Status.BUDGET_SPENT and fixed.num_steps == 30
    np.testing.assert_allclose(fixed.x, exact, rtol=1e-7)
