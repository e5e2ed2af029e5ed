"""RandomizedNeumann: unbiased for (I - J^T)^{-1} g, the variance of its Notes, its settings.

Randomised claims are checked with seeded draws against a confidence bound computed
from the sample standard deviation (5 sigma / sqrt(N)), so they fail for a biased
estimator, not by bad luck (the chance of a false alarm is below 1e-6 per component).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rbpsolve
from rbpsolve import RandomizedNeumann, Status

from operators import make_problem


def _draws(J, g, solver_of_seed, n):
    return np.stack([rbpsolve.solve_adjoint(J, g, solver_of_seed(s)).x for s in range(n)])


def _assert_unbiased(samples, exact, sigmas=5.0):
    n = samples.shape[0]
    mean = samples.mean(axis=0)
    std = samples.std(axis=0, ddof=1)
    bound = sigmas * std / np.sqrt(n) + 1e-12
    assert np.all(np.abs(mean - exact) <= bound), np.max(np.abs(mean - exact) / bound)
    return mean, std


@pytest.mark.parametrize("alpha,min_steps", [(0.7, 0), (0.5, 2), (0.9, 1)])
def test_mean_of_many_draws_is_the_exact_solution(np_backend, alpha, min_steps):
    rng = np.random.default_rng(7)
    n = 8
    Jd = rng.standard_normal((n, n))
    Jd *= 0.6 / np.linalg.norm(Jd, 2)  # rho(J)^2 <= 0.36 < alpha: finite variance
    g = rng.standard_normal(n)
    exact = np.linalg.solve(np.eye(n) - Jd.T, g)
    J = rbpsolve.JacobianOperator(lambda u: Jd.T @ u, like=np.zeros(n))
    samples = _draws(J, g, lambda s: RandomizedNeumann(continue_prob=alpha, min_steps=min_steps, seed=s), 3000)
    _, std = _assert_unbiased(samples, exact)
    assert np.all(std > 0)  # really random
    # the test has power: a plain truncation one product past the head is biased beyond the bound
    truncated = rbpsolve.solve_adjoint(J, g, rbpsolve.Neumann(max_steps=min_steps + 1)).x
    assert np.any(np.abs(truncated - exact) > 5 * std / np.sqrt(3000))


def test_unbiased_on_a_torch_batch():
    torch = pytest.importorskip("torch")
    p = make_problem("symmetric", shape=(2, 3), seed=4)
    from conftest import Backend

    J = p.operator(Backend("torch"))
    g = torch.tensor(p.g)
    alpha = max(0.5, p.rho**2 + 0.2)
    samples = np.stack([
        rbpsolve.solve_adjoint(J, g, RandomizedNeumann(continue_prob=alpha, seed=s)).x.numpy() for s in range(2000)
    ])
    _assert_unbiased(samples, p.z)


def test_scalar_variance_formula_of_the_notes():
    """Var = rho^2 (1 - alpha) / ((1 - rho)^2 (alpha - rho^2)), checked exactly over the draw's law."""
    for rho, alpha, k0 in [(0.5, 0.6, 0), (0.7, 0.8, 0), (-0.6, 0.5, 0), (0.5, 0.6, 3)]:
        L = np.arange(0, 1000)
        p_L = (1 - alpha) * alpha**L  # P(L = l)
        t = np.arange(1, 1001)
        terms = (rho / alpha) ** t  # weighted terms past the head, relative to rho^k0
        z = rho**k0 * np.concatenate([[0.0], np.cumsum(terms)])[L] + sum(rho**j for j in range(k0 + 1))
        mean = np.sum(p_L * z)
        var = np.sum(p_L * (z - mean) ** 2)
        assert mean == pytest.approx(1 / (1 - rho), rel=1e-10)
        formula = rho ** (2 * k0) * rho**2 * (1 - alpha) / ((1 - rho) ** 2 * (alpha - rho**2))
        assert var == pytest.approx(formula, rel=1e-9)


def test_solver_computes_the_estimator_of_the_notes(np_backend):
    """For each seed: z = sum_{t<=K0} rho^t g + sum_{K0<t<=K0+L} alpha^-(t-K0) rho^t g, and K0 + L VJPs."""
    rho, alpha, k0 = 0.6, 0.7, 2
    J = rbpsolve.JacobianOperator(lambda u: rho * u, like=np.zeros(1))
    lengths = []
    for seed in range(300):
        res = rbpsolve.solve_adjoint(J, np.ones(1), RandomizedNeumann(continue_prob=alpha, min_steps=k0, seed=seed))
        n = res.info["drawn_steps"]
        lengths.append(n - k0)
        expected = sum(rho**t for t in range(k0 + 1)) + sum(rho**t / alpha ** (t - k0) for t in range(k0 + 1, n + 1))
        assert res.x[0] == pytest.approx(expected, rel=1e-13)
        assert res.num_vjp == n and res.status is Status.BUDGET_SPENT and res.ok
        assert res.history == pytest.approx([rho**t for t in range(1, n + 1)], rel=1e-13)
    # L is geometric: mean alpha / (1 - alpha), within 5 sigma
    lengths = np.asarray(lengths)
    sd = np.sqrt(alpha) / (1 - alpha)
    assert abs(lengths.mean() - alpha / (1 - alpha)) <= 5 * sd / np.sqrt(len(lengths))
    assert lengths.min() == 0


