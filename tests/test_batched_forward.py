"""Batched forward solves (issue 15): ``fixed_point(F, h0, solver, batch_axis=k)`` finds one
independent fixed point a sample, each checked against that sample solved alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rbpsolve
from rbpsolve import Status, _backend

N = 24

# Every forward solver, with a tolerance far below what float64 needs to reach (1e-10),
# and a fixed budget (read only at its end).
SOLVERS = {
    "Picard": lambda: rbpsolve.Picard(rtol=1e-11, max_steps=3000),
    "Anderson": lambda: rbpsolve.Anderson(rtol=1e-11, max_steps=500),
    "Anderson-damped": lambda: rbpsolve.Anderson(rtol=1e-11, max_steps=500, memory=3, mixing=0.7),
    "Picard-budget": lambda: rbpsolve.Picard(max_steps=25, rtol=0.0),
    "Anderson-budget": lambda: rbpsolve.Anderson(max_steps=25, rtol=0.0),
}


def _weights(rhos, seed, n=N):
    """One n x n matrix a sample, spectral radius ``rhos[i]``."""
    rng = np.random.default_rng(seed)
    out = []
    for rho in rhos:
        W = rng.standard_normal((n, n))
        out.append(W * (rho / np.max(np.abs(np.linalg.eigvals(W)))))
    return np.stack(out), rng.standard_normal((len(rhos), n))


def _deq(W, u):
    """A sample's map ``h -> tanh(W h + u)``: a contraction when ``||W|| < 1``."""
    return lambda h: np.tanh(W @ h + u)


def _linear(W, u):
    """A sample's affine map ``h -> W h + u``: Picard diverges when W's spectral radius is above 1."""
    return lambda h: W @ h + u


class _Poisoned:
    """A sample's map that returns NaN from its ``after``-th call on (both solo and in the
    batch: each keeps its own count, one call a step)."""

    def __init__(self, F, after):
        self.F, self.after, self.calls = F, after, 0

    def __call__(self, h):
        self.calls += 1
        out = self.F(h)
        return out * np.nan if self.calls >= self.after else out


def _batched(maps):
    """The batch's F on a (B, ...) state: sample i through ``maps[i]``, with the same BLAS
    call as its solo map, so that a sample's iterates can be compared with its solo ones
    to rounding. Counts its calls."""

    def F(H):
        F.calls += 1
        return np.stack([f(h) for f, h in zip(maps, H)])

    F.calls = 0
    return F


def _assert_sample_matches(result, i, solo, *, atol=1e-10):
    assert result.sample_status[i] is solo.status, (i, result.sample_status[i], solo.status)
    assert result.sample_num_steps[i] == solo.num_steps, (i, result.sample_num_steps[i], solo.num_steps)
    np.testing.assert_allclose(result.x[i], solo.x, rtol=0, atol=atol * max(1.0, float(np.abs(solo.x).max())))
    if math.isfinite(solo.error_estimate) and solo.error_estimate > 1e-13:
        assert result.sample_error_estimate[i] == pytest.approx(solo.error_estimate, rel=1e-3, abs=1e-13)
    else:
        assert result.sample_error_estimate[i] == solo.error_estimate or result.sample_error_estimate[i] < 1e-12


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("seed", range(5))
def test_each_sample_equals_its_solo_solve(name, seed):
    rng = np.random.default_rng(200 + seed)
    Ws, U = _weights(rng.uniform(0.1, 0.95, size=5), seed)
    H0 = rng.standard_normal((5, N))
    before = H0.copy()
    F = _batched([_deq(W, u) for W, u in zip(Ws, U)])
    result = rbpsolve.fixed_point(F, H0, SOLVERS[name](), batch_axis=0, throw=False)
    np.testing.assert_array_equal(H0, before)  # the caller's h0 is never changed
    for i in range(5):
        solo = rbpsolve.fixed_point(_deq(Ws[i], U[i]), H0[i], SOLVERS[name](), throw=False)
        _assert_sample_matches(result, i, solo)
    assert result.num_steps == max(result.sample_num_steps)
    assert result.ok == all(s.ok for s in result.sample_status)
    # F runs once a step on the whole batch, and the count says so.
    assert result.info["num_evaluations"] == F.calls == result.num_steps
    assert result.num_vjp == result.num_jvp == 0


def _third_sample(name, W, u):
    """A sample without a fixed point Picard or Anderson can reach: Picard on an expanding
    affine map diverges; Anderson, which solves affine maps, gets ``h -> exp(h) + u``, with
    no fixed point where ``u > -1``, and diverges too."""
    if name == "Picard":
        return _linear(W, u)
    return lambda h: np.exp(h) + u


