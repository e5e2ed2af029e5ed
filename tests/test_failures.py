"""Every way a solve can end: each Status reached on purpose, with throw=True and throw=False.

Also: the best iterate handed back on failure, the Fallback chain, and callbacks
(StepInfo, STOPPED, CallbackError).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rbpsolve
from conftest import Backend
from operators import make_problem
from rbpsolve import Status

N = 12


# ----------------------------------------------------------------------------- helpers
def _problem(kind, seed=0, shape=(N,)):
    return make_problem(kind, shape, seed)


def _residual(Jd, g, x):
    """``||g - (I - J^T) x||`` in float64 on the host."""
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return float(np.linalg.norm(g - (x - Jd.T @ x)))


def _counting_operator(Jd, *, nan_from=None, like=None):
    """A JacobianOperator for the dense ``Jd`` that counts its products; from the
    ``nan_from``-th VJP on it returns NaN (a broken user callback)."""
    calls = {"vjp": 0, "jvp": 0}
    n = Jd.shape[0]

    def vjp(u):
        calls["vjp"] += 1
        out = Jd.T @ u
        if nan_from is not None and calls["vjp"] >= nan_from:
            out = np.full_like(out, np.nan)
        return out

    def jvp(v):
        calls["jvp"] += 1
        return Jd @ v

    return rbpsolve.JacobianOperator(vjp, jvp, like=np.zeros(n) if like is None else like), calls


def _singular_system(seed=0, n=10):
    """A singular ``A = I - J^T`` (one zero singular value, the others in [1, 2]) and a g with
    a component outside its range: an inconsistent system."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.linspace(1.0, 2.0, n)
    s[-1] = 0.0
    A = U @ np.diag(s) @ V.T
    Jd = np.eye(n) - A.T  # so that I - J^T = A
    g = rng.standard_normal(n)
    g += (1.0 - U[:, -1] @ g) * U[:, -1]  # a unit component outside the range of A
    x_ls = np.linalg.lstsq(A, g, rcond=None)[0]  # the minimum-norm least-squares solution
    return A, Jd, g, x_ls


def _stop_at(step):
    return lambda info: info.step == step


def _scenario(status):
    """(J, g, solver, callback) that ends with ``status``."""
    np_be = Backend("numpy")
    if status is Status.CONVERGED:
        p = _problem("contractive")
        return p.operator(np_be), p.g, rbpsolve.GMRES(rtol=1e-10), None
    if status is Status.BUDGET_SPENT:
        p = _problem("contractive")
        return p.operator(np_be), p.g, rbpsolve.Neumann(max_steps=7), None
    if status is Status.MAX_STEPS:
        p = _problem("contractive")
        return p.operator(np_be), p.g, rbpsolve.GMRES(max_steps=3, rtol=1e-12), None
    if status is Status.DIVERGED:
        p = _problem("divergent")
        return p.operator(np_be), p.g, rbpsolve.FixedPoint(rtol=1e-10), None
    if status is Status.NONFINITE:
        p = _problem("contractive")
        J, _ = _counting_operator(p.J, nan_from=4)
        return J, p.g, rbpsolve.GMRES(rtol=1e-14), None
    if status is Status.BREAKDOWN:
        # J = I: I - J^T is the zero operator; GMRES's first Arnoldi column is exactly zero.
        n = 5
        J = rbpsolve.JacobianOperator(lambda u: u, lambda v: v, like=np.zeros(n))
        return J, np.arange(1.0, n + 1), rbpsolve.GMRES(rtol=1e-10), None
    if status is Status.LEAST_SQUARES:
        _, Jd, g, _ = _singular_system()
        J, _ = _counting_operator(Jd)
        return J, g, rbpsolve.LSQR(rtol=1e-10), None
    if status is Status.STOPPED:
        p = _problem("contractive")
        return p.operator(np_be), p.g, rbpsolve.FixedPoint(rtol=1e-10), _stop_at(3)
    if status is Status.ACCURACY_LIMIT:
        # A float32 system asked for rtol = 1e-14, far below float32's eps = 1.2e-7.
        p = _problem("contractive")
        J32 = p.J.astype(np.float32)
        J = rbpsolve.JacobianOperator(lambda u: J32.T @ u, lambda v: J32 @ v, like=np.zeros(N, np.float32))
        return J, p.g.astype(np.float32), rbpsolve.CGNE(rtol=1e-14), None
    raise AssertionError(status)