def test_seed_reproduces_and_none_varies(np_backend):
    p = make_problem("contractive", seed=2)
    J = p.operator(np_backend)
    a = rbpsolve.solve_adjoint(J, p.g, RandomizedNeumann(seed=11))
    b = rbpsolve.solve_adjoint(J, p.g, RandomizedNeumann(seed=11))
    np.testing.assert_array_equal(a.x, b.x)
    drawn = {rbpsolve.solve_adjoint(J, p.g, RandomizedNeumann(continue_prob=0.9)).info["drawn_steps"] for _ in range(30)}
    assert len(drawn) > 3


def test_zero_length_draw_returns_g(np_backend):
    J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(2))
    seeds = [s for s in range(50) if RandomizedNeumann(continue_prob=0.5, seed=s).draw() == 0]
    res = rbpsolve.solve_adjoint(J, np.ones(2), RandomizedNeumann(continue_prob=0.5, seed=seeds[0]))
    # One product probes the next term (not summed) so that the draw can be judged.
    assert res.num_vjp == 1 and res.ok
    np.testing.assert_array_equal(res.x, np.ones(2))
    plain = RandomizedNeumann(continue_prob=0.5, seed=seeds[0], divergence_factor=math.inf)
    res = rbpsolve.solve_adjoint(J, np.ones(2), plain)
    assert res.num_vjp == 0 and res.ok
    np.testing.assert_array_equal(res.x, np.ones(2))


def test_zero_length_draw_on_a_diverging_series_is_not_ok(np_backend):
    J = rbpsolve.JacobianOperator(lambda u: 1.3 * u, like=np.zeros(2))
    seeds = [s for s in range(50) if RandomizedNeumann(continue_prob=0.5, seed=s).draw() == 0]
    res = rbpsolve.solve_adjoint(J, np.ones(2), RandomizedNeumann(continue_prob=0.5, seed=seeds[0]), throw=False)
    assert res.status is Status.DIVERGED and res.num_vjp == 1


def test_cap_cuts_the_series_and_is_reported(np_backend):
    J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(1))
    solver = RandomizedNeumann(continue_prob=0.999, max_steps=3, seed=0)
    assert solver.draw() > 3
    res = rbpsolve.solve_adjoint(J, np.ones(1), solver)
    assert res.info["capped"] and res.num_vjp == 3 and res.status is Status.BUDGET_SPENT
    assert res.x[0] == pytest.approx(sum(0.5**t / 0.999**t for t in range(4)))


def test_continue_prob_one_is_the_deterministic_series(np_backend):
    p = make_problem("contractive", seed=3)
    J = p.operator(np_backend)
    a = rbpsolve.solve_adjoint(J, p.g, RandomizedNeumann(continue_prob=1.0, max_steps=25))
    b = rbpsolve.solve_adjoint(J, p.g, rbpsolve.Neumann(max_steps=25))
    np.testing.assert_allclose(a.x, b.x, rtol=1e-14)
    assert a.num_vjp == 25


def test_divergent_operator_is_reported(np_backend):
    J = rbpsolve.JacobianOperator(lambda u: 1.5 * u, like=np.zeros(2))
    res = rbpsolve.solve_adjoint(J, np.ones(2), RandomizedNeumann(continue_prob=0.9999, seed=1), throw=False)
    assert res.status is Status.DIVERGED
    with pytest.raises(rbpsolve.SolveError):
        rbpsolve.solve_adjoint(J, np.ones(2), RandomizedNeumann(continue_prob=0.9999, seed=1))


def test_runs_on_every_backend(backend):
    p = make_problem("contractive", shape=(3, 2), seed=1)
    res = rbpsolve.solve_adjoint(p.operator(backend), backend.asarray(p.g), RandomizedNeumann(continue_prob=1.0, max_steps=200))
    assert rbpsolve._backend.namespace(res.x) is backend.xp
    np.testing.assert_allclose(backend.to_numpy(res.x), p.z, rtol=1e-8)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(continue_prob=0.0), ValueError, r"continue_prob must lie in \(0, 1\]"),
        (dict(continue_prob=1.2), ValueError, "continue_prob"),
        (dict(continue_prob="x"), TypeError, "continue_prob must be a float"),
        (dict(min_steps=-1), ValueError, "min_steps must lie in"),
        (dict(min_steps=30, max_steps=20), ValueError, "min_steps must lie in"),
        (dict(min_steps=1.0), TypeError, "min_steps must be an int"),
        (dict(rtol=1e-6), ValueError, "would bias"),
        (dict(atol=1e-6), ValueError, "would bias"),
        (dict(seed=-3), TypeError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(max_steps=0), ValueError, "max_steps"),
    ],
)
def test_settings_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomizedNeumann(**kwargs)


@pytest.mark.parametrize("args, error", [((1.5, 0, 0), ValueError), ((float("nan"), 0, 0), ValueError),
                                         ((0.5, -1, 0), ValueError), ((0.5, 0.5, 0), ValueError),
                                         ((0.5, 0, -3), TypeError)])
def test_draw_depth_names_a_bad_argument(args, error):
    from rbpsolve.extending import draw_depth

    with pytest.raises(error, match="continue_prob|min_steps|seed"):
        draw_depth(*args)
