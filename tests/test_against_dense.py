"""Every solver against the exact dense solve, in float64, on seeded random operators.

The reference ``z`` of each problem is ``numpy.linalg.solve(I - J^T, g)``; the
checks compare the returned ``x`` with it through bounds derived from the stopping
test and the condition number of ``A = I - J^T``:

* every solver stops on a residual ``||g - A x|| <= lag * rtol * ||g||`` (``lag = 1``
  for the Krylov methods; FixedPoint and Neumann test the residual of the previous
  iterate, and the returned one has residual ``J^T`` times it, so ``lag = max(1, ||J||)``);
* then ``x - z = A^{-1} (g - A x)`` gives ``||x - z|| <= ||r|| / sigma_min(A)``, and as
  ``||g|| <= sigma_max(A) ||z||``, ``||x - z|| <= cond(A) * lag * rtol * ||z||``;
* rounding adds a term of order ``eps * (||g|| + ||A|| ||x||)`` to the residual per
  product (recurrences accumulate it over the steps: Greenbaum, SIMAX 18(3), 1997), and
  the reference itself is off by about ``n * eps * cond(A) * ||z||``.
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest

import rbpsolve
from conftest import Backend
from operators import make_problem

EPS = float(np.finfo(np.float64).eps)
SEEDS = range(10)
# A plain vector, a batch of 3 states of 5, and a 3-D state (flattened row-major by the
# reference); sizes 12, 15 and 24 so the three shapes are three different operators.
SHAPES = [(12,), (3, 5), (2, 3, 4)]

# rtol per kind. 1e-10 sits far above the float64 floor eps * cond(A) (cond <= ~1e3 for
# the well-posed kinds). For nearly_singular, cond(A) = 1e6, so eps * cond ~ 2e-10 is the
# smallest relative residual any method that forms A x in float64 can certify; rtol = 1e-8
# keeps a 50x margin, and the guaranteed relative error is then cond * rtol = 1e-2.
RTOL = {
    "contractive": 1e-10,
    "symmetric": 1e-10,
    "nonnormal": 1e-10,
    "divergent": 1e-10,
    "nearly_singular": 1e-8,
}

RESTART = 4  # below every n used here, so GMRES(4) restarts several times


def make_solver(name: str, rtol: float):
    # Step budgets: FixedPoint/Neumann need about log(rtol)/log(rho) steps after the
    # transient (rho <= 0.85 here: < 250 steps); CGNE and LSQR work on the normal
    # equations, whose condition is cond(A)^2, so on nearly_singular they need many more
    # than n steps in floating point (a few hundred at n = 24); 3000 leaves ample room.
    return {
        "FixedPoint": lambda: rbpsolve.FixedPoint(rtol=rtol, max_steps=3000),
        "Neumann": lambda: rbpsolve.Neumann(rtol=rtol, max_steps=3000),
        "CGNE": lambda: rbpsolve.CGNE(rtol=rtol, max_steps=3000),
        "LSQR": lambda: rbpsolve.LSQR(rtol=rtol, max_steps=3000),
        "GMRES": lambda: rbpsolve.GMRES(rtol=rtol),  # restart 50 > n: never restarts
        "GMRES(4)": lambda: rbpsolve.GMRES(rtol=rtol, restart=RESTART, max_steps=3000),
    }[name]()


# Where each method must converge.
# * FixedPoint/Neumann: iff rho(J) < 1 (contractive, symmetric, nonnormal: rho < 1 <= ||J||).
# * CGNE, LSQR and unrestarted GMRES: every nonsingular A (finite termination in n steps
#   in exact arithmetic), so every kind, nearly_singular and divergent included. CGNE
#   squares the condition number, which costs it iterations, not attainable accuracy: in
#   its CGLS form its final residual is, like LSQR's, of order eps * ||A|| ||x||
#   (Bjorck, Elfving and Strakos, SIMAX 19(3), 1998), below the nearly_singular rtol.
# * GMRES(m): guaranteed for every m when the symmetric part of A is positive definite
#   (Elman 1982). For A = I - J^T with ||J|| < 1, x^T A x >= (1 - ||J||) ||x||^2, so on
#   contractive and symmetric; on the others restarted GMRES may stagnate.
CONVERGES = {
    "FixedPoint": ("contractive", "symmetric", "nonnormal"),
    "Neumann": ("contractive", "symmetric", "nonnormal"),
    "CGNE": ("contractive", "symmetric", "nonnormal", "nearly_singular", "divergent"),
    "LSQR": ("contractive", "symmetric", "nonnormal", "nearly_singular", "divergent"),
    "GMRES": ("contractive", "symmetric", "nonnormal", "nearly_singular", "divergent"),
    "GMRES(4)": ("contractive", "symmetric"),
}
STATIONARY = ("FixedPoint", "Neumann")

CASES = [(name, kind) for name, kinds in CONVERGES.items() for kind in kinds]


@pytest.fixture(scope="module")
def be():
    return Backend("numpy")


def dense(problem):
    A = np.eye(problem.n) - problem.J.T
    s = np.linalg.svd(A, compute_uv=False)
    return A, float(s[0]), float(s[-1])


def expected_products(name: str, res, *, warm: bool):
    """(num_vjp, num_jvp) each method must spend for ``res.num_steps`` steps.

    A = I - J^T, so a product A v is one VJP and A^T u one JVP.
    """
    k = res.num_steps
    start = 1 if warm else 0  # b - A x0
    # Before CONVERGED the loop recomputes the true residual of the returned x: one A v
    # (GMRES verifies its own answers at the end of each cycle).
    verify = 1 if res.status is rbpsolve.Status.CONVERGED else 0
    if name == "FixedPoint":
        # The first step from zero is x_1 = g (J^T 0 = 0): free.
        return (k if warm else k - 1) + verify, 0
    if name == "Neumann":
        return k + start + verify, 0
    if name in ("CGNE", "LSQR"):
        # One A^T r (resp. A^T u) at the start, then one A and one A^T per step.
        return k + start + verify, k + 1
    # GMRES: one A v per Arnoldi step, plus one to recompute the true residual at the end
    # of each cycle (restart, or once the estimate meets the tolerance).
    restart = RESTART if name == "GMRES(4)" else 50
    return k + math.ceil(k / restart) + start, 0


def check_against_dense(name, problem, res, rtol):
    A, smax, smin = dense(problem)
    cond = smax / smin
    n = problem.n

    x = res.x
    assert array_api_compat.array_namespace(x) is array_api_compat.numpy
    assert isinstance(x, np.ndarray) and x.shape == problem.shape and x.dtype == np.float64
    assert res.status is rbpsolve.Status.CONVERGED, res
    assert res.ok
    assert res.num_steps == len(res.history) >= 1
    assert all(math.isfinite(h) for h in res.history)

    g = problem.g.reshape(-1)
    g_norm = float(np.linalg.norm(g))
    assert res.b_norm == pytest.approx(g_norm, rel=1e-14)
    tol = rtol * g_norm
    assert res.history[-1] <= tol  # the stopping test that ended the solve

    xv = x.reshape(-1)
    x_norm = float(np.linalg.norm(xv))
    true_residual = float(np.linalg.norm(g - A @ xv))
    lag = max(1.0, problem.norm) if name in STATIONARY else 1.0
    # Rounding of the residual: a few eps per product on ||g|| + ||A|| ||x||, accumulated
    # by the recurrences over the steps (observed: below 1 eps * (...)).
    rounding = 10 * (n + res.num_steps) * EPS * (g_norm + smax * x_norm)
    assert true_residual <= lag * tol + rounding

    # ||x - z|| <= ||r|| / sigma_min <= cond(A) * (lag * rtol + rounding / ||g||) * ||z||,
    # plus the reference's own error (backward stable LU: n * eps * cond * ||z||).
    z = problem.z.reshape(-1)
    z_norm = float(np.linalg.norm(z))
    error = float(np.linalg.norm(xv - z))
    assert error <= cond * (lag * rtol + rounding / g_norm + n * EPS) * z_norm

    if name not in STATIONARY:
        # GMRES recomputes ||b - A x|| exactly; CGNE and LSQR carry it by recurrence.
        assert res.residual_norm is not None
    if res.residual_norm is not None:
        assert abs(res.residual_norm - true_residual) <= rounding
        assert res.residual_norm <= tol
    # No norm_bound was declared: there is no rigorous error bound to report.
    assert res.error_bound is None


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_solver_matches_dense_solve(be, name, kind, seed, shape):
    problem = make_problem(kind, shape, seed)
    rtol = RTOL[kind]
    J = problem.operator(be)
    g = be.asarray(problem.g)
    g_copy = g.copy()

    res = rbpsolve.solve_adjoint(J, g, make_solver(name, rtol), throw=False)

    check_against_dense(name, problem, res, rtol)
    assert (res.num_vjp, res.num_jvp) == expected_products(name, res, warm=False)
    if name == "GMRES(4)":
        assert res.num_steps > RESTART  # it did restart
    assert np.array_equal(g, g_copy)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_warm_start_matches_dense_solve(be, name, kind, seed, shape):
    """From an arbitrary x0 every solver still reaches the dense solution, at one extra
    product for the start's residual, and leaves x0 and g untouched."""
    problem = make_problem(kind, shape, seed)
    rtol = RTOL[kind]
    J = problem.operator(be)
    g = be.asarray(problem.g)
    rng = np.random.default_rng([seed, 7])
    x0 = be.asarray(rng.standard_normal(problem.shape))
    g_copy, x0_copy = g.copy(), x0.copy()

    res = rbpsolve.solve_adjoint(J, g, make_solver(name, rtol), x0=x0, throw=False)

    check_against_dense(name, problem, res, rtol)
    assert (res.num_vjp, res.num_jvp) == expected_products(name, res, warm=True)
    assert np.array_equal(g, g_copy)
    assert np.array_equal(x0, x0_copy)
    assert not np.shares_memory(res.x, x0)


