"""The backend sweep: every solver and diagnostic on every array library.

The ``backend`` fixture runs numpy, array_api_strict and torch on the CPU, and torch on
CUDA or cupy where a GPU is present (skipped with the reason otherwise). array_api_strict
arrays raise on anything outside the array API standard (no numpy functions, no implicit
conversions, no mixed-device arithmetic), so passing on them shows the solvers use only
the standard. Results must come back in the caller's namespace, dtype and device.
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest

import rbpsolve
from conftest import Backend
from operators import make_problem

SOLVERS = ["FixedPoint", "Neumann", "CGNE", "LSQR", "GMRES", "GMRES(3)"]
SHAPES = [(12,), (3, 4)]
SHAPE_IDS = ["12", "3x4"]
SEED = 3


def rtol_for(dtype: str) -> float:
    # sqrt(eps) of the working precision (1.5e-8 in float64, 3.5e-4 in float32): far
    # above the floor eps * (||g|| + ||A|| ||x||) ~ eps * (1 + cond) ||g|| below which no
    # solver's residual can be certified (cond(I - J^T) < 4 for these contractive problems),
    # and tight enough that a solver stopping early or solving the wrong system fails.
    return float(np.finfo(np.dtype(dtype)).eps) ** 0.5


def make_solver(name: str, rtol: float):
    return {
        "FixedPoint": lambda: rbpsolve.FixedPoint(rtol=rtol, max_steps=500),
        "Neumann": lambda: rbpsolve.Neumann(rtol=rtol, max_steps=500),
        "CGNE": lambda: rbpsolve.CGNE(rtol=rtol, max_steps=500),
        "LSQR": lambda: rbpsolve.LSQR(rtol=rtol, max_steps=500),
        "GMRES": lambda: rbpsolve.GMRES(rtol=rtol),
        # GMRES(m) converges for every m here: ||J|| < 1 makes the symmetric part of
        # I - J^T positive definite (Elman 1982).
        "GMRES(3)": lambda: rbpsolve.GMRES(rtol=rtol, restart=3, max_steps=500),
    }[name]()


def assert_same_space(x, like, backend):
    """``x`` is an array of ``backend``'s namespace, with ``like``'s dtype, device and shape."""
    assert array_api_compat.array_namespace(x) is backend.xp
    assert array_api_compat.array_namespace(x) is array_api_compat.array_namespace(like)
    assert x.dtype == like.dtype
    assert str(array_api_compat.device(x)) == str(array_api_compat.device(like))
    assert tuple(x.shape) == tuple(like.shape)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", SOLVERS)
def test_solve_adjoint_on_every_backend(backend, name, dtype, shape):
    problem = make_problem("contractive", shape, SEED)
    rtol = rtol_for(dtype)
    eps = float(np.finfo(np.dtype(dtype)).eps)
    J = problem.operator(backend, dtype)
    g = backend.asarray(problem.g, dtype)
    g_before = backend.to_numpy(g).copy()

    res = rbpsolve.solve_adjoint(J, g, make_solver(name, rtol))

    assert res.status is rbpsolve.Status.CONVERGED
    assert_same_space(res.x, g, backend)
    assert np.array_equal(backend.to_numpy(g), g_before)

    # Accuracy against the float64 dense solution. The solve stops at a residual of at
    # most lag * rtol * ||g|| (lag = ||J|| < 1 for FixedPoint/Neumann, whose test is one
    # step late), so ||x - z|| <= cond * rtol * ||z||. In float32, casting J and g to
    # float32 and every product add relative perturbations of about n * eps, which
    # move the solution by at most cond * n * eps * ||z||.
    A = np.eye(problem.n) - problem.J.T
    cond = float(np.linalg.cond(A))
    x = backend.to_numpy(res.x).reshape(-1)
    z = problem.z.reshape(-1)
    error = float(np.linalg.norm(x - z))
    assert error <= cond * (rtol + 4 * problem.n * eps) * float(np.linalg.norm(z))
    true_residual = float(np.linalg.norm(problem.g.reshape(-1) - A @ x))
    g_norm = float(np.linalg.norm(problem.g))
    assert true_residual <= (rtol + 4 * problem.n * eps * (1 + cond)) * g_norm

    # The residual and history are host floats whatever the backend.
    assert all(type(h) is float for h in res.history)
    assert len(res.history) == res.num_steps
    if res.residual_norm is not None:
        assert type(res.residual_norm) is float
        # The solver's residual (recomputed by GMRES, a recurrence in CGNE/LSQR) is that of
        # x in the working precision: it differs from the float64 residual of x by the
        # rounding of forming g - A x there, n * eps * (1 + cond) * ||g|| at most.
        assert abs(res.residual_norm - true_residual) <= 4 * problem.n * eps * (1 + cond) * g_norm
    # Products: JVPs only for the normal-equation methods.
    if name in ("CGNE", "LSQR"):
        assert res.num_jvp == res.num_steps + 1
    else:
        assert res.num_jvp == 0
    assert res.num_vjp >= res.num_steps - 1


@pytest.mark.parametrize("name", SOLVERS)
def test_warm_start_and_error_bound_on_every_backend(backend, name):
    """x0 of the backend is accepted and left untouched; a declared norm bound yields an
    error bound (a host float) that holds."""
    problem = make_problem("contractive", (3, 4), SEED + 1)
    q = problem.norm
    J = problem.operator(backend, norm_bound=q)
    g = backend.asarray(problem.g)
    x0 = backend.asarray(np.full(problem.shape, 0.5))
    res = rbpsolve.solve_adjoint(J, g, make_solver(name, 1e-10), x0=x0)
    assert res.ok
    assert_same_space(res.x, g, backend)
    assert np.array_equal(backend.to_numpy(x0), np.full(problem.shape, 0.5))
    error = float(np.linalg.norm(backend.to_numpy(res.x) - problem.z))
    assert res.error_bound is not None and type(res.error_bound) is float
    # 1e-10 tolerance in float64 with cond < 4: rounding is below 1e-13 ||z||.
    assert error <= res.error_bound + 1e-13 * float(np.linalg.norm(problem.z))
    assert error <= 4 * 1e-10 * float(np.linalg.norm(problem.z))


def test_estimates_on_every_backend(backend):
    problem = make_problem("contractive", (3, 4), SEED)
    J = problem.operator(backend)
    n = problem.n
    # With rtol far below reachable agreement the Lanczos/Arnoldi runs go to n steps,
    # where the Krylov space is the whole space and the estimates are exact up to
    # rounding (full reorthogonalisation keeps the basis orthonormal to ~n eps).
    norm = rbpsolve.estimate_norm(J, max_steps=n, rtol=1e-14)
    assert type(norm.value) is float
    assert norm.value == pytest.approx(problem.norm, rel=1e-10)
    assert norm.num_jvp >= 1 and norm.num_vjp >= 1 and norm.num_steps <= n

    rho = rbpsolve.estimate_spectral_radius(J, max_steps=n, rtol=1e-14)
    assert type(rho.value) is float
    # Eigenvalues of a mildly non-normal J: sensitivity up to ~1e2, so ~1e-12 in float64.
    assert rho.value == pytest.approx(problem.rho, rel=1e-8)
    assert rho.num_vjp == rho.num_steps and rho.num_jvp == 0  # "auto" uses VJPs

    # Stopped early (successive estimates agreeing to 1e-4), the estimate is still a
    # lower bound (a singular value of a projection of J), and close: the extreme Ritz
    # value converges fast, so its error is of the order of the agreement test (the
    # margin 10x; observed below 3e-5 on these problems).
    quick = rbpsolve.estimate_norm(J, max_steps=30, rtol=1e-4)
    assert quick.value <= problem.norm * (1 + 1e-12)
    assert quick.value >= (1 - 1e-3) * problem.norm


def test_singular_vectors_on_every_backend(backend):
    """``vectors=True``: the Ritz vectors of sigma_min in the caller's namespace, with the
    residual the docstring derives, exact at n steps; a budget that ends early claims no
    convergence."""
    problem = make_problem("contractive", (3, 4), SEED)
    A = rbpsolve.IdentityMinus(problem.operator(backend))
    dense = np.eye(problem.n) - problem.J
    M = dense.T @ dense
    for steps in (4, problem.n):
        est = rbpsolve.estimate_singular_values(A, max_steps=steps, rtol=1e-14, vectors=True)
        v, u = est.details["right_vector_min"], est.details["left_vector_min"]
        assert_same_space(v, backend.asarray(np.zeros((3, 4))), backend)
        vn, un, sigma = backend.to_numpy(v).ravel(), backend.to_numpy(u).ravel(), est.details["sigma_min"]
        assert np.linalg.norm(vn) == pytest.approx(1.0, abs=1e-12)
        assert np.linalg.norm(dense @ vn - sigma * un) <= 1e-12  # A v = sigma u exactly
        residual = np.linalg.norm(M @ vn - sigma**2 * vn)
        assert est.details["residual_min"] == pytest.approx(residual, rel=1e-6, abs=1e-13)
        assert est.converged is (steps == problem.n)
    assert sigma == pytest.approx(np.linalg.svd(dense, compute_uv=False)[-1], rel=1e-10)


def test_analyze_on_every_backend(backend):
    problem = make_problem("contractive", (3, 4), SEED)
    J = problem.operator(backend)
    g = backend.asarray(problem.g)
    report = rbpsolve.analyze(J, g, rtol=1e-6)
    A = np.eye(problem.n) - problem.J
    s = np.linalg.svd(A, compute_uv=False)

    assert report.size == problem.n
    # Undeclared: the Lanczos estimate of ||J|| < 1 is no certificate, only "likely".
    assert report.contraction == "likely contraction" and not report.certified
    # analyze stops its Lanczos and Arnoldi runs once successive estimates agree to
    # 1e-4, so it promises about that accuracy; allow 10x (observed below 3e-5).
    assert problem.norm * (1 - 1e-3) <= report.norm.value <= problem.norm * (1 + 1e-12)
    assert report.spectral_radius.value == pytest.approx(problem.rho, rel=1e-3)
    # max_steps = 40 >= n: the singular values of I - J come out to rounding.
    assert report.sigma_max == pytest.approx(s[0], rel=1e-8)
    assert report.sigma_min == pytest.approx(s[-1], rel=1e-8)
    assert report.condition == pytest.approx(s[0] / s[-1], rel=1e-8)
    assert report.g_norm == pytest.approx(float(np.linalg.norm(problem.g)), rel=1e-12)
    advice = {a.solver: a for a in report.advice}
    assert set(advice) == {"Neumann", "FixedPoint", "GMRES", "LSQR", "CGNE"}
    assert all(advice[name].safe for name in ("GMRES", "LSQR", "CGNE"))
    assert all(advice[name].likely and not advice[name].safe for name in ("Neumann", "FixedPoint"))
    # Neumann's budget is Proposition 2's, capped by the asymptotic rate log(rtol)/log(rho).
    guaranteed = rbpsolve.neumann_steps(1e-6, report.norm.value) + 1
    asymptotic = math.ceil(math.log(1e-6) / math.log(report.spectral_radius.value))
    assert advice["Neumann"].steps == min(guaranteed, asymptotic)
    text = str(report)
    assert "contraction" in text and "GMRES" in text
    assert report.num_vjp > 0 and report.num_jvp > 0

    # A declared bound is used as such.
    declared = rbpsolve.analyze(problem.operator(backend, norm_bound=problem.norm))
    assert declared.declared_norm_bound == problem.norm
    assert declared.condition == pytest.approx((1 + problem.norm) / (1 - problem.norm))


def _other_library(backend):
    """An array library other than the backend's, and the name error messages use."""
    if backend.name == "numpy":
        pytest.importorskip("torch")
        return Backend("torch"), "torch"
    return Backend("numpy"), "numpy"