@pytest.mark.parametrize("name", ["Picard", "Anderson"])
def test_fast_slow_and_non_contracting_samples_end_differently(name):
    Ws, U = _weights([0.05, 0.9, 1.5], seed=3)
    H0 = np.zeros((3, N))
    maps = [_deq(Ws[0], U[0]), _deq(Ws[1], U[1]), _third_sample(name, Ws[2], U[2])]
    solver = SOLVERS[name]()
    result = rbpsolve.fixed_point(_batched(maps), H0, solver, batch_axis=0, throw=False)
    assert list(result.sample_status) == [Status.CONVERGED, Status.CONVERGED, Status.DIVERGED]
    assert result.sample_num_steps[0] < result.sample_num_steps[1]
    for i, f in enumerate(maps):
        _assert_sample_matches(result, i, rbpsolve.fixed_point(f, H0[i], solver, throw=False))
    assert result.status is Status.DIVERGED and not result.ok
    assert result.batch_summary == "2 converged, 1 diverged: sample 2"
    assert math.isinf(result.sample_error_estimate[2])
    assert np.all(np.isfinite(result.x))


def test_a_failed_sample_raises_with_throw():
    Ws, U = _weights([0.5, 1.5], seed=4)
    F = _batched([_deq(Ws[0], U[0]), _linear(Ws[1], U[1])])
    with pytest.raises(rbpsolve.SolveError) as caught:
        rbpsolve.fixed_point(F, np.zeros((2, N)), SOLVERS["Picard"](), batch_axis=0)
    assert list(caught.value.result.sample_status) == [Status.CONVERGED, Status.DIVERGED]


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_nan_in_one_samples_map_stays_in_that_sample(name):
    Ws, U = _weights([0.3, 0.6, 0.9], seed=5)
    H0 = np.random.default_rng(5).standard_normal((3, N))
    maps = [_deq(W, u) for W, u in zip(Ws, U)]
    maps[1] = _Poisoned(maps[1], after=4)
    result = rbpsolve.fixed_point(_batched(maps), H0, SOLVERS[name](), batch_axis=0, throw=False)
    assert result.sample_status[1] is Status.NONFINITE
    assert result.status is Status.NONFINITE
    solo = rbpsolve.fixed_point(_Poisoned(_deq(Ws[1], U[1]), after=4), H0[1], SOLVERS[name](), throw=False)
    _assert_sample_matches(result, 1, solo)  # its best iterate, finite
    for i in (0, 2):
        _assert_sample_matches(result, i, rbpsolve.fixed_point(maps[i], H0[i], SOLVERS[name](), throw=False))
    assert np.all(np.isfinite(result.x))
    assert "nonfinite: sample 1" in result.batch_summary


AXIS_SOLVERS = {
    "Picard": lambda: rbpsolve.Picard(rtol=1e-9, max_steps=3000),
    "Anderson": lambda: rbpsolve.Anderson(rtol=1e-9),
    "Anderson-budget": lambda: rbpsolve.Anderson(max_steps=25, rtol=0.0),
}


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("name", sorted(AXIS_SOLVERS))
def test_batch_axis_other_than_zero(name, axis):
    Ws, U = _weights([0.2, 0.7, 0.9, 0.5], seed=6)
    H0 = np.random.default_rng(6).standard_normal((4, N))
    first = rbpsolve.fixed_point(_batched([_deq(W, u) for W, u in zip(Ws, U)]), H0, AXIS_SOLVERS[name](),
                                 batch_axis=0, throw=False)
    H0t = np.ascontiguousarray(H0.T)  # (N, B): the samples on axis 1

    def Ft(H):
        return np.stack([np.tanh(W @ H[:, i] + u) for i, (W, u) in enumerate(zip(Ws, U))], axis=1)

    last = rbpsolve.fixed_point(Ft, H0t, AXIS_SOLVERS[name](), batch_axis=axis, throw=False)
    assert last.x.shape == H0t.shape
    # The same maps on strided columns: BLAS may round differently, far below the tolerance.
    np.testing.assert_allclose(last.x.T, first.x, rtol=0, atol=1e-9)
    assert list(last.sample_status) == list(first.sample_status)
    np.testing.assert_array_equal(last.sample_num_steps, first.sample_num_steps)
    assert last.info["batch_axis"] == 1


