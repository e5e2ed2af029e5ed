"""Host transfers per step (issue 14): at most one a step for every solver, none for a
fixed budget, counted twice: by rbpsolve's own counter (every value it moves from an
array to Python goes through ``_backend.to_host``) and, on torch, by the tensor methods
that move a value to Python (item, tolist, numpy, cpu, float, int, bool), so that a
transfer that bypasses the counter is caught too.

The count a step is the difference between a run of 2K and one of K steps (divided by
K): the transfers of the start and the end (the norm of b, the checks of the returned
x) are the same for both.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import rbpsolve
from rbpsolve import _backend

K = 10
N = 120


def _matrix(seed=0, rho=0.95):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((N, N))
    return W * (rho / np.max(np.abs(np.linalg.eigvals(W))))


@contextlib.contextmanager
def _torch_counts():
    """Count the torch calls that move a value to Python while the block runs."""
    import torch

    counts = {"n": 0}
    names = ["item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__"]
    saved = {name: getattr(torch.Tensor, name) for name in names}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            counts["n"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in names:
        setattr(torch.Tensor, name, counting(saved[name]))
    try:
        yield counts
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


def _operator(kind, W):
    if kind == "numpy":
        return rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(N)), np.ones(N)
    if kind == "cupy":
        import cupy

        Wc = cupy.asarray(W)
        return rbpsolve.JacobianOperator(lambda u: Wc.T @ u, lambda v: Wc @ v, like=cupy.zeros(N)), cupy.ones(N)
    import torch

    device = "cuda" if kind == "torch-cuda" else "cpu"
    Wt = torch.as_tensor(W, device=device)
    like = torch.zeros(N, dtype=torch.float64, device=device)
    return (rbpsolve.JacobianOperator(lambda u: Wt.T @ u, lambda v: Wt @ v, like=like),
            torch.ones(N, dtype=torch.float64, device=device))


def _counts(kind, make_solver, steps, seed=0):
    """(rbpsolve's count, torch's count or None, result) of one solve."""
    J, g = _operator(kind, _matrix(seed))
    before = _backend.transfer_count()
    if kind.startswith("torch"):
        with _torch_counts() as counts:
            res = rbpsolve.solve_adjoint(J, g, make_solver(steps), throw=False)
        framework = counts["n"]
    else:
        res = rbpsolve.solve_adjoint(J, g, make_solver(steps), throw=False)
        framework = None
    return _backend.transfer_count() - before, framework, res


# rtol far below reach (each run must take all its steps), restart above 2K.
TOLERANCE = {
    "FixedPoint": lambda k: rbpsolve.FixedPoint(max_steps=k, rtol=1e-300),
    "Neumann": lambda k: rbpsolve.Neumann(max_steps=k, rtol=1e-300),
    "CGNE": lambda k: rbpsolve.CGNE(max_steps=k, rtol=1e-300),
    "LSQR": lambda k: rbpsolve.LSQR(max_steps=k, rtol=1e-300),
    "GMRES": lambda k: rbpsolve.GMRES(max_steps=k, rtol=1e-300, restart=4 * K),
}
FIXED = {
    "FixedPoint": lambda k: rbpsolve.FixedPoint(max_steps=k, rtol=0.0),
    "Neumann": lambda k: rbpsolve.Neumann(max_steps=k),
    "RandomizedNeumann": lambda k: rbpsolve.RandomizedNeumann(continue_prob=1.0, max_steps=k),
    "CGNE": lambda k: rbpsolve.CGNE(max_steps=k, rtol=0.0),
    "LSQR": lambda k: rbpsolve.LSQR(max_steps=k, rtol=0.0),
    "GMRES": lambda k: rbpsolve.GMRES(max_steps=k, rtol=0.0, restart=4 * K),
}
KINDS = ["numpy", "torch", "torch-cuda", "cupy"]


def _skip_unless_available(kind):
    if kind.startswith("torch"):
        torch = pytest.importorskip("torch")
        if kind == "torch-cuda" and not torch.cuda.is_available():
            pytest.skip("no CUDA device for torch")
    if kind == "cupy":
        cupy = pytest.importorskip("cupy", reason="cupy is not installed or no GPU is present")
        try:
            cupy.zeros(1)
        except Exception as error:  # cupy installed without a usable GPU
            pytest.skip(f"cupy cannot run here: {error}")


def _per_step(kind, solvers, name):
    short, short_fw, res_short = _counts(kind, solvers[name], K)
    long, long_fw, res_long = _counts(kind, solvers[name], 2 * K)
    assert (res_short.num_steps, res_long.num_steps) == (K, 2 * K), (res_short, res_long)
    framework = None if short_fw is None else (long_fw - short_fw) / K
    return (long - short) / K, framework


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(TOLERANCE))
def test_at_most_one_transfer_a_step(kind, name):
    _skip_unless_available(kind)
    ours, framework = _per_step(kind, TOLERANCE, name)
    assert ours <= 1.0, f"{name} moved {ours} values a step to the host"
    if framework is not None:
        assert framework <= 1.0, f"{name} made {framework} torch host transfers a step"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(FIXED))
def test_a_fixed_budget_moves_nothing_while_it_runs(kind, name):
    _skip_unless_available(kind)
    ours, framework = _per_step(kind, FIXED, name)
    assert ours == 0.0, f"{name} moved values to the host during a fixed budget ({ours} a step)"
    if framework is not None:
        assert framework == 0.0, f"{name} made torch host transfers during a fixed budget ({framework} a step)"


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_forward_solvers_transfer_at_most_once_a_step(kind):
    if kind == "torch":
        pytest.importorskip("torch")
    W = 0.9 * _matrix(3)
    if kind == "numpy":
        F, h0 = (lambda h: np.tanh(W @ h) + 0.1), np.zeros(N)
    else:
        import torch

        Wt = torch.as_tensor(W)
        F, h0 = (lambda h: torch.tanh(Wt @ h) + 0.1), torch.zeros(N, dtype=torch.float64)
    for make, fixed in [(lambda k: rbpsolve.Picard(max_steps=k, rtol=0.0), True),
                        (lambda k: rbpsolve.Picard(max_steps=k, rtol=1e-300), False),
                        (lambda k: rbpsolve.Anderson(max_steps=k, rtol=0.0), True),
                        (lambda k: rbpsolve.Anderson(max_steps=k, rtol=1e-300), False)]:
        counts = []
        for steps in (K, 2 * K):
            before = _backend.transfer_count()
            res = rbpsolve.fixed_point(F, h0, make(steps), throw=False)
            assert res.num_steps == steps
            counts.append(_backend.transfer_count() - before)
        per_step = (counts[1] - counts[0]) / K
        assert per_step == 0.0 if fixed else per_step <= 1.0, (make(1), per_step)


def test_a_long_fixed_budget_reads_its_steps_only_at_powers_of_two():
    # Budgets past 64 steps are read at steps 64, 128, 256, ... so that a diverging
    # series stops early: a logarithmic number of transfers, not one a step.
    counts = []
    for steps in (200, 400):
        J, g = _operator("numpy", _matrix(1, rho=0.5))
        before = _backend.transfer_count()
        res = rbpsolve.solve_adjoint(J, g, rbpsolve.Neumann(max_steps=steps))
        counts.append(_backend.transfer_count() - before)
        assert res.num_steps == steps
    assert counts[1] - counts[0] == 1  # the read at step 256


def test_the_counter_counts_what_reaches_python():
    x = np.arange(3.0)
    before = _backend.transfer_count()
    assert _backend.to_host(np, np.float64(2.0), x, 1.5) == [2.0, 0.0, 1.0, 2.0, 1.5]
    assert _backend.transfer_count() - before == 1
    assert _backend.to_host(np, 1.0, 2) == [1.0, 2.0]  # Python numbers move nothing
    assert _backend.transfer_count() - before == 1


@pytest.mark.parametrize("make", [
    lambda k, r: rbpsolve.FixedPoint(max_steps=k, rtol=r),
    lambda k, r: rbpsolve.Neumann(max_steps=k, rtol=r),
    lambda k, r: rbpsolve.CGNE(max_steps=k, rtol=r),
    lambda k, r: rbpsolve.LSQR(max_steps=k, rtol=r),
    lambda k, r: rbpsolve.GMRES(max_steps=k, rtol=r, restart=7),
], ids=["FixedPoint", "Neumann", "CGNE", "LSQR", "GMRES(restart=7)"])
def test_a_fixed_budget_read_afterwards_computes_what_a_step_by_step_run_does(make):
    # The same steps, decided afterwards (rtol = 0) or step by step (rtol far below
    # reach): the same iterate to rounding, the same history, the same products.
    J, g = _operator("numpy", _matrix(4, rho=0.9))
    deferred = rbpsolve.solve_adjoint(J, g, make(2 * K, 0.0))
    eager = rbpsolve.solve_adjoint(J, g, make(2 * K, 1e-300), throw=False)
    np.testing.assert_allclose(deferred.x, eager.x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(deferred.history, eager.history, rtol=1e-8)
    assert (deferred.num_vjp, deferred.num_jvp) == (eager.num_vjp, eager.num_jvp)


def test_anderson_fixed_budget_solves_its_small_system_on_the_device_alike():
    W = 0.9 * _matrix(5)
    F = lambda h: np.tanh(W @ h) + 0.1  # noqa: E731
    deferred = rbpsolve.fixed_point(F, np.zeros(N), rbpsolve.Anderson(max_steps=2 * K, rtol=0.0))
    eager = rbpsolve.fixed_point(F, np.zeros(N), rbpsolve.Anderson(max_steps=2 * K, rtol=1e-300), throw=False)
    np.testing.assert_allclose(deferred.x, eager.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(deferred.history, eager.history, rtol=1e-6)


def test_gmres_holds_one_basis_for_the_whole_solve():
    # Between steps GMRES holds its basis (restart arrays: the cycle's last vector is never
    # stored) and the cycle's start x; with the loop's copy of b that is restart + 2, the
    # goal. The step that ends a cycle also holds the old start, the new one and its
    # residual until the next step (restart + 4). A basis allocated per cycle, or an
    # initial state kept alive by the loop, would show at once.
    import tracemalloc

    n, restart = 20000, 10
    d = np.linspace(-0.95, 0.95, n)
    J = rbpsolve.JacobianOperator(lambda u: d * u, lambda v: d * v, like=np.zeros(n))
    g = np.random.default_rng(0).standard_normal(n)
    held = []
    tracemalloc.start()
    try:
        res = rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES(restart=restart, max_steps=4 * restart, rtol=1e-300),
                                     throw=False, callback=lambda info: held.append(tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    assert res.num_steps == 4 * restart
    arrays = [h / (8 * n) for h in held]
    mid_cycle = [h for k, h in enumerate(arrays, 1) if k % restart not in (0, 1)]
    assert max(mid_cycle) <= restart + 2.5, f"GMRES held {max(mid_cycle):.1f} state-sized arrays within a cycle"
    assert max(arrays) <= restart + 4.5, f"GMRES held {max(arrays):.1f} state-sized arrays between steps"