def _own_name(backend):
    return {"numpy": "numpy", "array_api_strict": "array_api_strict", "cupy": "cupy"}.get(
        backend.name, "torch"
    )


@pytest.mark.parametrize("name", SOLVERS)
def test_mixing_libraries_is_a_type_error_naming_both(backend, name):
    problem = make_problem("contractive", (12,), SEED)
    J = problem.operator(backend)
    other, other_name = _other_library(backend)
    own_name = _own_name(backend)
    foreign_g = other.asarray(problem.g)

    with pytest.raises(TypeError) as info:
        rbpsolve.solve_adjoint(J, foreign_g, make_solver(name, 1e-8))
    message = str(info.value)
    assert own_name in message and other_name in message

    g = backend.asarray(problem.g)
    with pytest.raises(TypeError) as info:
        rbpsolve.solve_adjoint(J, g, make_solver(name, 1e-8), x0=other.asarray(np.zeros(problem.shape)))
    message = str(info.value)
    assert own_name in message and other_name in message


def test_numpy_g_with_torch_operator(np_backend):
    """The case users hit most: a numpy gradient against a torch Jacobian, and back."""
    pytest.importorskip("torch")
    torch_backend = Backend("torch")
    problem = make_problem("contractive", (12,), SEED)
    with pytest.raises(TypeError, match=r"(?s)numpy.*torch"):
        rbpsolve.solve_adjoint(problem.operator(torch_backend), np_backend.asarray(problem.g), rbpsolve.GMRES())
    with pytest.raises(TypeError, match=r"(?s)torch.*numpy"):
        rbpsolve.solve_adjoint(problem.operator(np_backend), torch_backend.asarray(problem.g), rbpsolve.GMRES())


def test_wrong_dtype_on_every_backend(backend):
    """float32 g against a float64 operator: a TypeError naming both dtypes, not a silent cast."""
    problem = make_problem("contractive", (12,), SEED)
    J = problem.operator(backend, "float64")
    g32 = backend.asarray(problem.g, "float32")
    with pytest.raises(TypeError, match=r"(?s)float32.*float64"):
        rbpsolve.solve_adjoint(J, g32, rbpsolve.GMRES())
