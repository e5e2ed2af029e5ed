"""The propositions of Liao et al. (ICML 2018) that rbpsolve relies on, checked numerically.

* Proposition 3: K-step Neumann-RBP equals (K+1)-step RBP (the fixed-point iteration)
  started from zero; both are the truncated series ``sum_{t=0}^{K} (J^T)^t g``.
* Proposition 2: ``||sum_{t<=K} J^t - (I - J)^{-1}|| <= ||(I - J)^{-1}|| ||J||^{K+1}``,
  and the a-priori / a-posteriori error bounds rbpsolve derives from it.

The propositions are statements in exact arithmetic. Forming the series in float64
adds, per step, a relative error of a few eps on each vector, so after K products the
computed sum is off by at most about ``(K + 1) * eps * sum_t ||(J^T)^t g||`` (for a
contraction ``<= (K + 1) * eps * ||g|| / (1 - q)``, about 1e-13 relative for K = 60,
q = 0.95); the checks allow exactly that much and no more.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbpsolve
from conftest import Backend
from operators import make_problem

EPS = float(np.finfo(np.float64).eps)
SHAPES = [(12,), (3, 5), (2, 3, 4)]
SHAPE_IDS = ["12", "3x5", "2x3x4"]
KS = [1, 2, 3, 5, 8, 13, 21, 34, 60]

# Deterministic, file-free hypothesis runs: the same examples on every run and machine.
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NP = Backend("numpy")


def series(problem, K):
    """``sum_{t=0}^{K} (J^T)^t g`` formed densely, and ``sum_t ||(J^T)^t g||``."""
    term = problem.g.reshape(-1).copy()
    total = np.zeros_like(term)
    scale = 0.0
    for _ in range(K + 1):
        total += term
        scale += float(np.linalg.norm(term))
        term = problem.J.T @ term
    return total, scale


def no_divergence_check(solver_cls, **kw):
    # Proposition 3 is algebraic and holds for any J; lift the divergence test so a
    # growing series (rho(J) > 1) runs its whole budget too; math.inf also switches off
    # the end-of-budget judgement of a fixed budget (DIVERGED when the terms grow).
    return solver_cls(divergence_factor=math.inf, **kw)


# ------------------------------------------------------------------ Proposition 3
def check_proposition_3(problem, K):
    J = problem.operator(NP)
    g = NP.asarray(problem.g)
    g_copy = g.copy()

    neumann = rbpsolve.solve_adjoint(J, g, no_divergence_check(rbpsolve.Neumann, max_steps=K, rtol=0.0, atol=0.0))
    fixed = rbpsolve.solve_adjoint(J, g, no_divergence_check(rbpsolve.FixedPoint, max_steps=K + 1, rtol=0.0))

    # K-step Neumann: exactly K VJPs (one per term after g), a fixed budget, no JVP.
    assert neumann.status is rbpsolve.Status.BUDGET_SPENT
    assert neumann.num_steps == len(neumann.history) == K
    assert (neumann.num_vjp, neumann.num_jvp) == (K, 0)
    # (K+1)-step FixedPoint from zero: its first step (x_1 = g) is free, so also K VJPs.
    # It may stop earlier only on an exactly zero update, i.e. on a floating-point fixed
    # point, which the remaining steps would not move: still BUDGET_SPENT (a fixed budget
    # claims no tolerance), with no product spent to verify it.
    assert fixed.status is rbpsolve.Status.BUDGET_SPENT
    if fixed.num_steps < K + 1:
        assert fixed.history[-1] == 0.0
    else:
        assert fixed.num_steps == K + 1
    assert (fixed.num_vjp, fixed.num_jvp) == (fixed.num_steps - 1, 0)

    reference, scale = series(problem, K)
    allowed = 2 * (K + 1) * EPS * scale  # rounding of K products and K + 1 additions
    xn = neumann.x.reshape(-1)
    xf = fixed.x.reshape(-1)
    assert neumann.x.shape == fixed.x.shape == problem.shape
    assert np.linalg.norm(xn - xf) <= allowed
    assert np.linalg.norm(xn - reference) <= allowed
    assert np.linalg.norm(xf - reference) <= allowed
    assert np.array_equal(g, g_copy)
    return neumann, fixed


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["contractive", "symmetric", "nonnormal"])
def test_proposition_3_neumann_equals_fixed_point(kind, seed, shape):
    problem = make_problem(kind, shape, seed)
    for K in KS:
        check_proposition_3(problem, K)


@pytest.mark.parametrize("seed", range(6))
def test_proposition_3_holds_without_convergence(seed):
    """The identity is algebraic: it holds for a divergent J as well (short budgets so
    the growing terms stay far from overflow)."""
    problem = make_problem("divergent", (3, 5), seed)
    assert problem.rho > 1
    for K in (1, 2, 5, 10, 20):
        neumann, _ = check_proposition_3(problem, K)
    assert neumann.history[-1] > neumann.history[0]  # the terms do grow


@PROPERTY
@given(
    seed=st.integers(0, 10_000),
    K=st.integers(1, 60),
    shape=st.sampled_from(SHAPES),
    kind=st.sampled_from(["contractive", "symmetric", "nonnormal"]),
)
def test_proposition_3_property(seed, K, shape, kind):
    check_proposition_3(make_problem(kind, shape, seed), K)


# ------------------------------------------------------------------ Proposition 2
def reference_error_floor(problem, K, q):
    """Rounding not covered by the exact-arithmetic bounds: that of the computed series
    ((K + 1) eps ||g|| / (1 - q), see the module docstring) and that of the reference z
    (backward-stable LU: n eps cond(I - J^T) ||z||)."""
    g_norm = float(np.linalg.norm(problem.g))
    cond = float(np.linalg.cond(np.eye(problem.n) - problem.J.T))
    return 2 * (K + 1) * EPS * g_norm / (1 - q) + problem.n * EPS * cond * float(np.linalg.norm(problem.z))


def check_neumann_bounds(problem, K):
    q = problem.norm
    assert q < 1
    J = problem.operator(NP, norm_bound=q)
    g = NP.asarray(problem.g)
    g_norm = float(np.linalg.norm(problem.g))

    res = rbpsolve.solve_adjoint(J, g, rbpsolve.Neumann(max_steps=K))
    error = float(np.linalg.norm(res.x - problem.z))
    floor = reference_error_floor(problem, K, q)

    assert res.error_bound is not None and math.isfinite(res.error_bound)
    assert error <= res.error_bound + floor
    prior = res.info["prior_bound"]
    # A priori (Proposition 2 times ||g||) versus a posteriori (q / (1 - q) ||(J^T)^K g||):
    # ||(J^T)^K g|| <= q^K ||g||, so the a-posteriori bound is never the larger one (up to
    # the rounding of the last term's norm).
    assert prior == pytest.approx(rbpsolve.neumann_bound(K, q) * g_norm, rel=1e-12)
    assert res.error_bound <= prior * (1 + 1e-12)
    assert error <= prior + floor
    return res, error


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kind", ["contractive", "symmetric"])
def test_proposition_2_neumann_error_bound(kind, seed, shape):
    problem = make_problem(kind, shape, seed)
    q = problem.norm
    g_norm = float(np.linalg.norm(problem.g))
    # K = 0 is the series g alone, which is not a solver setting (max_steps >= 1, so
    # every Neumann run takes at least one VJP): bound it directly.
    with pytest.raises(ValueError, match="max_steps"):
        rbpsolve.Neumann(max_steps=0)
    error0 = float(np.linalg.norm(problem.g - problem.z))
    assert error0 <= rbpsolve.neumann_bound(0, q) * g_norm + reference_error_floor(problem, 0, q)
    for K in range(1, 61):
        check_neumann_bounds(problem, K)


@PROPERTY
@given(
    seed=st.integers(0, 10_000),
    K=st.integers(1, 60),
    shape=st.sampled_from(SHAPES),
    kind=st.sampled_from(["contractive", "symmetric"]),
)
def test_proposition_2_neumann_error_bound_property(seed, K, shape, kind):
    check_neumann_bounds(make_problem(kind, shape, seed), K)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("K", [1, 4, 10])
def test_proposition_2_bounds_are_attained_for_a_scaled_identity(q, K):
    """For J = q I every inequality is an equality: z - z_K = q^{K+1} / (1 - q) g. So the
    reported bounds are not merely safe but sharp (a bound inflated by any factor fails)."""
    n = 6
    g = np.random.default_rng(K).standard_normal(n)
    J = rbpsolve.JacobianOperator(lambda u: q * u, lambda v: q * v, like=np.zeros(n), norm_bound=q)
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.Neumann(max_steps=K))
    z = g / (1 - q)
    error = float(np.linalg.norm(res.x - z))
    exact = q ** (K + 1) / (1 - q) * float(np.linalg.norm(g))
    assert error == pytest.approx(exact, rel=1e-9)
    assert res.error_bound == pytest.approx(exact, rel=1e-12)
    assert res.info["prior_bound"] == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kind", ["contractive", "symmetric"])
def test_fixed_point_certificate_bounds_true_error(kind, seed, shape):
    """FixedPoint with a declared ||J|| <= q < 1: ||z - x_k|| <= q / (1 - q) ||x_k - x_{k-1}||
    after every number of steps, including when it stops on a tolerance."""
    problem = make_problem(kind, shape, seed)
    q = problem.norm
    J = problem.operator(NP, norm_bound=q)
    g = NP.asarray(problem.g)
    for k in list(range(1, 41)) + [60]:
        res = rbpsolve.solve_adjoint(J, g, rbpsolve.FixedPoint(max_steps=k, rtol=0.0))
        error = float(np.linalg.norm(res.x - problem.z))
        assert res.error_bound is not None
        assert error <= res.error_bound + reference_error_floor(problem, res.num_steps, q)
        # The certificate is the contraction bound on the last update, which the history holds.
        assert res.error_bound == pytest.approx(rbpsolve.contraction_bound(q, res.history[-1]), rel=1e-12)
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.FixedPoint(rtol=1e-9))
    assert res.status is rbpsolve.Status.CONVERGED
    error = float(np.linalg.norm(res.x - problem.z))
    assert error <= res.error_bound + reference_error_floor(problem, res.num_steps, q)
    # ... and it is small: q / (1 - q) * rtol * ||g|| at most.
    assert res.error_bound <= q / (1 - q) * 1e-9 * float(np.linalg.norm(problem.g))


@pytest.mark.parametrize("K", [0, 1, 2, 5, 10, 20, 40])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["contractive", "symmetric", "nonnormal", "divergent"])
def test_proposition_2_operator_statement(kind, seed, K):
    """||sum_{t<=K} J^t - (I - J)^{-1}||_2 <= ||(I - J)^{-1}||_2 ||J||_2^{K+1} on dense
    matrices. The difference is -(I - J)^{-1} J^{K+1}, so it holds for every J with I - J
    invertible, the bound growing with K once ||J|| >= 1."""
    problem = make_problem(kind, (12,), seed)
    J = problem.J
    n = problem.n
    q = problem.norm
    inverse = np.linalg.inv(np.eye(n) - J)
    inverse_norm = float(np.linalg.norm(inverse, 2))
    partial = np.zeros((n, n))
    power = np.eye(n)
    scale = 0.0
    for _ in range(K + 1):
        partial += power
        scale += float(np.linalg.norm(power, 2))
        power = power @ J
    lhs = float(np.linalg.norm(partial - inverse, 2))
    bound = rbpsolve.neumann_bound(K, q, inverse_norm=inverse_norm)
    assert bound == pytest.approx(inverse_norm * q ** (K + 1), rel=1e-12)
    # Rounding: the partial sum (n * eps per product, over the powers' norms) and the
    # inverse (n * eps * cond, times its norm).
    rounding = 2 * n * EPS * ((K + 1) * scale + np.linalg.cond(np.eye(n) - J) * inverse_norm)
    assert lhs <= bound + rounding
    if q < 1:
        assert bound <= rbpsolve.neumann_bound(K, q) * (1 + 1e-12)  # 1/(1-q) >= ||(I-J)^{-1}||


@pytest.mark.parametrize("seed", range(10))
def test_neumann_bound_times_g_bounds_solver_error(seed):
    """rbpsolve.neumann_bound(K, q) * ||g|| >= ||z_K - z|| for the solver's K-step sum."""
    problem = make_problem("contractive", (2, 3, 4), seed)
    q = problem.norm
    J = problem.operator(NP)
    g = NP.asarray(problem.g)
    g_norm = float(np.linalg.norm(problem.g))
    for K in range(1, 61):
        res = rbpsolve.solve_adjoint(J, g, rbpsolve.Neumann(max_steps=K))
        error = float(np.linalg.norm(res.x - problem.z))
        assert error <= rbpsolve.neumann_bound(K, q) * g_norm + reference_error_floor(problem, K, q)


