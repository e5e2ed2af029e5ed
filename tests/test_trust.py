"""Trustworthy results: each silent wrong answer a hostile user found is a regression test.

A result never says ok when it is wrong: a fixed budget whose series is not converging
is DIVERGED, a CONVERGED claim is decided on a recomputed residual, a tolerance below
the dtype's reach is ACCURACY_LIMIT, a declared norm bound that the solve contradicts
voids the error bound, and nothing the caller gave is changed or dropped.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import rbpsolve
from rbpsolve import Status

ALL_SOLVERS = {
    "FixedPoint": lambda **kw: rbpsolve.FixedPoint(**{"rtol": 1e-8, **kw}),
    "Neumann": lambda **kw: rbpsolve.Neumann(**{"rtol": 1e-8, "max_steps": 2000, **kw}),
    "CGNE": lambda **kw: rbpsolve.CGNE(**{"rtol": 1e-8, **kw}),
    "LSQR": lambda **kw: rbpsolve.LSQR(**{"rtol": 1e-8, **kw}),
    "GMRES": lambda **kw: rbpsolve.GMRES(**{"rtol": 1e-8, **kw}),
}


def _matrix(n, rho, seed, *, normal=False):
    """A random J with spectral radius ``rho`` (non-symmetric unless ``normal``)."""
    rng = np.random.default_rng(seed)
    if normal:
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        lam = rng.uniform(-1, 1, n)
        lam *= rho / np.abs(lam).max()
        return Q @ np.diag(lam) @ Q.T
    W = rng.standard_normal((n, n))
    return W * (rho / np.abs(np.linalg.eigvals(W)).max())


def _operator(W, dtype=np.float64, **kw):
    W = W.astype(dtype)
    return rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(W.shape[0], dtype), **kw)


def _exact(W, g):
    return np.linalg.solve(np.eye(W.shape[0]) - W.T.astype(np.float64), g.astype(np.float64))


# ------------------------------------------------------------ 1. fixed budgets that diverge
@pytest.mark.parametrize("rho", [1.05, 1.3, 1.6])
@pytest.mark.parametrize("solver", [
    rbpsolve.Neumann(max_steps=20),
    rbpsolve.FixedPoint(max_steps=21, rtol=0.0),
    rbpsolve.RandomizedNeumann(min_steps=10, seed=0),
], ids=lambda s: type(s).__name__)
def test_a_diverging_fixed_budget_is_not_ok(rho, solver):
    W = _matrix(30, rho, seed=1)
    res = rbpsolve.solve_adjoint(_operator(W), np.ones(30), solver, throw=False)
    assert res.status is Status.DIVERGED and not res.ok, res
    with pytest.raises(rbpsolve.SolveError, match="DIVERGED"):
        rbpsolve.solve_adjoint(_operator(W), np.ones(30), solver)


def test_a_diverging_fixed_budget_with_the_check_off_is_the_plain_series():
    W = _matrix(30, 1.3, seed=1)
    g = np.ones(30)
    res = rbpsolve.solve_adjoint(_operator(W), g, rbpsolve.Neumann(max_steps=20, divergence_factor=math.inf))
    assert res.status is Status.BUDGET_SPENT and res.num_vjp == 20
    series = sum(np.linalg.matrix_power(W.T, t) @ g for t in range(21))
    np.testing.assert_allclose(res.x, series, rtol=1e-10)


def test_a_converging_fixed_budget_keeps_exactly_k_products():
    W = _matrix(30, 0.9, seed=2, normal=True)
    res = rbpsolve.solve_adjoint(_operator(W), np.ones(30), rbpsolve.Neumann(max_steps=20))
    assert res.status is Status.BUDGET_SPENT and (res.num_vjp, res.num_jvp) == (20, 0)
    assert res.residual_kind == "previous iterate" and res.residual_norm == res.history[-1]


def test_a_budget_no_better_than_zero_is_not_ok():
    # rho = ||J|| = 1 exactly (a rotation): the terms never shrink.
    c, s = math.cos(0.3), math.sin(0.3)
    W = np.kron(np.eye(5), np.array([[c, -s], [s, c]]))
    res = rbpsolve.solve_adjoint(_operator(W), np.ones(10), rbpsolve.Neumann(max_steps=20), throw=False)
    assert res.status is Status.DIVERGED


def test_late_growth_of_a_small_component_is_caught():
    # g mostly along a contracting direction, a little along one with eigenvalue 1.05: the
    # last term is far below ||g||, but the terms grow at the end of the budget.
    W = np.diag([0.5, 1.05])
    res = rbpsolve.solve_adjoint(_operator(W), np.array([1.0, 0.01]), rbpsolve.Neumann(max_steps=20), throw=False)
    assert res.history[-1] < 0.1 and res.status is Status.DIVERGED


# ------------------------------------------------------------ 2. scale of the right-hand side
@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e-23), (np.float64, 1e-170), (np.float32, 1e33),
                                          (np.float64, 1e300), (np.float32, 1e-40)])
@pytest.mark.parametrize("name", list(ALL_SOLVERS))
def test_tiny_and_huge_right_hand_sides(dtype, scale, name):
    W = _matrix(20, 0.6, seed=3, normal=True)
    g = np.random.default_rng(4).standard_normal(20)
    rtol = 1e-4 if dtype == np.float32 else 1e-8
    solver = ALL_SOLVERS[name](rtol=rtol)
    res = rbpsolve.solve_adjoint(_operator(W, dtype), (scale * g).astype(dtype), solver)
    assert res.status is Status.CONVERGED and res.num_steps > 1
    z = _exact(W, g)
    err = np.linalg.norm(res.x.astype(np.float64) / scale - z) / np.linalg.norm(z)
    assert err < 10 * rtol * 4  # cond(I - J^T) <= 4 here
    assert res.x.dtype == dtype
    assert res.b_norm == pytest.approx(scale * np.linalg.norm(g.astype(dtype)), rel=1e-5)
    assert res.residual_norm <= rtol * res.b_norm


# ------------------------------------------------------------ 3. recurrences past the dtype
@pytest.mark.parametrize("name", list(ALL_SOLVERS))
def test_tolerance_below_float32_reach_is_not_claimed(name):
    W = _matrix(40, 0.8, seed=5)
    g = np.random.default_rng(6).standard_normal(40).astype(np.float32)
    res = rbpsolve.solve_adjoint(_operator(W, np.float32), g, ALL_SOLVERS[name](rtol=1e-14, max_steps=400),
                                 throw=False)
    assert res.status in (Status.ACCURACY_LIMIT, Status.MAX_STEPS) and not res.ok, res
    true = np.linalg.norm(g - (res.x - W.T.astype(np.float32) @ res.x).astype(np.float64))
    if res.status is Status.ACCURACY_LIMIT:
        assert res.residual_kind == "verified"
        assert res.residual_norm == pytest.approx(true, rel=0.5, abs=1e-6 * float(np.linalg.norm(g)))
        assert res.info["attainable"] > 1e-14 * np.linalg.norm(g)


@pytest.mark.parametrize("name", ["CGNE", "LSQR"])
def test_cgne_lsqr_converged_is_the_true_residual(name):
    W = _matrix(40, 0.8, seed=5)
    g = np.random.default_rng(6).standard_normal(40).astype(np.float32)
    res = rbpsolve.solve_adjoint(_operator(W, np.float32), g, ALL_SOLVERS[name](rtol=1e-5))
    assert res.status is Status.CONVERGED and res.residual_kind == "verified"
    true = np.linalg.norm(g.astype(np.float64) - (np.eye(40) - W.T) @ res.x.astype(np.float64))
    assert true <= 1.1e-5 * np.linalg.norm(g)
    # One more A v product than the steps' own: the verification.
    assert res.num_vjp == res.num_steps + 1


# ------------------------------------------------------------ 4. declared norm bounds
@pytest.mark.parametrize("bad", [float("nan"), -5.0, float("inf"), -1e-300])
def test_norm_bound_must_be_a_finite_nonnegative_number(bad):
    W = np.eye(3) * 0.5
    with pytest.raises(ValueError, match="norm_bound must be a finite number >= 0"):
        rbpsolve.MatrixOperator(W, norm_bound=bad)
    with pytest.raises(ValueError, match="norm_bound must be a finite number >= 0"):
        rbpsolve.JacobianOperator(lambda u: u, like=np.zeros(3), norm_bound=bad)
    with pytest.raises(ValueError, match="norm_bound must be a finite number >= 0"):
        rbpsolve.aslinearoperator(W, norm_bound=bad)
    with pytest.raises(TypeError, match="norm_bound must be None or a number"):
        rbpsolve.MatrixOperator(W, norm_bound="0.5")


def test_a_declared_bound_the_solve_contradicts_gives_no_error_bound():
    W = _matrix(30, 0.9, seed=7, normal=True)
    J = _operator(W, norm_bound=0.2)  # false: ||J|| = 0.9
    for solver in (rbpsolve.Neumann(max_steps=20), rbpsolve.FixedPoint(rtol=1e-10)):
        res = rbpsolve.solve_adjoint(J, np.ones(30), solver)
        assert res.error_bound is None
        assert res.info["norm_bound_contradicted"] > 0.2
    honest = rbpsolve.solve_adjoint(_operator(W, norm_bound=0.9), np.ones(30), rbpsolve.Neumann(max_steps=20))
    assert honest.error_bound is not None and "norm_bound_contradicted" not in honest.info
    assert np.linalg.norm(honest.x - _exact(W, np.ones(30))) <= honest.error_bound


# ------------------------------------------------------------ 6. a map that works in place
@pytest.mark.parametrize("solver", [rbpsolve.Picard(rtol=1e-10), rbpsolve.Anderson(rtol=1e-10)],
                         ids=lambda s: type(s).__name__)
def test_a_forward_map_returning_its_input_is_refused(solver):
    def F(h):
        h *= 0.5
        h += 1.0
        return h

    h0 = np.zeros(4)
    with pytest.raises(ValueError, match="returned its own input"):
        rbpsolve.fixed_point(F, h0, solver)
    assert np.all(h0 == 0)


# ------------------------------------------------------------ 7. stop requests in a chain
def test_a_callback_stop_ends_the_whole_fallback_chain():
    W = _matrix(30, 1.3, seed=1)
    calls = []
    chain = rbpsolve.Fallback(rbpsolve.FixedPoint(rtol=1e-10), rbpsolve.GMRES(rtol=1e-10))
    res = rbpsolve.solve_adjoint(_operator(W), np.ones(30), chain, callback=lambda info: calls.append(1) or True,
                                 throw=False)
    assert res.status is Status.STOPPED and isinstance(res.solver, rbpsolve.FixedPoint)
    assert res.attempts == () and len(calls) == 1


# ------------------------------------------------------------ 8. callbacks that write into their argument
@pytest.mark.parametrize("solver", [*(f() for f in ALL_SOLVERS.values()), rbpsolve.Neumann(max_steps=10),
                                    rbpsolve.RandomizedNeumann(min_steps=3, seed=1)],
                         ids=lambda s: type(s).__name__)
def test_a_vjp_writing_into_its_argument_leaves_g_and_x0_alone(solver):
    W = _matrix(12, 0.5, seed=8, normal=True)

    def vjp(u):
        out = W.T @ u
        u[:] = 7.0  # vandalism
        return out

    J = rbpsolve.JacobianOperator(vjp, lambda v: W @ v, like=np.zeros(12))
    g = np.linspace(1.0, 2.0, 12)
    x0 = np.full(12, 0.25)
    g_copy, x0_copy = g.copy(), x0.copy()
    with np.errstate(all="ignore"):  # the vandal wrecks the solver's own vectors too
        rbpsolve.solve_adjoint(J, g, solver, throw=False)
        rbpsolve.solve_adjoint(J, g, solver, x0=x0, throw=False)
    np.testing.assert_array_equal(g, g_copy)
    np.testing.assert_array_equal(x0, x0_copy)


# ------------------------------------------------------------ 9. complex products from scipy
def test_a_real_scipy_operator_returning_complex_values_is_refused():
    op = spla.LinearOperator((4, 4), matvec=lambda x: (1 + 1j) * x, rmatvec=lambda y: (1 - 1j) * y, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="returned complex values"):
            rbpsolve.solve(op, np.ones(4), rbpsolve.GMRES())


# ------------------------------------------------------------ 10. the best attempt of a failed chain
def test_a_failed_chain_returns_its_best_attempt():
    W = _matrix(30, 0.95, seed=9, normal=True)
    g = np.ones(30)
    # GMRES with an unreachable tolerance fails (ACCURACY_LIMIT) with an accurate x; two
    # FixedPoint steps then fail (MAX_STEPS) far from it.
    chain = rbpsolve.Fallback(rbpsolve.GMRES(rtol=1e-300), rbpsolve.FixedPoint(max_steps=2, rtol=1e-12))
    calls = []
    J = rbpsolve.JacobianOperator(lambda u: calls.append(1) or W.T @ u, lambda v: W @ v, like=g)
    res = rbpsolve.solve_adjoint(J, g, chain, throw=False)
    assert not res.ok and isinstance(res.solver, rbpsolve.GMRES) and res.info["fallback_index"] == 0
    assert [type(a.solver) for a in res.attempts] == [rbpsolve.FixedPoint]
    assert np.linalg.norm(res.x - _exact(W, g)) < 1e-7 * np.linalg.norm(_exact(W, g))
    assert all(a.residual_kind == "verified" and a.residual_norm >= res.residual_norm for a in res.attempts)
    assert res.num_vjp == len(calls)  # every member's products, verifications included
    with pytest.raises(rbpsolve.SolveError) as excinfo:
        rbpsolve.solve_adjoint(_operator(W), g, chain)
    assert isinstance(excinfo.value.result.solver, rbpsolve.GMRES)


# ------------------------------------------------------------ crashes from deep inside
def test_a_vjp_from_another_library_is_named():
    torch = pytest.importorskip("torch")
    J = rbpsolve.JacobianOperator(lambda u: torch.from_numpy(u), like=np.zeros(3))
    with pytest.raises(TypeError, match=r"vjp returned a torch\.Tensor but the operator works on numpy"):
        rbpsolve.solve_adjoint(J, np.ones(3), rbpsolve.GMRES())
    Jt = rbpsolve.JacobianOperator(lambda u: u.numpy(), like=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"vjp returned a numpy\.ndarray but the operator works on torch"):
        rbpsolve.solve_adjoint(Jt, torch.ones(3, dtype=torch.float64), rbpsolve.GMRES())


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_numpy_matrix_is_refused_by_name():
    J = _operator(np.eye(3) * 0.5)
    with pytest.raises(TypeError, match="numpy.matrix"):
        rbpsolve.solve_adjoint(J, np.matrix(np.ones(3)), rbpsolve.GMRES())
    with pytest.raises(TypeError, match="numpy.matrix"):
        rbpsolve.JacobianOperator(lambda u: u, like=np.matrix(np.ones(3)))


@pytest.mark.parametrize("answer", [np.ones(3, dtype=bool), [True, False], np.zeros((2, 2))])
def test_a_callback_returning_an_array_is_a_callback_error(answer):
    J = _operator(np.eye(3) * 0.5)
    with pytest.raises(rbpsolve.CallbackError, match=r"return True to stop|not True/False/None"):
        rbpsolve.solve_adjoint(J, np.ones(3), rbpsolve.GMRES(), callback=lambda info: answer)


@pytest.mark.parametrize("cls", [rbpsolve.FixedPoint, rbpsolve.Neumann, rbpsolve.RandomizedNeumann])
def test_divergence_factor_is_checked(cls):
    with pytest.raises(TypeError, match="divergence_factor must be a number"):
        cls(divergence_factor="x")
    for bad in (float("nan"), 1.0, -3.0):
        with pytest.raises(ValueError, match="divergence_factor must be a number > 1"):
            cls(divergence_factor=bad)


@pytest.mark.parametrize("cls", [rbpsolve.CGNE, rbpsolve.LSQR])
def test_lsq_rtol_is_checked(cls):
    for bad in (float("nan"), -1.0, 1.0, float("inf")):
        with pytest.raises(ValueError, match="lsq_rtol must be None or a finite number"):
            cls(lsq_rtol=bad)
    with pytest.raises(TypeError, match="lsq_rtol must be None or a float"):
        cls(lsq_rtol="1e-8")


@pytest.mark.parametrize("cls", list(ALL_SOLVERS))
def test_verify_is_checked(cls):
    with pytest.raises(TypeError, match="verify must be None, True or False"):
        ALL_SOLVERS[cls](verify="yes")


def test_gmres_restart_is_capped_at_the_problem_size():
    W = _matrix(60, 0.7, seed=10)
    res = rbpsolve.solve_adjoint(_operator(W), np.ones(60), rbpsolve.GMRES(restart=10**12, rtol=1e-10))
    assert res.status is Status.CONVERGED
    np.testing.assert_allclose(res.x, _exact(W, np.ones(60)), rtol=1e-8)


def test_verify_true_buys_the_exact_residual_of_a_fixed_budget():
    W = _matrix(30, 0.9, seed=2, normal=True)
    g = np.ones(30)
    res = rbpsolve.solve_adjoint(_operator(W), g, rbpsolve.Neumann(max_steps=20, verify=True))
    assert res.status is Status.BUDGET_SPENT and res.num_vjp == 21 and res.residual_kind == "verified"
    assert res.residual_norm == pytest.approx(np.linalg.norm(g - (res.x - W.T @ res.x)), rel=1e-10)


# ------------------------------------------------------------ the same guarantees on every backend
@pytest.mark.parametrize("name", list(ALL_SOLVERS))
def test_scaling_verification_and_estimates_on_every_backend(backend, name):
    W = _matrix(20, 0.6, seed=3, normal=True)
    g = np.random.default_rng(4).standard_normal(20)
    xp = backend.xp
    Wb = backend.asarray(W, "float32")
    J = rbpsolve.JacobianOperator(lambda u: xp.matmul(xp.matrix_transpose(Wb), u), lambda v: xp.matmul(Wb, v),
                                  like=backend.asarray(np.zeros(20), "float32"))
    gb = backend.asarray(1e-23 * g, "float32")
    res = rbpsolve.solve_adjoint(J, gb, ALL_SOLVERS[name](rtol=1e-4))
    assert res.status is Status.CONVERGED and res.residual_kind == "verified"
    z = _exact(W, g)
    x = backend.to_numpy(res.x) / 1e-23
    assert np.linalg.norm(x - z) <= 40 * 1e-4 * np.linalg.norm(z)
    assert np.linalg.norm(x - z) * 1e-23 <= 10 * res.error_estimate
    np.testing.assert_array_equal(backend.to_numpy(gb), (1e-23 * g).astype(np.float32))  # untouched


@pytest.mark.parametrize("name", ["CGNE", "LSQR", "GMRES"])
def test_a_krylov_error_bound_rests_on_the_verified_residual(name):
    W = _matrix(40, 0.8, seed=5, normal=True)
    q = float(np.linalg.norm(W, 2))
    g = np.random.default_rng(6).standard_normal(40).astype(np.float32)
    res = rbpsolve.solve_adjoint(_operator(W, np.float32, norm_bound=q), g, ALL_SOLVERS[name](rtol=1e-5))
    assert res.residual_kind == "verified"
    assert res.error_bound == pytest.approx(res.residual_norm / (1 - q), rel=1e-6)
    assert np.linalg.norm(res.x.astype(np.float64) - _exact(W, g)) <= res.error_bound * 1.01


@pytest.mark.parametrize("name", ["CGNE", "LSQR", "GMRES"])
def test_a_krylov_solve_that_contradicts_the_declared_bound_gives_no_error_bound(name):
    W = _matrix(40, 0.9, seed=7, normal=True)  # ||J|| = 0.9, declared 0.2
    g = np.random.default_rng(1).standard_normal(40)
    res = rbpsolve.solve_adjoint(_operator(W, norm_bound=0.2), g, ALL_SOLVERS[name]())
    err = np.linalg.norm(res.x - _exact(W, g))
    assert res.error_bound is None and res.info["norm_bound_contradicted"] > 0.2
    assert err <= 10 * res.error_estimate


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_an_empty_state_is_solved_exactly(shape):
    J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(shape))
    res = rbpsolve.solve_adjoint(J, np.zeros(shape), rbpsolve.GMRES())
    assert res.status is Status.CONVERGED and res.x.shape == shape and res.error_estimate == 0.0