ALL_STATUSES = list(Status)


def test_every_status_has_a_scenario():
    assert {s.name for s in ALL_STATUSES} == {
        "CONVERGED", "BUDGET_SPENT", "MAX_STEPS", "DIVERGED", "BREAKDOWN", "LEAST_SQUARES", "NONFINITE", "STOPPED",
        "ACCURACY_LIMIT",
    }
    assert {s for s in Status if s.ok} == {Status.CONVERGED, Status.BUDGET_SPENT}


@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: s.name)
def test_status_reached_with_throw_false(status):
    J, g, solver, callback = _scenario(status)
    res = rbpsolve.solve_adjoint(J, g, solver, callback=callback, throw=False)
    assert res.status is status, res
    assert res.ok is status.ok
    assert res.num_steps == len(res.history) >= 1
    # Whatever happened, the x handed back is finite.
    assert np.all(np.isfinite(res.x))
    assert res.x.shape == g.shape and res.x.dtype == g.dtype


@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: s.name)
def test_status_reached_with_throw_true(status):
    J, g, solver, callback = _scenario(status)
    if status.ok:
        res = rbpsolve.solve_adjoint(J, g, solver, callback=callback, throw=True)
        assert res.status is status
        return
    with pytest.raises(rbpsolve.SolveError) as excinfo:
        rbpsolve.solve_adjoint(J, g, solver, callback=callback, throw=True)
    err = excinfo.value
    assert isinstance(err, RuntimeError)
    assert err.result.status is status
    assert not err.result.ok
    message = str(err)
    assert status.name in message
    assert status.value in message  # the advice: what to try
    assert type(solver).__name__ in message
    assert f"after {err.result.num_steps} steps" in message
    assert np.all(np.isfinite(err.result.x))


def test_status_messages_give_advice():
    assert "GMRES" in Status.DIVERGED.value and "spectral radius" in Status.DIVERGED.value
    assert "max_steps" in Status.MAX_STEPS.value and "analyze" in Status.MAX_STEPS.value
    assert "singular" in Status.BREAKDOWN.value and "LSQR" in Status.BREAKDOWN.value
    assert "least-squares" in Status.LEAST_SQUARES.value and "throw=False" in Status.LEAST_SQUARES.value
    assert "float64" in Status.NONFINITE.value and "vjp" in Status.NONFINITE.value
    assert "callback" in Status.STOPPED.value


# ----------------------------------------------------------------------------- DIVERGED
def _stationary_iterates(Jd, g, solver_name, count):
    """The first ``count + 1`` iterates of FixedPoint (x_0 = 0) or Neumann (S_0 = g), densely."""
    xs = []
    if solver_name == "FixedPoint":
        x = np.zeros_like(g)
        for _ in range(count + 1):
            xs.append(x)
            x = Jd.T @ x + g
    else:
        s, term = g.copy(), g.copy()
        for _ in range(count + 1):
            xs.append(s)
            term = Jd.T @ term
            s = s + term
    return xs