# ------------------------------------------------------------------ neumann_steps
def check_neumann_steps(rtol, q):
    K = rbpsolve.neumann_steps(rtol, q)
    assert isinstance(K, int) and K >= 0
    # Smallest K with q^(K+1) <= rtol. neumann_steps works through logarithms, so allow
    # a relative 1e-9 at the exact boundary q^(K+1) == rtol.
    assert q ** (K + 1) <= rtol * (1 + 1e-9)
    if K >= 1:
        assert q**K > rtol * (1 - 1e-9)
    # Consistent with neumann_bound: the relative bound q^(K+1) meets rtol at K.
    assert rbpsolve.neumann_bound(K, q) * (1 - q) <= rtol * (1 + 1e-9)


@pytest.mark.parametrize(
    "rtol, q, expected",
    [
        (1e-6, 0.9, 131),  # 0.9^132 = 9.1e-7 <= 1e-6 < 0.9^131 = 1.01e-6
        (0.25, 0.5, 1),  # exact boundary: 0.5^2 == 0.25
        (0.5, 0.5, 0),  # K = 0 already: q^1 == rtol
        (0.6, 0.5, 0),
        (1e-3, 0.1, 2),  # 0.1^3 == 1e-3 (to rounding)
        (1e-8, 0.0, 0),
    ],
)
def test_neumann_steps_known_values(rtol, q, expected):
    assert rbpsolve.neumann_steps(rtol, q) == expected
    if q > 0:
        check_neumann_steps(rtol, q)


@PROPERTY
@given(
    rtol=st.floats(1e-14, 0.999, allow_nan=False, allow_infinity=False),
    q=st.floats(1e-6, 0.999, allow_nan=False, allow_infinity=False),
)
def test_neumann_steps_is_smallest_sufficient_truncation(rtol, q):
    check_neumann_steps(rtol, q)


@pytest.mark.parametrize("q", [1.0, 1.5])
def test_neumann_steps_and_bound_refuse_non_contractions(q):
    with pytest.raises(ValueError, match="GMRES or LSQR"):
        rbpsolve.neumann_steps(1e-6, q)
    with pytest.raises(ValueError, match="inverse_norm"):
        rbpsolve.neumann_bound(3, q)
    # With the inverse's norm given, the (growing) bound is defined.
    assert rbpsolve.neumann_bound(3, q, inverse_norm=2.0) == pytest.approx(2.0 * q**4)
