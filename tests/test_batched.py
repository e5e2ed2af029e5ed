"""Batched solves (issue 15): one independent system per sample, each with its own steps,
status and certificate, checked against each sample solved alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rbpsolve
from rbpsolve import Status, _backend

N = 24

# Every solver that solves per sample, with a tolerance far below what float64 needs to
# reach (1e-10) and a fixed budget.
SOLVERS = {
    "FixedPoint": lambda: rbpsolve.FixedPoint(rtol=1e-11, max_steps=3000),
    "Neumann": lambda: rbpsolve.Neumann(rtol=1e-11, max_steps=3000),
    "Neumann-budget": lambda: rbpsolve.Neumann(max_steps=25),
    "FixedPoint-budget": lambda: rbpsolve.FixedPoint(max_steps=25, rtol=0.0),
    "CGNE": lambda: rbpsolve.CGNE(rtol=1e-11),
    "LSQR": lambda: rbpsolve.LSQR(rtol=1e-11),
    "CGNE-budget": lambda: rbpsolve.CGNE(max_steps=12, rtol=0.0),
    "LSQR-budget": lambda: rbpsolve.LSQR(max_steps=12, rtol=0.0),
    "GMRES": lambda: rbpsolve.GMRES(rtol=1e-11),
    "GMRES-restarted": lambda: rbpsolve.GMRES(rtol=1e-11, restart=6, max_steps=400),
    "GMRES-budget": lambda: rbpsolve.GMRES(max_steps=15, rtol=0.0, restart=6),
}


def _blocks(rhos, seed, n=N, symmetric=False):
    """One n x n matrix a sample, spectral radius ``rhos[i]`` (non-symmetric by default)."""
    rng = np.random.default_rng(seed)
    out = []
    for rho in rhos:
        W = rng.standard_normal((n, n))
        if symmetric:
            W = W + W.T
        out.append(W * (rho / np.max(np.abs(np.linalg.eigvals(W)))))
    return np.stack(out)


def _batched_operator(Ws, like, poison=None):
    """J acting on a (B, n) batch: sample i through Ws[i] (``poison``: that sample's
    products are NaN)."""

    # Each sample's product exactly as its solo operator makes it (the same BLAS call), so
    # that a sample's recurrence can be compared with its solo one to rounding.
    def vjp(u):
        out = np.stack([W.T @ row for W, row in zip(Ws, u)])
        if poison is not None:
            out[poison] = np.nan
        return out

    def jvp(v):
        out = np.stack([W @ row for W, row in zip(Ws, v)])
        if poison is not None:
            out[poison] = np.nan
        return out

    return rbpsolve.JacobianOperator(vjp, jvp, like=like)


def _solo(W, g, solver):
    J = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=g)
    return rbpsolve.solve_adjoint(J, g, solver, throw=False)


def _assert_sample_matches(result, i, solo, *, atol=1e-10):
    assert result.sample_status[i] is solo.status, (i, result.sample_status[i], solo.status)
    assert result.sample_num_steps[i] == solo.num_steps
    np.testing.assert_allclose(result.x[i], solo.x, rtol=0, atol=atol * max(1.0, float(np.abs(solo.x).max())))
    if solo.residual_norm is not None and math.isfinite(solo.residual_norm) and solo.residual_norm > 1e-13:
        assert result.sample_residual_norm[i] == pytest.approx(solo.residual_norm, rel=1e-3, abs=1e-13)
    if math.isfinite(solo.error_estimate) and solo.error_estimate > 1e-13:
        assert result.sample_error_estimate[i] == pytest.approx(solo.error_estimate, rel=1e-3, abs=1e-13)
    else:
        assert result.sample_error_estimate[i] == solo.error_estimate or result.sample_error_estimate[i] < 1e-12


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("seed", range(6))
def test_each_sample_equals_its_solo_solve(name, seed):
    rng = np.random.default_rng(100 + seed)
    rhos = rng.uniform(0.1, 0.95, size=5)
    Ws = _blocks(rhos, seed)
    G = rng.standard_normal((5, N))
    before = G.copy()
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS[name](), batch_axis=0, throw=False)
    np.testing.assert_array_equal(G, before)  # nothing the user gave is changed
    for i in range(5):
        _assert_sample_matches(result, i, _solo(Ws[i], G[i], SOLVERS[name]()))
    assert result.num_steps == max(result.sample_num_steps)
    assert result.ok == all(s.ok for s in result.sample_status)


@pytest.mark.parametrize("name", ["FixedPoint", "Neumann"])
def test_fast_slow_and_divergent_samples_end_differently(name):
    # Sample 0 converges in a few steps, sample 1 needs many, sample 2 diverges: three
    # statuses, and the first two are their solo answers exactly.
    Ws = _blocks([0.05, 0.8, 1.3], seed=3, symmetric=True)
    G = np.random.default_rng(3).standard_normal((3, N))
    solver = SOLVERS[name]()
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, solver, batch_axis=0, throw=False)
    assert list(result.sample_status) == [Status.CONVERGED, Status.CONVERGED, Status.DIVERGED]
    assert result.sample_num_steps[0] < 15 < 60 < result.sample_num_steps[1]
    for i in range(2):
        _assert_sample_matches(result, i, _solo(Ws[i], G[i], solver))
    assert result.status is Status.DIVERGED and not result.ok
    assert "2 converged, 1 diverged: sample 2" in repr(result)
    assert result.batch_summary == "2 converged, 1 diverged: sample 2"
    assert math.isinf(result.sample_error_estimate[2])
    assert np.all(np.isfinite(result.x))  # the diverged sample returns its best iterate


def test_a_failed_sample_raises_with_throw():
    Ws = _blocks([0.5, 1.3], seed=4, symmetric=True)
    G = np.ones((2, N))
    with pytest.raises(rbpsolve.SolveError) as caught:
        rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS["FixedPoint"](), batch_axis=0)
    assert caught.value.result.sample_status[0] is Status.CONVERGED


@pytest.mark.parametrize("name", ["FixedPoint", "Neumann", "CGNE", "LSQR", "Neumann-budget", "GMRES", "GMRES-budget"])
def test_nan_in_one_sample_stays_in_that_sample(name):
    Ws = _blocks([0.3, 0.6, 0.9], seed=5)
    G = np.random.default_rng(5).standard_normal((3, N))
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G, poison=1), G, SOLVERS[name](), batch_axis=0, throw=False)
    assert result.sample_status[1] is Status.NONFINITE
    assert result.status is Status.NONFINITE
    for i in (0, 2):
        _assert_sample_matches(result, i, _solo(Ws[i], G[i], SOLVERS[name]()))
    assert np.all(np.isfinite(result.x[[0, 2]]))
    assert "nonfinite: sample 1" in result.batch_summary


AXIS_SOLVERS = {
    # Tolerances well above the rounding floor: the other layout rounds differently (below).
    "FixedPoint": lambda: rbpsolve.FixedPoint(rtol=1e-9, max_steps=3000),
    "CGNE": lambda: rbpsolve.CGNE(rtol=1e-8),
    "Neumann-budget": lambda: rbpsolve.Neumann(max_steps=25),
}


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("name", sorted(AXIS_SOLVERS))
def test_batch_axis_other_than_zero(name, axis):
    Ws = _blocks([0.2, 0.7, 0.9, 0.5], seed=6)
    G = np.random.default_rng(6).standard_normal((4, N))
    first = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, AXIS_SOLVERS[name](), batch_axis=0, throw=False)
    Gt = np.ascontiguousarray(G.T)  # (N, B): the samples on axis 1
    Jt = rbpsolve.JacobianOperator(lambda u: np.stack([W.T @ u[:, i] for i, W in enumerate(Ws)], axis=1),
                                   lambda v: np.stack([W @ v[:, i] for i, W in enumerate(Ws)], axis=1), like=Gt)
    last = rbpsolve.solve_adjoint(Jt, Gt, AXIS_SOLVERS[name](), batch_axis=axis, throw=False)
    assert last.x.shape == Gt.shape
    # The same systems, laid out differently in memory: BLAS may round differently
    # (strided rows), which CGNE's squared conditioning amplifies to the tolerance's
    # level; a wrong layout would be off by O(1).
    np.testing.assert_allclose(last.x.T, first.x, rtol=1e-6, atol=1e-9)
    assert list(last.sample_status) == list(first.sample_status)
    np.testing.assert_array_equal(last.sample_num_steps, first.sample_num_steps)
    assert last.info["batch_axis"] == 1


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_a_batch_of_one_is_the_unbatched_solve(name):
    Ws = _blocks([0.85], seed=7)
    g = np.random.default_rng(7).standard_normal(N)
    alone = _solo(Ws[0], g, SOLVERS[name]())
    batch = rbpsolve.solve_adjoint(_batched_operator(Ws, g[None]), g[None].copy(), SOLVERS[name](), batch_axis=0,
                                   throw=False)
    assert batch.status is alone.status and batch.num_steps == alone.num_steps
    np.testing.assert_allclose(batch.x[0], alone.x, rtol=1e-12, atol=1e-14)
    # GMRES's stacked Gram-Schmidt products round differently from the solo gemv's.
    np.testing.assert_allclose(batch.history, alone.history, rtol=1e-6, atol=1e-12 * alone.b_norm)
    assert batch.residual_norm == pytest.approx(alone.residual_norm, rel=1e-6)
    assert batch.error_estimate == pytest.approx(alone.error_estimate, rel=1e-6)
    assert batch.residual_kind == alone.residual_kind


def test_a_zero_sample_is_solved_in_no_step():
    Ws = _blocks([0.5, 0.5], seed=8)
    G = np.random.default_rng(8).standard_normal((2, N))
    G[1] = 0.0
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS["CGNE"](), batch_axis=0)
    assert result.sample_status[1] is Status.CONVERGED and result.sample_num_steps[1] == 0
    np.testing.assert_array_equal(result.x[1], 0.0)
    _assert_sample_matches(result, 0, _solo(Ws[0], G[0], SOLVERS["CGNE"]()))


def test_the_batch_fields_describe_the_whole_batch():
    Ws = _blocks([0.3, 0.9], seed=9)
    G = np.random.default_rng(9).standard_normal((2, N))
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS["FixedPoint"](), batch_axis=0)
    assert result.residual_norm == pytest.approx(math.hypot(*result.sample_residual_norm))
    assert result.error_estimate == pytest.approx(math.hypot(*result.sample_error_estimate))
    assert result.b_norm == pytest.approx(np.linalg.norm(G))
    assert len(result.history) == result.num_steps == max(result.sample_num_steps)
    # One batched VJP a step (every sample in it) plus the verification of the answer.
    assert result.num_vjp <= result.num_steps + 2
    true = np.linalg.norm(G - (result.x - np.einsum("bij,bi->bj", Ws, result.x)), axis=1)
    np.testing.assert_allclose(result.sample_residual_norm, true, rtol=1e-6, atol=1e-14)


@pytest.mark.parametrize("make", [
    lambda k: rbpsolve.Neumann(max_steps=k),
    lambda k: rbpsolve.FixedPoint(max_steps=k, rtol=0.0),
    lambda k: rbpsolve.CGNE(max_steps=k, rtol=0.0),
    lambda k: rbpsolve.LSQR(max_steps=k, rtol=0.0),
    lambda k: rbpsolve.GMRES(max_steps=k, rtol=0.0, restart=40),
], ids=["Neumann", "FixedPoint", "CGNE", "LSQR", "GMRES"])
def test_a_fixed_budget_moves_nothing_to_the_host_until_its_end(make):
    Ws = _blocks([0.3, 0.6, 0.9], seed=10, n=120)
    G = np.random.default_rng(10).standard_normal((3, 120))
    counts = []
    for steps in (10, 20):
        before = _backend.transfer_count()
        result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, make(steps), batch_axis=0, throw=False)
        counts.append(_backend.transfer_count() - before)
        assert result.num_steps == steps
    assert counts[0] == counts[1]


@pytest.mark.parametrize("name", ["FixedPoint", "Neumann", "CGNE", "LSQR", "GMRES"])
def test_one_transfer_a_step_with_a_tolerance(name):
    # n = 120: far from an invariant Krylov space in 12 steps (where GMRES's DGKS would
    # take its second pass, and transfer, in the solo solve too).
    Ws = _blocks([0.9, 0.95, 0.97], seed=11, n=120)
    G = np.random.default_rng(11).standard_normal((3, 120))
    counts = []
    for steps in (6, 12):
        solver = type(SOLVERS[name]())(rtol=1e-300, max_steps=steps)
        before = _backend.transfer_count()
        result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, solver, batch_axis=0, throw=False)
        assert result.num_steps == steps
        counts.append(_backend.transfer_count() - before)
    assert (counts[1] - counts[0]) / 6 <= 1.0


def test_torch_batch_equals_numpy_batch_and_counts_torch_transfers():
    torch = pytest.importorskip("torch")
    Ws = _blocks([0.2, 0.8, 0.95], seed=12)
    G = np.random.default_rng(12).standard_normal((3, N))
    Wt = torch.as_tensor(Ws)
    J = rbpsolve.JacobianOperator(lambda u: torch.einsum("bij,bi->bj", Wt, u),
                                  lambda v: torch.einsum("bij,bj->bi", Wt, v), like=torch.as_tensor(G))
    for name in ["FixedPoint", "CGNE", "LSQR", "Neumann-budget", "GMRES", "GMRES-restarted"]:
        on_torch = rbpsolve.solve_adjoint(J, torch.as_tensor(G), SOLVERS[name](), batch_axis=0, throw=False)
        on_numpy = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS[name](), batch_axis=0, throw=False)
        assert isinstance(on_torch.x, torch.Tensor)
        np.testing.assert_allclose(on_torch.x.numpy(), on_numpy.x, rtol=1e-9, atol=1e-12)
        assert list(on_torch.sample_status) == list(on_numpy.sample_status)


def test_immutable_arrays_jax():
    jnp = pytest.importorskip("jax.numpy")
    import jax

    jax.config.update("jax_enable_x64", True)
    Ws = _blocks([0.2, 0.8], seed=13)
    G = np.random.default_rng(13).standard_normal((2, N))
    Wj = jnp.asarray(Ws)
    J = rbpsolve.JacobianOperator(lambda u: jnp.einsum("bij,bi->bj", Wj, u), lambda v: jnp.einsum("bij,bj->bi", Wj, v),
                                  like=jnp.asarray(G))
    for name in ["FixedPoint", "CGNE", "LSQR", "Neumann-budget", "GMRES", "GMRES-restarted"]:
        on_jax = rbpsolve.solve_adjoint(J, jnp.asarray(G), SOLVERS[name](), batch_axis=0, throw=False)
        on_numpy = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS[name](), batch_axis=0, throw=False)
        np.testing.assert_allclose(np.asarray(on_jax.x), on_numpy.x, rtol=1e-9, atol=1e-12)
        assert list(on_jax.sample_status) == list(on_numpy.sample_status)


def test_solve_takes_batch_axis_too():
    Ws = _blocks([0.4, 0.9], seed=14)
    G = np.random.default_rng(14).standard_normal((2, N))
    A = rbpsolve.FunctionOperator(lambda x: x - np.einsum("bij,bi->bj", Ws, x),
                                  lambda y: y - np.einsum("bij,bj->bi", Ws, y), like_in=G)
    result = rbpsolve.solve(A, G, rbpsolve.LSQR(rtol=1e-11), batch_axis=0)
    for i in range(2):
        np.testing.assert_allclose(result.x[i], np.linalg.solve(np.eye(N) - Ws[i].T, G[i]), rtol=1e-8)


def test_callback_sees_the_batch_as_laid_out():
    Ws = _blocks([0.4, 0.9], seed=15)
    G = np.random.default_rng(15).standard_normal((2, N))
    Gt = np.ascontiguousarray(G.T)
    Jt = rbpsolve.JacobianOperator(lambda u: np.einsum("bij,ib->jb", Ws, u), like=Gt)
    shapes = []
    result = rbpsolve.solve_adjoint(Jt, Gt, rbpsolve.FixedPoint(rtol=1e-8), batch_axis=1, throw=False,
                                    callback=lambda info: shapes.append(info.x.shape) or info.step >= 3)
    assert result.status is Status.STOPPED and result.num_steps == 3
    assert shapes == [Gt.shape] * 3
    assert all(s is Status.STOPPED for s in result.sample_status)


@pytest.mark.parametrize("bad, error, words", [
    (True, TypeError, "batch_axis must be an int"),
    ("0", TypeError, "batch_axis must be an int"),
    (2, ValueError, "out of range"),
    (-3, ValueError, "out of range"),
])
def test_bad_batch_axis_is_named(bad, error, words):
    G = np.ones((2, N))
    J = _batched_operator(_blocks([0.5, 0.5], seed=0), G)
    with pytest.raises(error, match=words):
        rbpsolve.solve_adjoint(J, G, rbpsolve.FixedPoint(), batch_axis=bad)


@pytest.mark.parametrize("name", ["LSQR", "CGNE"])
def test_rectangular_least_squares_per_sample(name):
    # One least-squares problem a sample (A maps (B, 12) to (B, 30)): each sample's answer
    # is its own lstsq solution, and its solo solve's status and steps.
    rng = np.random.default_rng(16)
    As, bs = rng.standard_normal((3, 30, 12)), rng.standard_normal((3, 30))
    A = rbpsolve.FunctionOperator(lambda x: np.stack([M @ r for M, r in zip(As, x)]),
                                  lambda y: np.stack([M.T @ r for M, r in zip(As, y)]),
                                  like_in=np.zeros((3, 12)), like_out=bs)
    make = {"LSQR": lambda: rbpsolve.LSQR(rtol=1e-10), "CGNE": lambda: rbpsolve.CGNE(rtol=1e-10)}[name]
    result = rbpsolve.solve(A, bs, make(), batch_axis=0, throw=False)
    for i in range(3):
        solo = rbpsolve.solve(As[i], bs[i], make(), throw=False)
        assert result.sample_status[i] is solo.status and result.sample_num_steps[i] == solo.num_steps
        np.testing.assert_allclose(result.x[i], np.linalg.lstsq(As[i], bs[i], rcond=None)[0], rtol=1e-8, atol=1e-10)


def test_a_batch_axis_that_differs_between_x_and_b_is_refused():
    A = rbpsolve.FunctionOperator(lambda x: np.zeros((3, 30)), lambda y: np.zeros((4, 3)), like_in=np.zeros((4, 3)),
                                  like_out=np.zeros((3, 30)))
    with pytest.raises(ValueError, match="samples on that axis of both x and b"):
        rbpsolve.solve(A, np.ones((3, 30)), rbpsolve.LSQR(), batch_axis=0)


@pytest.mark.parametrize("name", ["FixedPoint", "GMRES", "Neumann-budget", "CGNE"])
def test_an_empty_batch_is_solved_in_no_step(name):
    G = np.zeros((0, N))
    J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, lambda v: 0.5 * v, like=G)
    result = rbpsolve.solve_adjoint(J, G, SOLVERS[name](), batch_axis=0)
    assert result.ok and result.num_steps == 0 and result.x.shape == (0, N)
    assert len(result.sample_status) == 0 and result.batch_summary == ""


@pytest.mark.parametrize("name", ["FixedPoint", "CGNE", "LSQR", "GMRES", "GMRES-restarted"])
def test_a_start_per_sample_is_each_sample_s_own(name):
    # x0 exact for sample 0: it needs (almost) nothing; sample 1 starts from zero. Each
    # equals its solo solve from its own start.
    Ws = _blocks([0.6, 0.8], seed=17)
    G = np.random.default_rng(17).standard_normal((2, N))
    x0 = np.stack([np.linalg.solve(np.eye(N) - Ws[0].T, G[0]), np.zeros(N)])
    before = x0.copy()
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS[name](), x0=x0, batch_axis=0, throw=False)
    np.testing.assert_array_equal(x0, before)
    assert all(s is Status.CONVERGED for s in result.sample_status)
    assert result.sample_num_steps[0] <= 2 < result.sample_num_steps[1]
    for i in range(2):
        J = rbpsolve.JacobianOperator(lambda u, i=i: Ws[i].T @ u, lambda v, i=i: Ws[i] @ v, like=G[i])
        solo = rbpsolve.solve_adjoint(J, G[i], SOLVERS[name](), x0=x0[i], throw=False)
        np.testing.assert_allclose(result.x[i], solo.x, rtol=0, atol=1e-10 * max(1.0, np.abs(solo.x).max()))


@pytest.mark.parametrize("name", ["FixedPoint", "Neumann-budget", "CGNE", "LSQR", "GMRES", "GMRES-budget"])
def test_samples_of_very_different_scales_are_each_solved(name):
    # One sample at 1e-200, one at 1e200: scaled together, the first would fall below
    # float64's range and "converge" at x = 0. Each is scaled on its own instead.
    Ws = _blocks([0.5, 0.5], seed=18)
    G = np.random.default_rng(18).standard_normal((2, N)) * np.array([[1e-200], [1e200]])
    result = rbpsolve.solve_adjoint(_batched_operator(Ws, G), G, SOLVERS[name](), batch_axis=0, throw=False)
    for i in range(2):
        solo = _solo(Ws[i], G[i], SOLVERS[name]())
        assert result.sample_status[i] is solo.status and result.sample_num_steps[i] == solo.num_steps
        np.testing.assert_allclose(result.x[i], solo.x, rtol=1e-10, atol=0)
        # (GMRES's residuals sit at the rounding level here: compared to it.)
        assert result.sample_residual_norm[i] == pytest.approx(solo.residual_norm, rel=1e-6,
                                                                abs=1e-12 * np.abs(G[i]).max())
    assert math.isfinite(result.residual_norm) and math.isfinite(result.b_norm)
