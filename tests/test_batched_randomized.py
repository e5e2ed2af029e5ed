"""RandomizedNeumann under ``batch_axis``: one random depth a sample, sample ``i`` seeded
by ``solver.sample_seed(i)``, and each sample equal to its solo solve with that seed.

Randomised claims use seeded draws and a 5 sigma / sqrt(N) bound from the sample
standard deviation (as tests/test_randomized_neumann.py does): they fail for a biased
estimator or correlated samples, not by bad luck.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import rbpsolve
from rbpsolve import RandomizedNeumann, Status, _backend

from test_batched import N, _assert_sample_matches, _batched_operator, _blocks, _solo


def _batch(Ws, G, solver, **kwargs):
    return rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, solver, batch_axis=0, throw=False, **kwargs)


def _solo_of(solver, i):
    """The solo solver that draws what sample ``i`` of ``solver``'s batch draws."""
    return dataclasses.replace(solver, seed=solver.sample_seed(i))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha, k0, factor", [(0.5, 0, 1e4), (0.5, 0, math.inf), (0.8, 1, 1e4), (0.9, 0, 1e4),
                                               (0.95, 3, math.inf)])
@pytest.mark.parametrize("eager", [False, True])
def test_each_sample_equals_its_solo_solve_with_the_mapped_seed(seed, alpha, k0, factor, eager):
    rng = np.random.default_rng(200 + seed)
    B = 6
    Ws = _blocks(rng.uniform(0.1, 0.8, size=B), seed)
    G = rng.standard_normal((B, N))
    solver = RandomizedNeumann(continue_prob=alpha, min_steps=k0, seed=seed, divergence_factor=factor)
    # A callback reads every step as it comes (the eager loop); without one, nothing is
    # read before the end.
    kwargs = {"callback": lambda info: None} if eager else {}
    result = _batch(Ws, G, solver, **kwargs)
    solos = [_solo(Ws[i], G[i], _solo_of(solver, i)) for i in range(B)]
    for i, solo in enumerate(solos):
        _assert_sample_matches(result, i, solo)
        assert result.info["drawn_steps"][i] == solo.info["drawn_steps"]
    drawn = [s.info["drawn_steps"] for s in solos]
    assert len(set(drawn)) > 1  # the depths differ between samples
    assert result.num_steps == max(result.sample_num_steps)
    assert result.status is Status.BUDGET_SPENT
    np.testing.assert_array_equal(result.sample_num_steps, [s.num_steps for s in solos])


def test_sample_seeds_are_spawned_children_and_do_not_depend_on_the_batch():
    solver = RandomizedNeumann(continue_prob=0.8, seed=7)
    for i in range(3):
        child = np.random.SeedSequence(7).spawn(3)[i].generate_state(4, np.uint32)
        assert solver.sample_seed(i) == sum(int(w) << (32 * k) for k, w in enumerate(child))
    assert len({solver.sample_seed(i) for i in range(50)}) == 50
    assert RandomizedNeumann(seed=None).sample_seed(0) is None
    # Sample i of a larger batch is sample i of a smaller one: the same draw, the same x.
    Ws = _blocks([0.3, 0.5, 0.7, 0.4, 0.6], seed=1)
    G = np.random.default_rng(1).standard_normal((5, N))
    small, large = _batch(Ws[:3], G[:3], solver), _batch(Ws, G, solver)
    np.testing.assert_array_equal(small.info["drawn_steps"], large.info["drawn_steps"][:3])
    np.testing.assert_allclose(small.x, large.x[:3], rtol=0, atol=1e-13)
    # draw_samples is the solo draw with each sample's seed.
    assert solver.draw_samples(5) == [_solo_of(solver, i).draw() for i in range(5)]


@pytest.mark.parametrize("k0", [20, 70])
def test_a_diverging_sample_fails_alone(k0):
    # Sample 1 (rho = 1.5) diverges; with a head of 70 products its solo run is decided
    # at the read of step 64 and stops there, while the others go on past it.
    Ws = _blocks([0.5, 1.5, 0.6], seed=2, symmetric=True)
    G = np.random.default_rng(2).standard_normal((3, N))
    solver = RandomizedNeumann(continue_prob=0.7, min_steps=k0, seed=3)
    result = _batch(Ws, G, solver)
    solos = [_solo(Ws[i], G[i], _solo_of(solver, i)) for i in range(3)]
    assert [s.status for s in solos] == [Status.BUDGET_SPENT, Status.DIVERGED, Status.BUDGET_SPENT]
    for i in (0, 2):
        _assert_sample_matches(result, i, solos[i])
    assert result.sample_status[1] is Status.DIVERGED and result.status is Status.DIVERGED
    assert result.sample_num_steps[1] == solos[1].num_steps
    if k0 == 70:
        assert solos[1].num_steps == 64 < min(result.sample_num_steps[[0, 2]])
    np.testing.assert_allclose(result.x[1], solos[1].x, rtol=1e-10)  # its best iterate, as alone
    assert "diverged: sample 1" in result.batch_summary


def test_drawn_depths_are_reported_per_sample():
    Ws = _blocks([0.3, 0.5, 0.7, 0.4], seed=4)
    G = np.random.default_rng(4).standard_normal((4, N))
    G[2] = 0.0  # solved in no step: no draw is consulted
    solver = RandomizedNeumann(continue_prob=0.9, max_steps=6, seed=5)
    result = _batch(Ws, G, solver)
    drawn = solver.draw_samples(4)
    assert list(result.info["drawn_steps"]) == [drawn[0], drawn[1], None, drawn[3]]
    assert list(result.info["capped"]) == [drawn[0] > 6, drawn[1] > 6, None, drawn[3] > 6]
    assert any(d > 6 for d in drawn) and any(d <= 6 for i, d in enumerate(drawn) if i != 2)
    for i in (0, 1, 3):
        solo = _solo(Ws[i], G[i], _solo_of(solver, i))
        assert result.info["capped"][i] == solo.info["capped"]
        assert result.sample_num_steps[i] == max(1, min(drawn[i], 6))  # a draw of 0 probes one term
    assert result.sample_num_steps[2] == 0 and result.sample_status[2] is Status.CONVERGED