@pytest.mark.parametrize("solver_name", ["FixedPoint", "Neumann"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("factor", [1e2, 1e4])
def test_diverged_is_detected_in_bounded_steps(solver_name, seed, factor):
    p = _problem("divergent", seed)
    J = p.operator(Backend("numpy"))
    solver_cls = getattr(rbpsolve, solver_name)
    solver = solver_cls(max_steps=5000, rtol=1e-10, divergence_factor=factor)
    res = rbpsolve.solve_adjoint(J, p.g, solver, throw=False)
    assert res.status is Status.DIVERGED
    assert p.rho > 1
    # The residual (J^T)^k g grows like rho^k: divergence_factor is exceeded after about
    # log(factor)/log(rho) steps; the slack covers the transient before the dominant
    # eigenvector takes over (g's component along it is O(1/sqrt(n)) of ||g||).
    predicted = math.log(factor) / math.log(p.rho)
    assert res.num_steps <= predicted + 12, (res.num_steps, predicted)
    # Not premature either: a residual grows at most by ||J|| a step, so exceeding the
    # factor takes more than log(factor)/log(||J||) steps.
    assert res.num_steps > math.log(factor) / math.log(p.norm)
    assert res.history[-1] > factor * min(res.history)
    # The x handed back is the best iterate seen: its residual is the smallest in the
    # history, and it is exactly that iterate of the recurrence.
    assert np.all(np.isfinite(res.x))
    best = int(np.argmin(res.history))
    assert _residual(p.J, p.g, res.x) == pytest.approx(res.history[best], rel=1e-10)
    iterates = _stationary_iterates(p.J, p.g, solver_name, best)
    np.testing.assert_allclose(res.x, iterates[best], rtol=0, atol=1e-12 * max(1.0, np.abs(iterates[best]).max()))
    assert res.num_vjp <= res.num_steps and res.num_jvp == 0


@pytest.mark.parametrize("solver_cls", [rbpsolve.FixedPoint, rbpsolve.Neumann], ids=lambda c: c.__name__)
def test_diverged_on_every_backend(backend, solver_cls):
    p = _problem("divergent", seed=5)
    J = p.operator(backend)
    g = backend.asarray(p.g)
    res = rbpsolve.solve_adjoint(J, g, solver_cls(max_steps=2000, rtol=1e-10), throw=False)
    assert res.status is Status.DIVERGED
    x = backend.to_numpy(res.x)
    assert np.all(np.isfinite(x))
    assert _residual(p.J, p.g, x) == pytest.approx(min(res.history), rel=1e-9)
    with pytest.raises(rbpsolve.SolveError, match="DIVERGED.*spectral radius"):
        rbpsolve.solve_adjoint(J, g, solver_cls(max_steps=2000, rtol=1e-10))


# ----------------------------------------------------------------------------- MAX_STEPS / BUDGET_SPENT
@pytest.mark.parametrize(
    "solver",
    [
        rbpsolve.GMRES(max_steps=4, rtol=1e-12),
        rbpsolve.LSQR(max_steps=4, rtol=1e-12),
        rbpsolve.CGNE(max_steps=4, rtol=1e-12),
        rbpsolve.FixedPoint(max_steps=4, rtol=1e-12),
        rbpsolve.Neumann(max_steps=4, rtol=1e-12),
    ],
    ids=lambda s: type(s).__name__,
)
def test_max_steps(solver):
    p = _problem("contractive", seed=2)
    J, calls = _counting_operator(p.J)
    res = rbpsolve.solve_adjoint(J, p.g, solver, throw=False)
    assert res.status is Status.MAX_STEPS and not res.ok
    assert res.num_steps == 4 == len(res.history)
    assert res.num_vjp == calls["vjp"] and res.num_jvp == calls["jvp"]
    # The last iterate is handed back (not the best; MAX_STEPS is not a breakdown). Where the
    # solver reports the residual of its own iterate, that is the true one (recurrences in
    # float64 on a well-conditioned system: agreement to ~1e-10 relative).
    if res.residual_kind in ("verified", "recurrence"):
        assert _residual(p.J, p.g, res.x) == pytest.approx(res.residual_norm, rel=1e-8)
        assert res.residual_norm > 1e-12 * np.linalg.norm(p.g)
    else:
        # FixedPoint and Neumann: the last update, the residual of the previous iterate.
        assert res.residual_kind == "previous iterate" and res.residual_norm == res.history[-1]
    with pytest.raises(rbpsolve.SolveError, match="MAX_STEPS.*raise max_steps"):
        rbpsolve.solve_adjoint(J, p.g, solver)


def _krylov_min_residual(A, g, M, v, k):
    """min ||g - A x|| over x in the Krylov space K_k(M, v), densely, and that x."""
    K = np.stack([np.linalg.matrix_power(M, i) @ v for i in range(k)], axis=1)
    Q, _ = np.linalg.qr(K)
    y = np.linalg.lstsq(A @ Q, g, rcond=None)[0]
    return float(np.linalg.norm(g - A @ Q @ y)), Q @ y


@pytest.mark.parametrize("name", ["FixedPoint", "Neumann", "GMRES", "LSQR", "CGNE"])
def test_budget_spent_runs_exactly_max_steps(name):
    p = _problem("contractive", seed=3)
    J, calls = _counting_operator(p.J)
    K = 5  # fewer than n = 12 steps, so no Krylov method finishes exactly before
    solver = getattr(rbpsolve, name)(max_steps=K, rtol=0.0, atol=0.0)
    assert solver.fixed_budget
    for throw in (True, False):
        res = rbpsolve.solve_adjoint(J, p.g, solver, throw=throw)
        assert res.status is Status.BUDGET_SPENT and res.ok
        assert res.num_steps == K == len(res.history)
    A = np.eye(N) - p.J.T
    x = res.x
    # What K steps must give, from the dense matrix (float64; the tolerances are rounding
    # of a well-conditioned 12 x 12 problem).
    if name == "FixedPoint":  # K steps from zero: the Neumann sum up to (J^T)^{K-1} g
        expected = sum(np.linalg.matrix_power(p.J.T, t) @ p.g for t in range(K))
        np.testing.assert_allclose(x, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        assert res.num_vjp == K - 1  # the first step from zero needs no product
    elif name == "Neumann":  # K terms after g: exactly K VJPs
        expected = sum(np.linalg.matrix_power(p.J.T, t) @ p.g for t in range(K + 1))
        np.testing.assert_allclose(x, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        assert res.num_vjp == K and res.num_jvp == 0
    elif name == "GMRES":  # minimal residual over the Krylov space K_K(A, g)
        best, _ = _krylov_min_residual(A, p.g, A, p.g, K)
        assert _residual(p.J, p.g, x) == pytest.approx(best, rel=1e-8)
    else:  # LSQR and CGNE: minimal residual over K_K(A^T A, A^T g)
        best, xk = _krylov_min_residual(A, p.g, A.T @ A, A.T @ p.g, K)
        np.testing.assert_allclose(x, xk, rtol=0, atol=1e-9 * np.abs(xk).max())
        assert _residual(p.J, p.g, x) == pytest.approx(res.residual_norm, rel=1e-8)
    assert res.num_vjp == calls["vjp"] // 2 and res.num_jvp == calls["jvp"] // 2  # two identical solves


# ----------------------------------------------------------------------------- NONFINITE
@pytest.mark.parametrize(
    "solver",
    [
        rbpsolve.FixedPoint(rtol=1e-14),
        rbpsolve.Neumann(max_steps=50, rtol=1e-14),
        rbpsolve.GMRES(rtol=1e-14),
        rbpsolve.LSQR(rtol=1e-14),
        rbpsolve.CGNE(rtol=1e-14),
    ],
    ids=lambda s: type(s).__name__,
)
@pytest.mark.parametrize("nan_from", [1, 4])
def test_nan_from_the_vjp_is_nonfinite_with_a_finite_x(solver, nan_from):
    p = _problem("contractive", seed=4)
    J, calls = _counting_operator(p.J, nan_from=nan_from)
    res = rbpsolve.solve_adjoint(J, p.g, solver, throw=False)
    assert res.status is Status.NONFINITE
    assert not math.isfinite(res.history[-1])
    assert all(math.isfinite(h) for h in res.history[:-1])
    assert calls["vjp"] >= nan_from and res.num_vjp == calls["vjp"] and res.num_jvp == calls["jvp"]
    # The x handed back is the best finite iterate, not the NaN one.
    assert np.all(np.isfinite(res.x))
    finite = [h for h in res.history if math.isfinite(h)]
    if finite:
        # Its residual is the best one seen (float64 recurrences: ~1e-10 relative).
        assert _residual(p.J, p.g, res.x) == pytest.approx(min(finite), rel=1e-8)
    else:
        # Nothing finite was seen: the start comes back (zero; Neumann's first partial sum g).
        start = p.g if isinstance(solver, rbpsolve.Neumann) else np.zeros_like(p.g)
        np.testing.assert_array_equal(res.x, start)
    with pytest.raises(rbpsolve.SolveError, match="NONFINITE.*vjp/jvp callbacks"):
        rbpsolve.solve_adjoint(_counting_operator(p.J, nan_from=nan_from)[0], p.g, solver)


@pytest.mark.parametrize(
    "solver",
    [rbpsolve.FixedPoint(rtol=1e-12, divergence_factor=1e300), rbpsolve.Neumann(max_steps=50, divergence_factor=1e300),
     rbpsolve.GMRES(rtol=1e-12)],
    ids=lambda s: type(s).__name__,
)
def test_overflow_is_nonfinite(backend, solver):
    # J^T = 1e200 I: the second product overflows float64 (and the norm of 1e200 entries
    # already does); the divergence test is pushed out of the way so the overflow is seen.
    like = backend.asarray(np.zeros(3))
    J = rbpsolve.JacobianOperator(lambda u: 1e200 * u, lambda v: 1e200 * v, like=like)
    g = backend.asarray(np.array([1.0, -2.0, 0.5]))
    # numpy-backed namespaces warn about the overflow this test provokes on purpose (in the
    # callback, or in a norm of 1e200-sized entries).
    with np.errstate(over="ignore", invalid="ignore"):
        res = rbpsolve.solve_adjoint(J, g, solver, throw=False)
    assert res.status is Status.NONFINITE
    x = backend.to_numpy(res.x)
    assert np.all(np.isfinite(x))
    assert np.all(np.abs(x) <= 2.0)  # the start (0) or the first iterate (g), never the blow-up


def test_overflow_in_float32(np_backend):
    # float32 overflows at 3.4e38: J^T = 1e30 I overflows on the second product.
    J = rbpsolve.JacobianOperator(lambda u: np.float32(1e30) * u, like=np.zeros(4, np.float32))
    g = np.ones(4, np.float32)
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.FixedPoint(divergence_factor=1e37), throw=False)
    assert res.status is Status.NONFINITE
    assert res.x.dtype == np.float32 and np.all(np.isfinite(res.x))


# ----------------------------------------------------------------------------- singular systems
@pytest.mark.parametrize("solver_cls", [rbpsolve.LSQR, rbpsolve.CGNE], ids=lambda c: c.__name__)
def test_least_squares_on_an_inconsistent_singular_system(backend, solver_cls):
    A, Jd, g, x_ls = _singular_system(seed=1)
    like = backend.asarray(np.zeros(len(g)))
    JTx, Jx, xp = backend.asarray(Jd.T.copy()), backend.asarray(Jd), backend.xp
    J = rbpsolve.JacobianOperator(lambda u: xp.matmul(JTx, u), lambda v: xp.matmul(Jx, v), like=like)
    res = rbpsolve.solve_adjoint(J, backend.asarray(g), solver_cls(rtol=1e-10), throw=False)
    assert res.status is Status.LEAST_SQUARES and not res.ok
    x = backend.to_numpy(res.x)
    # From zero the iterates stay in the range of A^T, so the limit is the minimum-norm
    # least-squares solution. The nonzero singular values lie in [1, 2]: the error is a few
    # eps times that condition number of 2, well inside 1e-9.
    np.testing.assert_allclose(x, x_ls, rtol=0, atol=1e-9 * np.linalg.norm(x_ls))
    ls_residual = np.linalg.norm(g - A @ x_ls)
    assert res.residual_norm == pytest.approx(ls_residual, rel=1e-9)
    assert res.residual_norm > 1e-10 * np.linalg.norm(g)  # the residual test did fail
    assert res.num_steps <= len(g) + 2  # found within n steps: Krylov, no stagnation
    with pytest.raises(rbpsolve.SolveError, match="LEAST_SQUARES.*throw=False") as excinfo:
        rbpsolve.solve_adjoint(J, backend.asarray(g), solver_cls(rtol=1e-10))
    np.testing.assert_allclose(backend.to_numpy(excinfo.value.result.x), x, rtol=0, atol=1e-12)


def test_gmres_on_an_inconsistent_singular_system_breaks_down():
    """Full GMRES reaches the least-squares residual within n steps, then the Krylov space is
    invariant while the residual is not small: BREAKDOWN with a least-squares x, not a restart
    from a blown-up iterate."""
    A, Jd, g, x_ls = _singular_system(seed=0)
    n = len(g)
    J, _ = _counting_operator(Jd)
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES(rtol=1e-10), throw=False)
    ls_residual = np.linalg.norm(g - A @ x_ls)
    assert res.status is Status.BREAKDOWN
    assert res.num_steps <= n + 1
    # GMRES minimises the residual over K_n = R^n: its x is a least-squares solution (not
    # necessarily the minimum-norm one), finite, and its reported residual is the true one.
    assert np.all(np.isfinite(res.x))
    true_residual = _residual(Jd, g, res.x)
    assert true_residual == pytest.approx(ls_residual, rel=1e-6)
    assert res.residual_norm == pytest.approx(true_residual, rel=1e-6)
    with pytest.raises(rbpsolve.SolveError, match="BREAKDOWN.*singular"):
        rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES(rtol=1e-10))


def test_restarted_gmres_on_an_inconsistent_singular_system_stagnates():
    A, Jd, g, x_ls = _singular_system(seed=0)
    J, _ = _counting_operator(Jd)
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES(rtol=1e-10, restart=4, max_steps=200), throw=False)
    ls_residual = np.linalg.norm(g - A @ x_ls)
    assert res.status is Status.MAX_STEPS and res.num_steps == 200
    # Restarted GMRES never increases the residual from the start (zero: ||g||) and cannot
    # go below the least-squares residual.
    true_residual = _residual(Jd, g, res.x)
    assert ls_residual * (1 - 1e-9) <= true_residual <= np.linalg.norm(g)
    assert max(res.history) <= np.linalg.norm(g) * (1 + 1e-12)
    assert res.residual_norm == pytest.approx(true_residual, rel=1e-6)


