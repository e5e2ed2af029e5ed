"""The helpers of ``benchmarks/benchmarks/bench_jax.py`` that ``jax_report.py`` relies on, at a
small size (tanh n = 64, GRU n = 32, batch 8): the calibration, the reference, the product
counts of every method and the lineax solve that stands in for optimistix's."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from benchmarks import bench_jax as bj  # noqa: E402

needs_peers = pytest.mark.skipif(not bj.peers_available(), reason="optimistix and lineax are not installed")


@pytest.fixture(autouse=True, scope="module")
def _float32_jax():
    """The benchmark runs float32 with jax's default (x64 off); other test modules turn x64 on for
    the whole process, under which lineax's GMRES loop mixes float32 and float64 carries."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module")
def tanh():
    return bj.Model("tanh", 64, 8)


@pytest.fixture(scope="module")
def ref(tanh):
    return bj.reference(tanh)


@pytest.mark.parametrize("name, n", [("tanh", 64), ("gru", 32)])
def test_calibration_reaches_the_target_norm_on_the_dense_blocks(name, n):
    """Power iteration calibrates; the dense blocks' spectral norms confirm it (power
    iteration is a lower bound, so allow a little above)."""
    model = bj.Model(name, n, 8)
    norms = np.linalg.norm(model.blocks().astype(np.float64), ord=2, axis=(1, 2))
    assert abs(norms.max() - bj.TARGET_NORM) < 0.01
    h = model.h_star
    assert float(jax.numpy.max(jax.numpy.abs(model.f(h, model.params) - h))) < 1e-5


def test_the_ci_size_keeps_its_calibrated_scale(tanh):
    """JaxSmall skips the calibration with a stored scale: it must be what calibrate() finds."""
    assert abs(tanh.scale - bj.SMALL_SCALE) < 2e-3 * bj.SMALL_SCALE
    fixed = bj.Model("tanh", 64, 8, scale=bj.SMALL_SCALE)
    assert abs(fixed.power_norm() - bj.TARGET_NORM) < 3e-3


def test_blocks_are_the_batched_jacobian(tanh):
    """The batch is uncoupled: J of the batched f is block diagonal with blocks() on the diagonal."""
    small = bj.Model("tanh", 16, 3)
    F = lambda h: small.f(h, small.params)  # noqa: E731
    full = np.asarray(jax.jacfwd(F)(small.h_star))  # (3, 16, 3, 16)
    blocks = small.blocks()
    for i in range(3):
        for j in range(3):
            expected = blocks[i] if i == j else np.zeros((16, 16))
            np.testing.assert_allclose(full[i, :, j, :], expected, atol=1e-6)


def test_reference_solves_the_adjoint_system(tanh, ref):
    _, pull = jax.vjp(lambda h: tanh.f(h, tanh.params), tanh.h_star)
    z = jax.numpy.asarray(ref["z"], dtype=jax.numpy.float32)
    residual = np.asarray(tanh.c - (z - pull(z)[0]))
    assert np.linalg.norm(residual) <= 1e-5 * np.linalg.norm(np.asarray(tanh.c))


@pytest.mark.parametrize("method, expected", [("rbpsolve-Neumann", bj.K), ("rbpsolve-GMRES", None)])
def test_rbpsolve_products_and_gradient(tanh, ref, method, expected):
    call, diag = bj.rbpsolve_backward(tanh, method)
    grad = call()
    b = diag.backward
    assert b.ok and b.num_jvp == 0
    if expected is not None:
        assert b.num_vjp == expected  # a fixed budget: exactly K VJPs
    assert bj.relative_difference(grad, ref["gradient"]) < 1e-5


@needs_peers
def test_lineax_products_count_its_gmres(tanh):
    """lineax's GMRES: one product for its dummy step 0, restart + 1 for each cycle after it."""
    products, steps, _ = bj.lineax_products(tanh, "optimistix-GMRES")
    assert products == 1 + (steps - 1) * (20 + 1)
    products, steps, _ = bj.lineax_products(tanh, "optimistix-GMRES-budget")
    assert (products, steps) == (1 + bj.BUDGET_RESTART + 1, 2)


@needs_peers
@pytest.mark.parametrize("method", bj.PEER_METHODS)
def test_the_direct_lineax_solve_is_optimistix_backward(tanh, ref, method):
    """The counted solve stands in for the one inside ImplicitAdjoint: same gradient to float32
    round-off, and both near the reference."""
    call, info = bj.optimistix_backward(tanh, method)
    grad = call()
    _, _, w = bj.lineax_products(tanh, method)
    assert bj.relative_difference(tanh.parameter_gradient(-w), grad) < 2e-6
    assert bj.relative_difference(grad, ref["gradient"]) < 1e-5
    assert info["h_difference"] < 1e-6 and info["forward_steps"] <= 2


def test_loop_overhead_compares_equal_work(tanh):
    loop = bj.LoopOverhead(tanh)
    assert loop.num_vjp == bj.K and loop.status == "BUDGET_SPENT"
    bare = np.asarray(loop.bare())
    np.testing.assert_allclose(bare, np.asarray(loop.bare_jit()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(loop.bare_flat()).reshape(bare.shape), bare, rtol=1e-5, atol=1e-6)


def test_every_method_linearises_at_the_shared_fixed_point(tanh):
    """The polished h* is at float32's floor, and optimistix's forward started there stays there."""
    assert tanh.forward_residual < 1e-6