def _unbiased(samples, exact, sigmas=5.0):
    n = samples.shape[0]
    bound = sigmas * samples.std(axis=0, ddof=1) / np.sqrt(n) + 1e-12
    return np.all(np.abs(samples.mean(axis=0) - exact) <= bound)


@pytest.mark.parametrize("alpha, k0", [(0.7, 0), (0.5, 2)])
def test_each_sample_is_unbiased_and_independent_of_its_neighbours(alpha, k0):
    # Three samples: two copies of one system and a third one. Over many seeds each
    # sample's mean is its exact solution, and the two copies draw independently.
    n, draws = 6, 2000
    rng = np.random.default_rng(8)
    Ws = _blocks([0.6, 0.6, 0.5], seed=8, n=n)
    Ws[1] = Ws[0]
    G = rng.standard_normal((3, n))
    G[1] = G[0]
    exact = np.stack([np.linalg.solve(np.eye(n) - W.T, g) for W, g in zip(Ws, G)])
    J = _batched_operator(Ws, G)
    samples = np.stack([
        rbpsolve.solve_adjoint(J, G, RandomizedNeumann(continue_prob=alpha, min_steps=k0, seed=s), batch_axis=0).x
        for s in range(draws)
    ])
    for i in range(3):
        assert _unbiased(samples[:, i], exact[i])
    # The test has power: a plain truncation one product past the head is biased beyond it.
    truncated = np.stack([_solo(Ws[0], G[0], rbpsolve.Neumann(max_steps=k0 + 1)).x] * draws)
    truncated += samples[:, 0] - samples[:, 0].mean(axis=0)  # the same spread, the truncation's mean
    assert not _unbiased(truncated, exact[0])
    # One draw a sample: the copies differ, and are uncorrelated (a draw per batch would
    # make them equal, correlation 1).
    first, second = samples[:, 0, 0], samples[:, 1, 0]
    assert np.mean(first != second) > 0.3
    assert abs(np.corrcoef(first, second)[0, 1]) < 5 / np.sqrt(draws)


def test_fresh_entropy_draws_each_sample_from_the_solo_law():
    alpha = 0.8
    lengths = np.array(RandomizedNeumann(continue_prob=alpha).draw_samples(4000))
    sd = np.sqrt(alpha) / (1 - alpha)
    assert abs(lengths.mean() - alpha / (1 - alpha)) <= 5 * sd / np.sqrt(len(lengths))
    assert lengths.min() == 0 and len(set(lengths.tolist())) > 5
    assert RandomizedNeumann(continue_prob=1.0, max_steps=9).draw_samples(3) == [9, 9, 9]


def test_a_fixed_budget_moves_nothing_to_the_host_until_its_end():
    # Heads of 10 and 30 products (and the same draws past them): the same transfers.
    Ws = _blocks([0.3, 0.6, 0.9], seed=10)
    G = np.random.default_rng(10).standard_normal((3, N))
    counts, steps = [], []
    for k0 in (10, 30):
        before = _backend.transfer_count()
        result = _batch(Ws, G, RandomizedNeumann(continue_prob=0.6, min_steps=k0, seed=4))
        counts.append(_backend.transfer_count() - before)
        steps.append(result.num_steps)
    assert steps[1] == steps[0] + 20
    assert counts[0] == counts[1]


def test_batch_axis_one_and_torch_agree_with_numpy():
    torch = pytest.importorskip("torch")
    Ws = _blocks([0.2, 0.8, 0.5], seed=12)
    G = np.random.default_rng(12).standard_normal((3, N))
    solver = RandomizedNeumann(continue_prob=0.8, seed=6)
    on_numpy = _batch(Ws, G, solver)
    Wt = torch.as_tensor(Ws)
    Jt = rbpsolve.JacobianOperator(lambda u: torch.einsum("bij,ib->jb", Wt, u), like=torch.as_tensor(G.T))
    on_torch = rbpsolve.solve_adjoint(Jt, torch.as_tensor(np.ascontiguousarray(G.T)), solver, batch_axis=1)
    np.testing.assert_allclose(on_torch.x.numpy().T, on_numpy.x, rtol=1e-10, atol=1e-12)
    assert list(on_torch.sample_status) == list(on_numpy.sample_status)
    np.testing.assert_array_equal(on_torch.sample_num_steps, on_numpy.sample_num_steps)
    np.testing.assert_array_equal(on_torch.info["drawn_steps"], on_numpy.info["drawn_steps"])


@pytest.mark.parametrize("steps", [20, 100])
def test_a_diverging_fixed_budget_hands_back_its_best_iterate_as_alone(steps):
    # The judgement after the budget (terms not shrinking: DIVERGED) is made before the
    # batch's iterate is chosen; at 100 steps the read of step 64 decides it and the
    # sample stops there, as alone, while the others go on.
    Ws = _blocks([0.5, 1.5, 0.6], seed=2, symmetric=True)
    G = np.random.default_rng(2).standard_normal((3, N))
    solver = rbpsolve.Neumann(max_steps=steps)
    result = _batch(Ws, G, solver)
    for i in range(3):
        _assert_sample_matches(result, i, _solo(Ws[i], G[i], solver))
    assert result.sample_status[1] is Status.DIVERGED
    if steps == 100:
        assert result.sample_num_steps[1] == 64 < result.sample_num_steps[0] == 100
