"""The forward solvers (Picard, Anderson) and ``rbpsolve.fixed_point`` against known fixed points.

Every backend of the ``backend`` fixture (numpy, array_api_strict, torch ...): a known
fixed point is built in by construction, so the exact answer is known in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rbpsolve
from rbpsolve import Anderson, Picard, Status


def _linear_problem(n=12, q=0.8, seed=0, rotation=False):
    """F(h) = A h + c with ||A||_2 = q, and its fixed point (I - A)^{-1} c."""
    rng = np.random.default_rng(seed)
    if rotation:  # spectral radius q, normal: Picard diverges for q > 1
        blocks = [np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) for t in rng.uniform(0.5, 2.5, n // 2)]
        A = q * np.block([[blocks[i] if i == j else np.zeros((2, 2)) for j in range(n // 2)] for i in range(n // 2)])
    else:
        A = rng.standard_normal((n, n))
        A *= q / np.linalg.norm(A, 2)
    c = rng.standard_normal(n)
    return A, c, np.linalg.solve(np.eye(n) - A, c)


def _tanh_problem(shape=(3, 8), q=0.9, seed=1):
    """F(h) = tanh(h W^T + b) (a batch of states) with a fixed point x* chosen first."""
    rng = np.random.default_rng(seed)
    n = shape[-1]
    W = rng.standard_normal((n, n))
    W *= q / np.linalg.norm(W, 2)
    x_star = rng.uniform(-0.8, 0.8, shape)
    b = np.arctanh(x_star) - x_star @ W.T
    return W, b, x_star


def _linear_map(backend, A, c, shape=None):
    xp = backend.xp
    At, cx = backend.asarray(A.T.copy()), backend.asarray(c)
    if shape is None:
        return lambda h: xp.matmul(h, At) + cx
    n = A.shape[0]
    return lambda h: xp.reshape(xp.matmul(xp.reshape(h, (n,)), At) + cx, shape)


def _tanh_map(backend, W, b):
    xp = backend.xp
    Wt, bx = backend.asarray(W.T.copy()), backend.asarray(b)
    return lambda h: xp.tanh(xp.matmul(h, Wt) + bx)


# ---------------------------------------------------------------------------- convergence
@pytest.mark.parametrize("solver", [Picard(rtol=1e-13), Anderson(rtol=1e-13)], ids=["picard", "anderson"])
def test_linear_fixed_point(backend, solver):
    A, c, h_star = _linear_problem()
    res = rbpsolve.fixed_point(_linear_map(backend, A, c), backend.asarray(np.zeros(12)), solver)
    assert res.status is Status.CONVERGED
    assert np.linalg.norm(backend.to_numpy(res.x) - h_star) <= 1e-11 * np.linalg.norm(h_star)
    # the answer lives where the input did
    assert rbpsolve._backend.namespace(res.x) is backend.xp
    assert res.x.dtype == backend.xp.float64
    assert res.num_vjp == res.num_jvp == 0
    assert res.info["num_evaluations"] == res.num_steps


@pytest.mark.parametrize("solver", [Picard(rtol=1e-12), Anderson(rtol=1e-12, memory=3)], ids=["picard", "anderson"])
def test_tanh_fixed_point_of_a_batch(backend, solver):
    W, b, x_star = _tanh_problem()
    res = rbpsolve.fixed_point(_tanh_map(backend, W, b), backend.asarray(np.zeros(x_star.shape)), solver)
    assert res.status is Status.CONVERGED
    np.testing.assert_allclose(backend.to_numpy(res.x), x_star, rtol=0, atol=1e-10)
    assert tuple(res.x.shape) == x_star.shape


def test_stopping_test_and_history_are_the_documented_ones(backend):
    """history[k] = ||h_{k+1} - h_k||; stop at the first k with it <= max(rtol ||h_{k+1}||, atol)."""
    W, b, x_star = _tanh_problem(shape=(10,))
    rtol = 1e-6
    res = rbpsolve.fixed_point(_tanh_map(backend, W, b), backend.asarray(np.zeros(10)), Picard(rtol=rtol))
    # replay the iteration in numpy float64
    h, diffs, scales = np.zeros(10), [], []
    for _ in range(res.num_steps):
        h_new = np.tanh(W @ h + b)
        diffs.append(np.linalg.norm(h_new - h))
        scales.append(np.linalg.norm(h_new))
        h = h_new
    np.testing.assert_allclose(res.history, diffs, rtol=1e-10)
    assert diffs[-1] <= rtol * scales[-1]
    assert all(d > rtol * s for d, s in zip(diffs[:-1], scales[:-1]))
    np.testing.assert_allclose(backend.to_numpy(res.x), h, rtol=1e-12)
    assert res.b_norm == pytest.approx(scales[-1])


def test_atol_alone(np_backend):
    A, c, h_star = _linear_problem(q=0.5)
    res = rbpsolve.fixed_point(_linear_map(np_backend, A, c), np.zeros(12), Picard(rtol=0.0, atol=1e-3))
    assert res.status is Status.CONVERGED
    assert res.history[-1] <= 1e-3 < res.history[-2]


def test_fixed_budget_is_exactly_T_steps(backend):
    """rtol = atol = 0: exactly max_steps evaluations (the T forward steps of BPTT)."""
    W, b, _ = _tanh_problem(shape=(6,), q=0.5)
    T = 7
    res = rbpsolve.fixed_point(_tanh_map(backend, W, b), backend.asarray(np.zeros(6)), Picard(max_steps=T, rtol=0.0, atol=0.0))
    assert res.status is Status.BUDGET_SPENT and res.ok
    assert res.num_steps == res.info["num_evaluations"] == T
    h = np.zeros(6)
    for _ in range(T):
        h = np.tanh(W @ h + b)
    np.testing.assert_allclose(backend.to_numpy(res.x), h, rtol=1e-14)


def test_anderson_beats_picard_on_a_slow_contraction(np_backend):
    A, c, h_star = _linear_problem(n=20, q=0.98, seed=3, rotation=True)
    F, h0 = _linear_map(np_backend, A, c), np.zeros(20)
    slow = rbpsolve.fixed_point(F, h0, Picard(rtol=1e-10, max_steps=5000))
    fast = rbpsolve.fixed_point(F, h0, Anderson(rtol=1e-10, memory=10))
    assert slow.status is fast.status is Status.CONVERGED
    assert fast.num_steps < slow.num_steps / 4
    np.testing.assert_allclose(fast.x, h_star, rtol=1e-7)


@pytest.mark.parametrize("memory,mixing", [(1, 1.0), (3, 0.5), (8, 0.8)])
def test_anderson_settings_all_converge(np_backend, memory, mixing):
    W, b, x_star = _tanh_problem(shape=(4, 8), q=0.95, seed=5)
    res = rbpsolve.fixed_point(_tanh_map(np_backend, W, b), np.zeros((4, 8)), Anderson(rtol=1e-12, memory=memory, mixing=mixing))
    assert res.status is Status.CONVERGED
    np.testing.assert_allclose(res.x, x_star, atol=1e-10)


def test_anderson_first_step_is_damped_picard(np_backend):
    A, c, _ = _linear_problem(q=0.5)
    F = _linear_map(np_backend, A, c)
    res = rbpsolve.fixed_point(F, np.zeros(12), Anderson(max_steps=1, rtol=0.0, mixing=0.3))
    np.testing.assert_allclose(res.x, 0.3 * F(np.zeros(12)), rtol=1e-15)


def test_anderson_float32_torch():
    torch = pytest.importorskip("torch")
    W, b, x_star = _tanh_problem(shape=(5, 16), q=0.9, seed=2)
    Wt, bt = torch.tensor(W.T, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    res = rbpsolve.fixed_point(lambda h: torch.tanh(h @ Wt + bt), torch.zeros(5, 16), Anderson(rtol=1e-6))
    assert res.status is Status.CONVERGED and res.x.dtype == torch.float32
    np.testing.assert_allclose(res.x.numpy(), x_star, atol=1e-5)


# ---------------------------------------------------------------------------- failures
def test_picard_diverges_where_anderson_converges(backend):
    A, c, h_star = _linear_problem(n=6, q=1.5, rotation=True)
    F, h0 = _linear_map(backend, A, c), backend.asarray(np.zeros(6))
    bad = rbpsolve.fixed_point(F, h0, Picard(rtol=1e-10), throw=False)
    assert bad.status is Status.DIVERGED and not bad.ok
    assert np.all(np.isfinite(backend.to_numpy(bad.x)))
    with pytest.raises(rbpsolve.SolveError) as info:
        rbpsolve.fixed_point(F, h0, Picard(rtol=1e-10))
    assert info.value.result.status is Status.DIVERGED
    assert "DIVERGED" in str(info.value)
    good = rbpsolve.fixed_point(F, h0, Anderson(rtol=1e-12, memory=6))
    np.testing.assert_allclose(backend.to_numpy(good.x), h_star, rtol=1e-9)


def test_max_steps_status(backend):
    A, c, _ = _linear_problem(q=0.99)
    res = rbpsolve.fixed_point(_linear_map(backend, A, c), backend.asarray(np.zeros(12)), Picard(max_steps=5, rtol=1e-12), throw=False)
    assert res.status is Status.MAX_STEPS and res.num_steps == 5
    with pytest.raises(rbpsolve.SolveError):
        rbpsolve.fixed_point(_linear_map(backend, A, c), backend.asarray(np.zeros(12)), Anderson(max_steps=2, rtol=1e-12))


@pytest.mark.parametrize("solver", [Picard(), Anderson()], ids=["picard", "anderson"])
def test_nonfinite_map_returns_the_best_finite_iterate(np_backend, solver):
    calls = []

    def F(h):
        calls.append(1)
        return 0.5 * h + 1.0 if len(calls) < 3 else h * np.nan

    res = rbpsolve.fixed_point(F, np.zeros(3), solver, throw=False)
    assert res.status is Status.NONFINITE
    assert np.all(np.isfinite(res.x))
    assert res.info["num_evaluations"] == 3


def test_fallback_chain_of_forward_solvers(np_backend):
    A, c, h_star = _linear_problem(n=6, q=1.5, rotation=True)
    res = rbpsolve.fixed_point(_linear_map(np_backend, A, c), np.zeros(6),
                               rbpsolve.Fallback(Picard(rtol=1e-10), Anderson(rtol=1e-12, memory=6)))
    assert res.ok and isinstance(res.solver, Anderson)
    assert len(res.attempts) == 1 and res.attempts[0].status is Status.DIVERGED
    np.testing.assert_allclose(res.x, h_star, rtol=1e-9)


def test_callback_sees_each_step_and_can_stop(np_backend):
    A, c, _ = _linear_problem(q=0.9)
    seen = []

    def callback(info):
        seen.append((info.step, info.residual_norm, info.x.copy()))
        return info.step == 3

    res = rbpsolve.fixed_point(_linear_map(np_backend, A, c), np.zeros(12), Picard(rtol=1e-12), callback=callback, throw=False)
    assert res.status is Status.STOPPED and [s for s, _, _ in seen] == [1, 2, 3]
    assert [r for _, r, _ in seen] == list(res.history)
    np.testing.assert_array_equal(seen[-1][2], res.x)

    def broken(info):
        raise KeyError("oops")

    with pytest.raises(rbpsolve.CallbackError):
        rbpsolve.fixed_point(_linear_map(np_backend, A, c), np.zeros(12), Picard(), callback=broken)


def test_h0_is_not_modified(np_backend):
    h0 = np.ones(12)
    A, c, _ = _linear_problem()
    rbpsolve.fixed_point(_linear_map(np_backend, A, c), h0, Anderson())
    np.testing.assert_array_equal(h0, np.ones(12))


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(max_steps=0), ValueError, "max_steps must be at least 1"),
        (dict(max_steps=2.5), TypeError, "max_steps must be an int"),
        (dict(rtol=-1e-3), ValueError, "rtol must be a finite number >= 0"),
        (dict(atol=float("nan")), ValueError, "atol"),
        (dict(divergence_factor=0.5), ValueError, "divergence_factor"),
    ],
)
@pytest.mark.parametrize("cls", [Picard, Anderson])
def test_settings_are_checked_at_construction(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(memory=0), ValueError, "memory must be at least 1"),
        (dict(memory=2.0), TypeError, "memory must be an int"),
        (dict(mixing=0.0), ValueError, r"mixing must lie in \(0, 1\]"),
        (dict(mixing=1.5), ValueError, "mixing"),
        (dict(regularization=-1.0), ValueError, "regularization"),
        (dict(regularization="x"), TypeError, "regularization"),
    ],
)
def test_anderson_settings_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        Anderson(**kwargs)


def test_settings_are_frozen():
    with pytest.raises(Exception):
        Picard().max_steps = 3


def test_bad_inputs_name_the_problem(np_backend):
    F = lambda h: 0.5 * h  # noqa: E731
    with pytest.raises(TypeError, match="F must be callable"):
        rbpsolve.fixed_point(3.0, np.zeros(2), Picard())
    with pytest.raises(TypeError, match="h0 must be an array"):
        rbpsolve.fixed_point(F, [0.0, 1.0], Picard())
    with pytest.raises(TypeError, match="h0 has dtype int64"):
        rbpsolve.fixed_point(F, np.zeros(2, dtype=np.int64), Picard())
    with pytest.raises(ValueError, match="h0 contains NaN"):
        rbpsolve.fixed_point(F, np.array([0.0, np.nan]), Picard())
    with pytest.raises(ValueError, match=r"F returned an array of shape \(3,\) but h0 has shape \(2,\)"):
        rbpsolve.fixed_point(lambda h: np.zeros(3), np.zeros(2), Picard())
    with pytest.raises(TypeError, match="F returned dtype float32 but h0 has dtype float64"):
        rbpsolve.fixed_point(lambda h: h.astype(np.float32), np.zeros(2), Picard())
    with pytest.raises(TypeError, match="not an array"):
        rbpsolve.fixed_point(lambda h: 1.0, np.zeros(2), Picard())
    with pytest.raises(TypeError, match="Picard\\(\\) instead of Picard"):
        rbpsolve.fixed_point(F, np.zeros(2), Picard)
    with pytest.raises(TypeError, match="GMRES solves the linear adjoint system"):
        rbpsolve.fixed_point(F, np.zeros(2), rbpsolve.GMRES())
    with pytest.raises(TypeError, match="Neumann solves the linear"):
        rbpsolve.fixed_point(F, np.zeros(2), rbpsolve.Fallback(Picard(), rbpsolve.Neumann()))
    with pytest.raises(TypeError, match="forward-solver settings"):
        rbpsolve.fixed_point(F, np.zeros(2), "picard")


def test_library_mismatch_is_named():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="F must return an array of the library of h0"):
        rbpsolve.fixed_point(lambda h: np.zeros(2), strict.zeros(2, dtype=strict.float64), Picard())


def test_linear_entry_points_reject_forward_solvers(np_backend):
    J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(2))
    with pytest.raises(TypeError, match="Picard finds fixed points"):
        rbpsolve.solve_adjoint(J, np.ones(2), Picard())
    with pytest.raises(TypeError, match="Anderson finds fixed points"):
        rbpsolve.solve_adjoint(J, np.ones(2), rbpsolve.Fallback(rbpsolve.GMRES(), Anderson()))
    with pytest.raises(TypeError, match="Picard finds fixed points"):
        rbpsolve.solve(np.eye(2), np.ones(2), Picard())
