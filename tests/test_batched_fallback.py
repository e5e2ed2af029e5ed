"""A Fallback chain on a batch (issue 15): each member re-solves only the samples the
members before it failed on; the others keep their answers."""

from __future__ import annotations

import numpy as np
import pytest

import rbpsolve
from rbpsolve import Status

from test_batched import N, _batched_operator, _blocks, _solo


def _chain():
    return rbpsolve.Fallback(rbpsolve.FixedPoint(rtol=1e-10, max_steps=300), rbpsolve.GMRES(rtol=1e-10))


def test_only_the_failed_samples_are_solved_again():
    Ws = _blocks([0.3, 1.3, 0.9, 1.5], seed=3, symmetric=True)
    G = np.random.default_rng(3).standard_normal((4, N))
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, _chain(), batch_axis=0)
    assert list(result.info["sample_fallback_index"]) == [0, 1, 0, 1]
    assert all(s is Status.CONVERGED for s in result.sample_status)
    first, second = result.attempts
    assert list(first.sample_status) == [Status.CONVERGED, Status.DIVERGED, Status.CONVERGED, Status.DIVERGED]
    # The second member ran on samples 1 and 3 only; 0 and 2 are marked as solved before.
    assert second.sample_status[0] is None and second.sample_status[2] is None
    assert "2 solved by an earlier member" in second.batch_summary
    for i, member in [(0, 0), (1, 1), (2, 0), (3, 1)]:
        solo = _solo(Ws[i], G[i], _chain().solvers[member])
        np.testing.assert_allclose(result.x[i], solo.x, rtol=0, atol=1e-10 * max(1.0, np.abs(solo.x).max()))
        assert result.sample_num_steps[i] == solo.num_steps
    # The products of both members, each a batched call.
    assert result.num_vjp == first.num_vjp + second.num_vjp


def test_a_sample_every_member_fails_on_gets_its_best_attempt():
    Ws = _blocks([0.5, 1.2], seed=4, symmetric=True)
    G = np.random.default_rng(4).standard_normal((2, N))
    chain = rbpsolve.Fallback(rbpsolve.FixedPoint(rtol=1e-10, max_steps=300), rbpsolve.Neumann(rtol=1e-10, max_steps=5))
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, chain, batch_axis=0, throw=False)
    assert result.sample_status[0] is Status.CONVERGED
    assert not result.sample_status[1].ok and not result.ok
    assert result.info["sample_fallback_index"][0] == 0
    # Sample 1's answer is the attempt with the smaller true residual.
    residuals = []
    for attempt in result.attempts:
        x = attempt.x[1]
        residuals.append(np.linalg.norm(G[1] - (x - Ws[1].T @ x)) if np.all(np.isfinite(x)) else np.inf)
    assert result.info["sample_fallback_index"][1] == int(np.argmin(residuals))
    np.testing.assert_array_equal(result.x[1], result.attempts[int(np.argmin(residuals))].x[1])


def test_a_chain_with_a_solver_that_cannot_batch_is_refused():
    G = np.ones((2, N))
    J = _batched_operator(_blocks([0.5, 0.5], seed=0), G)
    with pytest.raises((NotImplementedError, TypeError)):
        rbpsolve.solve_adjoint(J, G, rbpsolve.Fallback(rbpsolve.Neumann(), rbpsolve.Picard()), batch_axis=0)