@pytest.mark.parametrize("name", list(CONVERGES))
@pytest.mark.parametrize("seed", range(5))
def test_warm_start_near_solution_saves_steps(be, name, seed):
    """A start with relative residual ~1e-6 needs fewer steps than one from zero: the
    tolerance is relative to ||g||, not to the start's residual."""
    problem = make_problem("contractive", (3, 5), seed)
    rtol = RTOL["contractive"]
    J = problem.operator(be)
    g = be.asarray(problem.g)
    rng = np.random.default_rng([seed, 11])
    x0 = be.asarray(problem.z + 1e-6 * np.linalg.norm(problem.z) * rng.standard_normal(problem.shape) / 4)

    cold = rbpsolve.solve_adjoint(J, g, make_solver(name, rtol))
    warm = rbpsolve.solve_adjoint(J, g, make_solver(name, rtol), x0=x0)

    check_against_dense(name, problem, warm, rtol)
    assert warm.num_steps < cold.num_steps
    assert warm.num_vjp < cold.num_vjp


DIVERGING = {
    "FixedPoint": lambda: rbpsolve.FixedPoint(rtol=1e-10, max_steps=1000),
    "Neumann": lambda: rbpsolve.Neumann(rtol=1e-10, max_steps=1000),
    "Neumann(fixed K)": lambda: rbpsolve.Neumann(max_steps=1000),  # rtol = atol = 0
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(DIVERGING))
def test_stationary_methods_report_divergence(be, name, seed, shape):
    """rho(J) > 1: FixedPoint and Neumann must say DIVERGED (not run to max_steps, not
    return garbage), and hand back the best iterate they saw."""
    problem = make_problem("divergent", shape, seed)
    assert problem.rho > 1
    J = problem.operator(be)
    g = be.asarray(problem.g)
    g_copy = g.copy()
    solver = DIVERGING[name]()

    res = rbpsolve.solve_adjoint(J, g, solver, throw=False)

    assert res.status is rbpsolve.Status.DIVERGED
    assert not res.ok
    # Growth at rate >= rho >= 1.1 passes the factor 1e4 within log(1e4)/log(1.1) ~ 97
    # steps after the transient: long before max_steps.
    assert res.num_steps == len(res.history) < solver.max_steps
    assert res.history[-1] > solver.divergence_factor * min(res.history)
    assert res.num_vjp <= res.num_steps and res.num_jvp == 0

    x = res.x
    assert isinstance(x, np.ndarray) and x.shape == problem.shape and x.dtype == np.float64
    assert np.all(np.isfinite(x))
    # The returned x is the best iterate: each history entry is the residual of the
    # iterate before it, so the smallest entry is the residual of the returned x.
    A, smax, _ = dense(problem)
    xv = x.reshape(-1)
    true_residual = float(np.linalg.norm(problem.g.reshape(-1) - A @ xv))
    rounding = 10 * (problem.n + res.num_steps) * EPS * (
        np.linalg.norm(problem.g) + smax * np.linalg.norm(xv)
    )
    assert abs(true_residual - min(res.history)) <= rounding
    assert np.array_equal(g, g_copy)

    with pytest.raises(rbpsolve.SolveError, match="DIVERGED") as info:
        rbpsolve.solve_adjoint(J, g, solver, throw=True)
    assert info.value.result.status is rbpsolve.Status.DIVERGED
    assert info.value.result.num_steps == res.num_steps
    assert np.array_equal(info.value.result.x, res.x)


@pytest.mark.parametrize("name", list(CONVERGES))
def test_zero_right_hand_side_gives_zero(be, name):
    """g = 0 has the solution 0: returned exactly at once, without a step, a product or a
    division by ||g|| = 0 (and whatever x0 was given: the answer does not depend on it)."""
    problem = make_problem("nonnormal", (3, 5), 0)
    g = be.asarray(np.zeros(problem.shape))
    res = rbpsolve.solve_adjoint(problem.operator(be), g, make_solver(name, 1e-10))
    assert res.status is rbpsolve.Status.CONVERGED
    assert res.x.shape == problem.shape and res.x.dtype == np.float64
    assert np.array_equal(res.x, np.zeros(problem.shape))
    assert res.b_norm == 0.0 and res.num_steps == 0
    assert res.num_vjp == 0 and res.num_jvp == 0 and res.residual_norm == 0.0
    assert not np.shares_memory(res.x, g)
    x0 = be.asarray(np.ones(problem.shape))
    res = rbpsolve.solve_adjoint(problem.operator(be), g, make_solver(name, 1e-10), x0=x0)
    assert res.status is rbpsolve.Status.CONVERGED and np.array_equal(res.x, np.zeros(problem.shape))
