"""Bad input is refused at the boundary with a message that names the problem and the fix.

Also: settings objects are frozen, and a solve mutates nothing the caller passed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import rbpsolve
from conftest import Backend
from operators import make_problem

N = 4


@pytest.fixture
def problem():
    return make_problem("contractive", (N,), seed=0)


@pytest.fixture
def J(problem):
    return problem.operator(Backend("numpy"))


@pytest.fixture
def J_vjp_only(problem):
    return problem.operator(Backend("numpy"), jvp=False)


# ----------------------------------------------------------------------------- right-hand side
def test_g_shape_mismatch_quotes_both_shapes(J):
    with pytest.raises(ValueError, match=r"g has shape \(5,\) but J acts on arrays of shape \(4,\)"):
        rbpsolve.solve_adjoint(J, np.ones(5), rbpsolve.GMRES())
    with pytest.raises(ValueError, match=r"g has shape \(1, 4\) but J acts on arrays of shape \(4,\)"):
        rbpsolve.solve_adjoint(J, np.ones((1, N)), rbpsolve.GMRES())
    with pytest.raises(ValueError, match=r"b has shape \(5,\) but A maps to arrays of shape \(4,\)"):
        rbpsolve.solve(J, np.ones(5), rbpsolve.GMRES())


def test_g_dtype_mismatch_says_how_to_cast(J):
    with pytest.raises(TypeError, match=r"g has dtype float32 but the operator works in float64; cast g"):
        rbpsolve.solve_adjoint(J, np.ones(N, np.float32), rbpsolve.GMRES())
    with pytest.raises(TypeError, match=r"or build the operator with a `like` array of dtype float32"):
        rbpsolve.solve_adjoint(J, np.ones(N, np.float32), rbpsolve.GMRES())
    # An integer g: casting is the fix; an integer operator is not (rbpsolve refuses those).
    with pytest.raises(TypeError, match=r"g has dtype int64 but the operator works in float64; cast g") as excinfo:
        rbpsolve.solve_adjoint(J, np.ones(N, np.int64), rbpsolve.GMRES())
    assert "like" not in str(excinfo.value)


def test_namespace_mismatch_names_both_libraries(J):
    torch = pytest.importorskip("torch")
    p = make_problem("contractive", (N,), seed=0)
    Jt = p.operator(Backend("torch"))
    with pytest.raises(TypeError, match=r"g is a numpy array but the operator works on torch arrays; convert g"):
        rbpsolve.solve_adjoint(Jt, np.ones(N), rbpsolve.GMRES())
    with pytest.raises(TypeError, match=r"g is a torch array but the operator works on numpy arrays"):
        rbpsolve.solve_adjoint(J, torch.ones(N, dtype=torch.float64), rbpsolve.GMRES())
    with pytest.raises(TypeError, match=r"x0 is a torch array but the operator works on numpy"):
        rbpsolve.solve_adjoint(J, np.ones(N), rbpsolve.GMRES(), x0=torch.zeros(N, dtype=torch.float64))


@pytest.mark.parametrize("bad", [[1.0, 2.0, 3.0, 4.0], (1.0,) * N, 3.0, "g", None], ids=repr)
def test_g_not_an_array(J, bad):
    with pytest.raises(TypeError, match=r"g must be an array; got (list|tuple|float|str|NoneType)"):
        rbpsolve.solve_adjoint(J, bad, rbpsolve.GMRES())


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_g_is_refused(J, value):
    g = np.ones(N)
    g[2] = value
    with pytest.raises(ValueError, match="g contains NaN or inf; the solve needs finite values"):
        rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES())
    x0 = np.zeros(N)
    x0[1] = value
    with pytest.raises(ValueError, match="x0 contains NaN or inf"):
        rbpsolve.solve_adjoint(J, np.ones(N), rbpsolve.GMRES(), x0=x0)


def test_x0_wrong_shape_or_dtype(J):
    with pytest.raises(ValueError, match=r"x0 has shape \(3,\) but J acts on arrays of shape \(4,\)"):
        rbpsolve.solve_adjoint(J, np.ones(N), rbpsolve.GMRES(), x0=np.zeros(3))
    with pytest.raises(TypeError, match=r"x0 has dtype float32 but the operator works in float64"):
        rbpsolve.solve_adjoint(J, np.ones(N), rbpsolve.FixedPoint(), x0=np.zeros(N, np.float32))
    with pytest.raises(ValueError, match=r"x0 has shape \(3,\) but A acts on arrays of shape \(4,\)"):
        rbpsolve.solve(J, np.ones(N), rbpsolve.GMRES(), x0=np.zeros(3))
    with pytest.raises(TypeError, match="x0 must be an array; got list"):
        rbpsolve.solve(J, np.ones(N), rbpsolve.GMRES(), x0=[0.0] * N)


# ----------------------------------------------------------------------------- operators
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128])
def test_non_real_floating_like_is_refused(dtype):
    # The message names the argument the user passed (`like`, not FunctionOperator's like_in).
    with pytest.raises(TypeError, match=r"^like has dtype .*real floating-point.*float32 or float64"):
        rbpsolve.JacobianOperator(lambda u: u, like=np.zeros(N, dtype=dtype))
    with pytest.raises(TypeError, match=r"like_out has dtype .*real floating-point"):
        rbpsolve.FunctionOperator(lambda x: x, like_in=np.zeros(N), like_out=np.zeros(N, dtype=dtype))
    with pytest.raises(TypeError, match=r"real floating-point"):
        rbpsolve.MatrixOperator(np.zeros((N, N), dtype=dtype))


def test_integer_torch_like_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"has dtype torch.int64.*real floating-point"):
        rbpsolve.JacobianOperator(lambda u: u, like=torch.zeros(N, dtype=torch.int64))


def test_operator_construction_errors():
    like = np.zeros(N)
    with pytest.raises(ValueError, match="vjp is required"):
        rbpsolve.JacobianOperator(None, like=like)
    with pytest.raises(TypeError, match="vjp must be callable; got int"):
        rbpsolve.JacobianOperator(3, like=like)
    with pytest.raises(TypeError, match="jvp must be callable; got str"):
        rbpsolve.JacobianOperator(lambda u: u, "jvp", like=like)
    with pytest.raises(TypeError, match=r"^like must be an array .*got list"):
        rbpsolve.JacobianOperator(lambda u: u, like=[0.0] * N)
    with pytest.raises(TypeError, match=r"^like_in must be an array .*got tuple"):
        rbpsolve.FunctionOperator(lambda x: x, like_in=(0.0,) * N)
    with pytest.raises(ValueError, match="give at least one of matvec and rmatvec"):
        rbpsolve.FunctionOperator(None, None, like_in=like)
    with pytest.raises(ValueError, match=r"MatrixOperator needs a 2-D array; got shape \(4,\)"):
        rbpsolve.MatrixOperator(like)


def test_solver_needing_a_jvp_names_the_alternatives(J_vjp_only):
    g = np.ones(N)
    for solver in (rbpsolve.CGNE(), rbpsolve.LSQR()):
        name = type(solver).__name__
        with pytest.raises(
            ValueError,
            match=rf"{name} needs products J v \(a jvp\), but J was built without jvp=; pass jvp= or use "
            r"FixedPoint, Neumann or GMRES",
        ):
            rbpsolve.solve_adjoint(J_vjp_only, g, solver)
    # In a Fallback chain the check runs before any solver starts.
    with pytest.raises(ValueError, match="LSQR needs products J v"):
        rbpsolve.solve_adjoint(J_vjp_only, g, rbpsolve.Fallback(rbpsolve.GMRES(max_steps=1), rbpsolve.LSQR()))
    # The solvers that need only VJPs work.
    for solver in (rbpsolve.FixedPoint(rtol=1e-8), rbpsolve.Neumann(max_steps=80), rbpsolve.GMRES(rtol=1e-8)):
        assert rbpsolve.solve_adjoint(J_vjp_only, g, solver).ok


def test_operator_without_rmatvec_for_lsqr_via_solve():
    A = rbpsolve.FunctionOperator(lambda x: 2.0 * x, like_in=np.zeros(N))
    with pytest.raises(ValueError, match=r"LSQR needs products A\^T u \(rmatvec\)"):
        rbpsolve.solve(A, np.ones(N), rbpsolve.LSQR())


def test_non_square_operator_is_refused():
    R = rbpsolve.FunctionOperator(
        lambda x: np.ones((3, N)) @ x, lambda y: np.ones((N, 3)) @ y, like_in=np.zeros(N), like_out=np.zeros(3)
    )
    with pytest.raises(ValueError, match=r"J must map the state to itself; this one maps shape \(4,\) to \(3,\)"):
        rbpsolve.solve_adjoint(R, np.ones(N), rbpsolve.GMRES())
    for solver in (rbpsolve.GMRES(), rbpsolve.FixedPoint(), rbpsolve.Neumann()):
        name = type(solver).__name__
        with pytest.raises(ValueError, match=rf"{name} needs a square system; A maps shape \(4,\) to \(3,\): use LSQR"):
            rbpsolve.solve(R, np.ones(3), solver)
    # LSQR and CGNE take it (a least-squares problem).
    assert rbpsolve.solve(R, np.ones(3), rbpsolve.LSQR(), throw=False).x.shape == (N,)


def test_solve_adjoint_needs_an_rbpsolve_operator():
    with pytest.raises(TypeError, match=r"J must be an rbpsolve operator such as rbpsolve.JacobianOperator.*ndarray"):
        rbpsolve.solve_adjoint(0.5 * np.eye(N), np.ones(N), rbpsolve.GMRES())
    with pytest.raises(TypeError, match="aslinearoperator takes an rbpsolve operator.*got list"):
        rbpsolve.solve([[1.0]], np.ones(1), rbpsolve.GMRES())


# ----------------------------------------------------------------------------- solver settings
@pytest.mark.parametrize("cls", [rbpsolve.FixedPoint, rbpsolve.Neumann, rbpsolve.GMRES, rbpsolve.LSQR, rbpsolve.CGNE])
def test_solver_settings_are_checked_at_construction(cls):
    with pytest.raises(ValueError, match="max_steps must be at least 1; got 0"):
        cls(max_steps=0)
    with pytest.raises(ValueError, match="max_steps must be at least 1; got -3"):
        cls(max_steps=-3)
    for bad in (10.0, "10", None):
        with pytest.raises(TypeError, match="max_steps must be an int"):
            cls(max_steps=bad)
    with pytest.raises(TypeError, match="max_steps must be an int; got True"):
        cls(max_steps=True)
    for name in ("rtol", "atol"):
        for bad in (-1e-8, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=rf"{name} must be a finite number >= 0; got"):
                cls(**{name: bad})
        # rtol=None is the dtype's default (1e-5, or 16 eps in float16/bfloat16); atol has none.
        for bad in ("1e-8", True) + ((None,) if name == "atol" else ()):
            with pytest.raises(TypeError, match=rf"{name} must be a float"):
                cls(**{name: bad})
    assert cls(rtol=None).rtol is None
    # A valid one works.
    assert cls(max_steps=7, rtol=0, atol=1e-12).max_steps == 7


@pytest.mark.parametrize("cls", [rbpsolve.FixedPoint, rbpsolve.Neumann])
@pytest.mark.parametrize("bad", [1, 1.0, 0.5, 0, -2, float("nan"), -float("inf")])
def test_divergence_factor_must_exceed_one(cls, bad):
    with pytest.raises(ValueError, match=r"divergence_factor must be a number > 1 \(math.inf: never report divergence\); got"):
        cls(divergence_factor=bad)


def test_infinite_divergence_factor_gives_the_plain_truncated_series():
    """divergence_factor=inf switches the check off: on a divergent J a fixed-budget Neumann
    runs its whole budget and returns exactly sum_{t<=K} (J^T)^t g (the TBPTT gradient)."""
    p = make_problem("divergent", (12,), 3)
    J = p.operator(Backend("numpy"))
    K = 40
    with pytest.raises(rbpsolve.SolveError, match="DIVERGED"):
        rbpsolve.solve_adjoint(J, p.g, rbpsolve.Neumann(max_steps=K))
    res = rbpsolve.solve_adjoint(J, p.g, rbpsolve.Neumann(max_steps=K, divergence_factor=float("inf")))
    assert res.status is rbpsolve.Status.BUDGET_SPENT and res.num_vjp == K
    expected, term = p.g.copy(), p.g.copy()
    for _ in range(K):
        term = p.J.T @ term
        expected = expected + term
    np.testing.assert_allclose(res.x, expected, rtol=1e-10)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "50"], ids=repr)
def test_gmres_restart_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"restart must be an int >= 1"):
        rbpsolve.GMRES(restart=bad)
    assert rbpsolve.GMRES(restart=1).restart == 1


def test_solver_class_instead_of_instance(J):
    for cls in (rbpsolve.GMRES, rbpsolve.Neumann, rbpsolve.LSQR):
        name = cls.__name__
        with pytest.raises(TypeError, match=rf"pass solver settings, not the class: {name}\(\) instead of {name}"):
            rbpsolve.solve_adjoint(J, np.ones(N), cls)
        with pytest.raises(TypeError, match=rf"not the class: {name}\(\)"):
            rbpsolve.solve(J, np.ones(N), cls)


# ids fixed by hand: repr(object()) holds an address, which differs between pytest-xdist workers
@pytest.mark.parametrize("bad", ["gmres", None, 3, object()], ids=["str", "None", "int", "object"])
def test_solver_not_a_solver(J, bad):
    with pytest.raises(TypeError, match="solver must be rbpsolve solver settings such as rbpsolve.GMRES"):
        rbpsolve.solve_adjoint(J, np.ones(N), bad)


def test_fallback_needs_solvers():
    with pytest.raises(ValueError, match=r"needs at least one solver, e.g. Fallback\(Neumann\(\), GMRES\(\)\)"):
        rbpsolve.Fallback()
    with pytest.raises(ValueError, match="Fallback needs at least one solver"):
        rbpsolve.Fallback([])
    for bad in (rbpsolve.GMRES, "GMRES", None, 1e-8):
        with pytest.raises(TypeError, match="Fallback takes rbpsolve solvers such as rbpsolve.GMRES"):
            rbpsolve.Fallback(rbpsolve.Neumann(), bad)
    assert rbpsolve.Fallback([rbpsolve.Neumann(), rbpsolve.GMRES()]).solvers == (rbpsolve.Neumann(), rbpsolve.GMRES())


# ----------------------------------------------------------------------------- user callbacks
def test_vjp_returning_the_wrong_shape(problem):
    J = rbpsolve.JacobianOperator(lambda u: np.ones(N + 1), like=np.zeros(N))
    with pytest.raises(ValueError, match=r"vjp returned an array of shape \(5,\) but the operator maps to arrays of "
                                         r"shape \(4,\); the callback must return an array shaped like its `like`"):
        rbpsolve.solve_adjoint(J, problem.g, rbpsolve.GMRES())
    J = rbpsolve.JacobianOperator(lambda u: u[None, :], like=np.zeros(N))  # a stray batch axis
    with pytest.raises(ValueError, match=r"vjp returned an array of shape \(1, 4\)"):
        rbpsolve.solve_adjoint(J, problem.g, rbpsolve.FixedPoint())


def test_jvp_returning_the_wrong_shape(problem):
    J = rbpsolve.JacobianOperator(lambda u: problem.J.T @ u, lambda v: (problem.J @ v)[:2], like=np.zeros(N))
    with pytest.raises(ValueError, match=r"jvp returned an array of shape \(2,\)"):
        rbpsolve.solve_adjoint(J, problem.g, rbpsolve.LSQR())


def test_vjp_returning_the_wrong_dtype_or_type(problem):
    J = rbpsolve.JacobianOperator(lambda u: (problem.J.T @ u).astype(np.float32), like=np.zeros(N))
    with pytest.raises(TypeError, match=r"vjp returned dtype float32 but the operator works in float64; cast inside "
                                        r"the callback"):
        rbpsolve.solve_adjoint(J, problem.g, rbpsolve.GMRES())
    J = rbpsolve.JacobianOperator(lambda u: np.rint(problem.J.T @ u).astype(np.int64), like=np.zeros(N))
    with pytest.raises(TypeError, match=r"vjp returned dtype int64 but the operator works in float64; cast inside "
                                        r"the callback$"):
        rbpsolve.solve_adjoint(J, problem.g, rbpsolve.GMRES())
    J = rbpsolve.JacobianOperator(lambda u: list(problem.J.T @ u), like=np.zeros(N))
    with pytest.raises(TypeError, match="vjp returned list, not an array"):
        rbpsolve.solve_adjoint(J, problem.g, rbpsolve.Neumann())
    J = rbpsolve.JacobianOperator(lambda u: None, like=np.zeros(N))
    with pytest.raises(TypeError, match="vjp returned NoneType, not an array"):
        rbpsolve.solve_adjoint(J, problem.g, rbpsolve.GMRES())


def test_matvec_of_a_function_operator_returning_the_wrong_shape():
    A = rbpsolve.FunctionOperator(lambda x: np.ones(3), lambda y: np.ones(N), like_in=np.zeros(N),
                                  like_out=np.zeros(2))
    with pytest.raises(ValueError, match=r"matvec returned an array of shape \(3,\) but the operator maps to arrays "
                                         r"of shape \(2,\)"):
        rbpsolve.solve(A, np.ones(2), rbpsolve.LSQR())


# ----------------------------------------------------------------------------- immutability
@pytest.mark.parametrize("cls", [rbpsolve.FixedPoint, rbpsolve.Neumann, rbpsolve.GMRES, rbpsolve.LSQR, rbpsolve.CGNE])
def test_solver_settings_are_frozen(cls):
    solver = cls(max_steps=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        solver.max_steps = 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        solver.rtol = 1.0
    assert solver.max_steps == 5
    # Settings compare by value, and replace() gives a changed copy.
    assert dataclasses.replace(solver, max_steps=6) == cls(max_steps=6) != solver


def test_fallback_and_result_are_frozen(J):
    chain = rbpsolve.Fallback(rbpsolve.GMRES())
    with pytest.raises(dataclasses.FrozenInstanceError):
        chain.solvers = ()
    res = rbpsolve.solve_adjoint(J, np.ones(N), rbpsolve.GMRES(rtol=1e-10))
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.status = rbpsolve.Status.DIVERGED


SOLVERS = [
    rbpsolve.FixedPoint(rtol=1e-10),
    rbpsolve.Neumann(max_steps=30),
    rbpsolve.GMRES(rtol=1e-10),
    rbpsolve.GMRES(rtol=1e-10, restart=2),
    rbpsolve.LSQR(rtol=1e-10),
    rbpsolve.CGNE(rtol=1e-10),
]


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: repr(s))
@pytest.mark.parametrize("use_x0", [False, True])
def test_a_solve_mutates_nothing_passed(backend, solver, use_x0):
    p = make_problem("contractive", (2, 3), seed=1)
    J = p.operator(backend)
    g = backend.asarray(p.g)
    x0 = backend.asarray(np.full((2, 3), 0.25)) if use_x0 else None
    g_before = backend.to_numpy(g).copy()
    x0_before = None if x0 is None else backend.to_numpy(x0).copy()
    state_before = dict(vars(J))
    solver_before = dataclasses.replace(solver)
    res = rbpsolve.solve_adjoint(J, g, solver, x0=x0, throw=False)
    assert res.ok
    np.testing.assert_array_equal(backend.to_numpy(g), g_before)
    if x0 is not None:
        np.testing.assert_array_equal(backend.to_numpy(x0), x0_before)
        assert res.x is not x0
    assert res.x is not g
    # The operator keeps no trace of the solve (counters live on a per-solve copy).
    assert vars(J) == state_before
    assert solver == solver_before
    # ... so a second solve counts the same products again, from zero.
    again = rbpsolve.solve_adjoint(J, g, solver, x0=x0, throw=False)
    assert (again.num_vjp, again.num_jvp) == (res.num_vjp, res.num_jvp)
    # And the returned x aliases neither g nor x0: overwriting it leaves them alone.
    res.x[...] = 0.0
    np.testing.assert_array_equal(backend.to_numpy(g), g_before)
    if x0 is not None:
        np.testing.assert_array_equal(backend.to_numpy(x0), x0_before)