@pytest.mark.parametrize("name", ["Picard", "Anderson", "Anderson-budget"])
def test_samples_of_several_axes(name):
    # Samples of shape (4, 6), the batch in the middle: the per-sample scalars are
    # (B, 1, 1) and Anderson's coefficients broadcast over both axes of a sample.
    Ws, U = _weights([0.3, 0.8, 0.95], seed=7)
    H0 = np.random.default_rng(7).standard_normal((4, 3, 6))

    def F(H):
        return np.stack([np.tanh(W @ H[:, i].reshape(-1) + u).reshape(4, 6) for i, (W, u) in enumerate(zip(Ws, U))],
                        axis=1)

    result = rbpsolve.fixed_point(F, H0, SOLVERS[name](), batch_axis=1, throw=False)
    assert result.x.shape == H0.shape
    for i in range(3):
        solo = rbpsolve.fixed_point(lambda h, i=i: np.tanh(Ws[i] @ h.reshape(-1) + U[i]).reshape(4, 6),
                                    np.ascontiguousarray(H0[:, i]), SOLVERS[name](), throw=False)
        assert result.sample_status[i] is solo.status and result.sample_num_steps[i] == solo.num_steps
        np.testing.assert_allclose(result.x[:, i], solo.x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_a_batch_of_one_is_the_unbatched_solve(name):
    Ws, U = _weights([0.85], seed=8)
    h0 = np.random.default_rng(8).standard_normal(N)
    alone = rbpsolve.fixed_point(_deq(Ws[0], U[0]), h0, SOLVERS[name](), throw=False)
    batch = rbpsolve.fixed_point(_batched([_deq(Ws[0], U[0])]), h0[None].copy(), SOLVERS[name](), batch_axis=0,
                                 throw=False)
    assert batch.status is alone.status and batch.num_steps == alone.num_steps
    np.testing.assert_allclose(batch.x[0], alone.x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(batch.history, alone.history, rtol=1e-9, atol=1e-300)
    assert batch.b_norm == pytest.approx(alone.b_norm, rel=1e-12)
    assert batch.error_estimate == pytest.approx(alone.error_estimate, rel=1e-6)
    assert batch.estimate_reliable == alone.estimate_reliable
    assert batch.residual_kind == alone.residual_kind
    assert batch.info["num_evaluations"] == alone.info["num_evaluations"]


def test_each_sample_is_tested_against_its_own_scale():
    # Sample 1 is a million times sample 0: with one shared scale (the batch's norm),
    # sample 0 would stop far too early. Each stops at its own relative tolerance.
    Ws, U = _weights([0.9, 0.9], seed=9)
    U[1] = U[0] * 1e6
    maps = [_linear(Ws[0], U[0]), _linear(Ws[1], U[1])]
    solver = rbpsolve.Picard(rtol=1e-8, max_steps=3000)
    result = rbpsolve.fixed_point(_batched(maps), np.zeros((2, N)), solver, batch_axis=0)
    for i, f in enumerate(maps):
        _assert_sample_matches(result, i, rbpsolve.fixed_point(f, np.zeros(N), solver))
    exact = np.linalg.solve(np.eye(N) - Ws[0], U[0])
    assert np.linalg.norm(result.x[0] - exact) < 1e-6 * np.linalg.norm(exact)


def test_a_fixed_budget_moves_nothing_to_the_host_until_its_end():
    Ws, U = _weights([0.3, 0.6, 0.9], seed=10)
    F = _batched([_deq(W, u) for W, u in zip(Ws, U)])
    for name in ("Picard", "Anderson"):
        counts = []
        for steps in (10, 20):
            solver = type(SOLVERS[name]())(max_steps=steps, rtol=0.0)
            before = _backend.transfer_count()
            result = rbpsolve.fixed_point(F, np.zeros((3, N)), solver, batch_axis=0, throw=False)
            counts.append(_backend.transfer_count() - before)
            assert result.num_steps == steps
        assert counts[0] == counts[1], name


@pytest.mark.parametrize("name", ["Picard", "Anderson"])
def test_one_transfer_a_step_with_a_tolerance(name):
    Ws, U = _weights([0.9, 0.95, 0.97], seed=11)
    F = _batched([_linear(W, u) for W, u in zip(Ws, U)])
    counts = []
    for steps in (6, 12):
        solver = type(SOLVERS[name]())(rtol=1e-300, max_steps=steps)
        before = _backend.transfer_count()
        result = rbpsolve.fixed_point(F, np.zeros((3, N)), solver, batch_axis=0, throw=False)
        assert result.num_steps == steps
        counts.append(_backend.transfer_count() - before)
    assert (counts[1] - counts[0]) / 6 <= 1.0


# Budgets short enough that no sample reaches an exact fixed point (which one library's
# rounding may reach and another's not: CONVERGED against BUDGET_SPENT).
TORCH_SOLVERS = {
    "Picard": lambda: rbpsolve.Picard(rtol=1e-9, max_steps=3000),
    "Anderson": lambda: rbpsolve.Anderson(rtol=1e-9),
    "Anderson-budget": lambda: rbpsolve.Anderson(max_steps=8, rtol=0.0),
    "Picard-budget": lambda: rbpsolve.Picard(max_steps=12, rtol=0.0),
}


def _numpy_reference(name, Ws, U, H0):
    return rbpsolve.fixed_point(_batched([_deq(W, u) for W, u in zip(Ws, U)]), H0, TORCH_SOLVERS[name](),
                                batch_axis=0, throw=False)


@pytest.mark.parametrize("name", sorted(TORCH_SOLVERS))
def test_torch_batch_equals_numpy_batch(name):
    torch = pytest.importorskip("torch")
    Ws, U = _weights([0.2, 0.8, 0.95], seed=12)
    H0 = np.random.default_rng(12).standard_normal((3, N))
    Wt, Ut = torch.as_tensor(Ws), torch.as_tensor(U)
    on_torch = rbpsolve.fixed_point(lambda H: torch.tanh(torch.einsum("bij,bj->bi", Wt, H) + Ut),
                                    torch.as_tensor(H0), TORCH_SOLVERS[name](), batch_axis=0, throw=False)
    on_numpy = _numpy_reference(name, Ws, U, H0)
    assert isinstance(on_torch.x, torch.Tensor)
    np.testing.assert_allclose(on_torch.x.numpy(), on_numpy.x, rtol=0, atol=1e-8)
    assert list(on_torch.sample_status) == list(on_numpy.sample_status)


@pytest.mark.parametrize("name", sorted(TORCH_SOLVERS))
def test_immutable_arrays_jax(name):
    jnp = pytest.importorskip("jax.numpy")
    import jax

    jax.config.update("jax_enable_x64", True)
    Ws, U = _weights([0.2, 0.8], seed=13)
    H0 = np.random.default_rng(13).standard_normal((2, N))
    Wj, Uj = jnp.asarray(Ws), jnp.asarray(U)
    on_jax = rbpsolve.fixed_point(lambda H: jnp.tanh(jnp.einsum("bij,bj->bi", Wj, H) + Uj), jnp.asarray(H0),
                                  TORCH_SOLVERS[name](), batch_axis=0, throw=False)
    on_numpy = _numpy_reference(name, Ws, U, H0)
    np.testing.assert_allclose(np.asarray(on_jax.x), on_numpy.x, rtol=0, atol=1e-8)
    assert list(on_jax.sample_status) == list(on_numpy.sample_status)


def test_callback_sees_the_batch_as_laid_out():
    Ws, U = _weights([0.4, 0.9], seed=14)
    H0t = np.zeros((N, 2))

    def Ft(H):
        return np.stack([np.tanh(W @ H[:, i] + u) for i, (W, u) in enumerate(zip(Ws, U))], axis=1)

    shapes = []
    result = rbpsolve.fixed_point(Ft, H0t, rbpsolve.Anderson(rtol=1e-12), batch_axis=1, throw=False,
                                  callback=lambda info: shapes.append(info.x.shape) or info.step >= 3)
    assert result.status is Status.STOPPED and result.num_steps == 3
    assert shapes == [H0t.shape] * 3
    assert all(s is Status.STOPPED for s in result.sample_status)


@pytest.mark.parametrize("bad, error, words", [
    (True, TypeError, "batch_axis must be an int \\(the axis of h0"),
    ("0", TypeError, "batch_axis must be an int"),
    (2, ValueError, "out of range for h0 of shape \\(2, 24\\)"),
    (-3, ValueError, "out of range"),
])
def test_bad_batch_axis_is_named(bad, error, words):
    with pytest.raises(error, match=words):
        rbpsolve.fixed_point(np.tanh, np.zeros((2, N)), rbpsolve.Picard(), batch_axis=bad)


def test_a_fallback_chain_does_not_take_batch_axis_yet():
    chain = rbpsolve.Fallback(rbpsolve.Picard(), rbpsolve.Anderson())
    with pytest.raises(NotImplementedError, match="Fallback chain of forward solvers does not take batch_axis"):
        rbpsolve.fixed_point(np.tanh, np.zeros((2, N)), chain, batch_axis=0)


def test_a_map_that_changes_shape_is_named_in_a_batch():
    with pytest.raises(ValueError, match="F returned an array of shape \\(3, 24\\)"):
        rbpsolve.fixed_point(lambda H: np.zeros((3, N)), np.zeros((2, N)), rbpsolve.Picard(), batch_axis=0)