def test_zero_operator_breaks_down_or_solves_least_squares():
    # J = I: I - J^T = 0. Every g is outside the range; the least-squares solution is 0.
    g = np.array([1.0, -2.0, 3.0])
    J = rbpsolve.JacobianOperator(lambda u: u, lambda v: v, like=np.zeros(3))
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES(), throw=False)
    assert res.status is Status.BREAKDOWN
    assert res.num_steps == 1 and res.history == (pytest.approx(np.linalg.norm(g)),)
    np.testing.assert_array_equal(res.x, np.zeros(3))
    for solver in (rbpsolve.LSQR(), rbpsolve.CGNE()):
        res = rbpsolve.solve_adjoint(J, g, solver, throw=False)
        assert res.status is Status.LEAST_SQUARES
        np.testing.assert_array_equal(res.x, np.zeros(3))
        assert res.residual_norm == pytest.approx(np.linalg.norm(g))


# ----------------------------------------------------------------------------- callbacks
@pytest.mark.parametrize("name", ["FixedPoint", "Neumann", "GMRES", "LSQR", "CGNE"])
def test_callback_sees_each_step_and_the_current_iterate(name):
    p = _problem("contractive", seed=6)
    J = p.operator(Backend("numpy"))
    solver = getattr(rbpsolve, name)(max_steps=8, rtol=1e-14)
    seen = []

    def callback(info):
        assert isinstance(info, rbpsolve.StepInfo)
        seen.append((info.step, info.residual_norm, np.array(info.x, copy=True)))

    res = rbpsolve.solve_adjoint(J, p.g, solver, callback=callback, throw=False)
    assert res.status is Status.MAX_STEPS
    steps = [s for s, _, _ in seen]
    assert steps == list(range(1, res.num_steps + 1))
    for step, residual, x in seen:
        assert residual == res.history[step - 1]
        assert x.shape == p.g.shape and np.all(np.isfinite(x))
    if name in ("FixedPoint", "Neumann"):
        # info.x is the iterate of the step just taken; the reported norm is the update,
        # i.e. the residual of the iterate before it.
        iterates = _stationary_iterates(p.J, p.g, name, res.num_steps + 1)
        for step, residual, x in seen:
            expected = iterates[step]
            np.testing.assert_allclose(x, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
            assert _residual(p.J, p.g, iterates[step - 1]) == pytest.approx(residual, rel=1e-10)
    else:
        # Krylov solvers report the residual of the iterate itself.
        for step, residual, x in seen:
            assert _residual(p.J, p.g, x) == pytest.approx(residual, rel=1e-7)
    # The last iterate seen is the one returned.
    np.testing.assert_array_equal(seen[-1][2], res.x)


def test_step_info_x_is_computed_only_on_demand():
    class CountingGMRES(rbpsolve.GMRES):
        formed = 0

        def solution(self, a, b, state):
            type(self).formed += 1
            return super().solution(a, b, state)

    p = _problem("contractive", seed=6)
    J = p.operator(Backend("numpy"))
    solver = CountingGMRES(max_steps=6, rtol=1e-14)
    rbpsolve.solve_adjoint(J, p.g, solver, callback=lambda info: None, throw=False)
    lazily = CountingGMRES.formed
    CountingGMRES.formed = 0
    rbpsolve.solve_adjoint(J, p.g, solver, callback=lambda info: info.x is None, throw=False)
    eagerly = CountingGMRES.formed
    assert eagerly - lazily == 6  # one formed iterate per step, only when .x is read
    assert "_solution" not in repr(rbpsolve.StepInfo(1, 0.5, lambda: None))


@pytest.mark.parametrize("name", ["FixedPoint", "Neumann", "GMRES", "LSQR", "CGNE"])
def test_callback_returning_true_stops(name):
    p = _problem("contractive", seed=7)
    J = p.operator(Backend("numpy"))
    solver = getattr(rbpsolve, name)(max_steps=100, rtol=1e-14)
    xs = []

    def callback(info):
        xs.append(np.array(info.x, copy=True))
        return info.step == 3

    res = rbpsolve.solve_adjoint(J, p.g, solver, callback=callback, throw=False)
    assert res.status is Status.STOPPED and not res.ok
    assert res.num_steps == 3 == len(xs)
    np.testing.assert_array_equal(res.x, xs[-1])  # the iterate at the stop
    with pytest.raises(rbpsolve.SolveError, match="STOPPED after 3 steps.*callback returned True"):
        rbpsolve.solve_adjoint(J, p.g, solver, callback=lambda info: info.step == 3)


@pytest.mark.parametrize("value", [None, False, 0], ids=repr)
def test_falsy_callback_results_do_not_stop(value):
    p = _problem("contractive", seed=7)
    J = p.operator(Backend("numpy"))
    res = rbpsolve.solve_adjoint(J, p.g, rbpsolve.GMRES(rtol=1e-10), callback=lambda info: value)
    assert res.status is Status.CONVERGED


def test_numpy_true_stops():
    p = _problem("contractive", seed=7)
    J = p.operator(Backend("numpy"))
    res = rbpsolve.solve_adjoint(J, p.g, rbpsolve.GMRES(rtol=1e-14), callback=lambda info: np.bool_(info.step == 2),
                                 throw=False)
    assert res.status is Status.STOPPED and res.num_steps == 2


@pytest.mark.parametrize("throw", [True, False])
@pytest.mark.parametrize("name", ["FixedPoint", "GMRES", "LSQR"])
def test_callback_that_raises_gives_callback_error(name, throw):
    p = _problem("contractive", seed=8)
    J = p.operator(Backend("numpy"))
    original = ValueError("boom in user code")

    def callback(info):
        if info.step == 2:
            raise original

    with pytest.raises(rbpsolve.CallbackError, match=r"ValueError at step 2: boom in user code") as excinfo:
        rbpsolve.solve_adjoint(J, p.g, getattr(rbpsolve, name)(rtol=1e-14), callback=callback, throw=throw)
    err = excinfo.value
    assert err.step == 2
    assert err.__cause__ is original
    assert isinstance(err, RuntimeError)
    assert "StepInfo" in str(err) and "return True" in str(err)


# ----------------------------------------------------------------------------- Fallback
def test_fallback_neumann_then_gmres_on_a_divergent_j():
    p = _problem("divergent", seed=0)
    J, calls = _counting_operator(p.J)
    chain = rbpsolve.Fallback(rbpsolve.Neumann(max_steps=500, rtol=1e-10), rbpsolve.GMRES(rtol=1e-10))
    res = rbpsolve.solve_adjoint(J, p.g, chain)
    assert res.ok and res.status is Status.CONVERGED
    assert isinstance(res.solver, rbpsolve.GMRES)
    assert len(res.attempts) == 1
    first = res.attempts[0]
    assert first.status is Status.DIVERGED and isinstance(first.solver, rbpsolve.Neumann)
    # Counts include the failed attempt: the sum equals the products really made.
    alone = rbpsolve.solve_adjoint(_counting_operator(p.J)[0], p.g, rbpsolve.GMRES(rtol=1e-10))
    assert res.num_vjp == first.num_vjp + alone.num_vjp == calls["vjp"]
    assert res.num_jvp == first.num_jvp + alone.num_jvp == calls["jvp"]
    # GMRES started afresh (from zero), not from the diverged iterate: same path as alone.
    assert res.num_steps == alone.num_steps and res.history == alone.history
    # Well-conditioned I - J^T (eigenvalues of J kept >= 0.05 from 1): rtol 1e-10 gives ~1e-8.
    np.testing.assert_allclose(res.x, p.z, rtol=0, atol=1e-8 * np.abs(p.z).max())


def test_fallback_first_success_has_no_attempts():
    p = _problem("contractive", seed=1)
    J = p.operator(Backend("numpy"))
    res = rbpsolve.solve_adjoint(J, p.g, rbpsolve.Fallback(rbpsolve.GMRES(rtol=1e-10), rbpsolve.LSQR()))
    assert res.ok and res.attempts == () and isinstance(res.solver, rbpsolve.GMRES)


def test_fallback_where_all_fail():
    p = _problem("divergent", seed=1)
    J, calls = _counting_operator(p.J)
    chain = rbpsolve.Fallback([rbpsolve.Neumann(max_steps=500, rtol=1e-10), rbpsolve.FixedPoint(rtol=1e-10),
                               rbpsolve.GMRES(max_steps=2, rtol=1e-12)])
    with pytest.raises(rbpsolve.SolveError, match="GMRES MAX_STEPS") as excinfo:
        rbpsolve.solve_adjoint(J, p.g, chain)
    last = excinfo.value.result
    assert last.status is Status.MAX_STEPS
    assert [a.status for a in last.attempts] == [Status.DIVERGED, Status.DIVERGED]
    assert last.num_vjp == calls["vjp"]
    before = calls["vjp"]
    res = rbpsolve.solve_adjoint(J, p.g, chain, throw=False)
    assert res.status is Status.MAX_STEPS and not res.ok
    assert [type(a.solver) for a in res.attempts] == [rbpsolve.Neumann, rbpsolve.FixedPoint]
    assert isinstance(res.solver, rbpsolve.GMRES)
    # The counts cover all three solvers: GMRES's own products come on top of the attempts'.
    assert res.num_vjp == calls["vjp"] - before
    assert res.num_vjp > sum(a.num_vjp for a in res.attempts) > 0
    assert np.all(np.isfinite(res.x))


def test_fallback_starts_each_solver_from_x0():
    p = _problem("divergent", seed=2)
    J = p.operator(Backend("numpy"))
    x0 = p.z + 1e-3  # close to the answer: GMRES needs only a few steps from here
    chain = rbpsolve.Fallback(rbpsolve.FixedPoint(rtol=1e-10), rbpsolve.GMRES(rtol=1e-10))
    res = rbpsolve.solve_adjoint(J, p.g, chain, x0=x0)
    alone = rbpsolve.solve_adjoint(J, p.g, rbpsolve.GMRES(rtol=1e-10), x0=x0)
    assert res.attempts[0].status is Status.DIVERGED
    assert res.history == alone.history
    np.testing.assert_allclose(res.x, alone.x, rtol=0, atol=0)


def test_cgne_step_with_an_underflowing_direction_does_not_divide_by_zero():
    # Seen in float32 training (Hopfield task): ||p||^2 underflows to 0 while ||A p||^2 > 0.
    # The norm estimate must skip that step, not raise ZeroDivisionError.
    from rbpsolve._operator import MatrixOperator
    from rbpsolve._solvers.cgne import _State

    a = MatrixOperator(np.eye(4, dtype=np.float32) * np.float32(1e20))
    b = np.ones(4, dtype=np.float32)
    p = np.full(4, 1e-24, dtype=np.float32)
    assert float(np.vdot(p, p)) == 0.0 and float(np.vdot(a.mv(p), a.mv(p))) > 0
    solver = rbpsolve.CGNE(max_steps=5)
    state = _State(np.zeros(4, np.float32), b, p, p, np.float32(1.0), np.float32(2.0), 1e-6)
    new_state, report = solver.step(a, b, state)
    # The host half of the step (CGNE.judge) carries the running estimate of ||A||.
    from rbpsolve._steps import read

    _, anorm = solver.judge(read(np, [report])[0], 3.0)
    assert anorm == 3.0  # the estimate is kept
    assert np.all(np.isfinite(new_state.x))
