"""The helpers of ``benchmarks/benchmarks/bench_batched.py`` that ``batched_report.py`` relies on,
at a small size (n = 64, batch 8): the model's per-sample contractions, the per-sample
residuals, the one-vector tolerance search and the two forward + backward steps."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from benchmarks import bench_batched as bb  # noqa: E402

N, B = 64, 8


@pytest.fixture(scope="module")
def model():
    return bb.DEQBatch(N, B)


def test_contractions_are_spread_over_the_range(model):
    c = model.contractions()
    assert c.shape == (B,)
    assert c.min() >= bb.C_MIN - 1e-9 and c.max() <= bb.C_MAX + 1e-9
    np.testing.assert_allclose(np.sort(c), np.linspace(bb.C_MIN, bb.C_MAX, B), atol=1e-9)
    # every sample's map is a global contraction (s_i < 1), so its fixed point is unique
    assert float(model.s.max()) < 1.0


def test_contraction_is_the_spectral_norm_of_each_block(model):
    """The closed form s_i max_j d_ij against the dense Jacobian from autograd: each
    sample's block is s_i diag(d_i) W, of spectral norm contractions()[i], and the blocks
    off the diagonal are zero (the batch is uncoupled)."""
    dense = np.asarray(model.jacobian().to_dense()).reshape(B, N, B, N)
    c = model.contractions()
    for i in range(B):
        assert np.linalg.norm(dense[i, :, i, :], 2) == pytest.approx(c[i], rel=1e-10)
        off = np.delete(dense[i], i, axis=1)
        assert np.abs(off).max() == 0.0
    assert model.spectral_radii().max() <= c.max() + 1e-12


def test_fixed_point_and_unit_loss_weights(model):
    assert model.forward_residuals(model.h_star).max() < 1e-12
    np.testing.assert_allclose(torch.linalg.vector_norm(model.c, dim=1).numpy(), 1.0, rtol=1e-12)


def test_sample_residuals_match_a_dense_solve(model):
    dense = np.asarray(model.jacobian().to_dense())
    g = model.c.numpy().reshape(-1)
    z = np.linalg.solve(np.eye(N * B) - dense.T, g)
    assert model.sample_residuals(torch.tensor(z.reshape(B, N))).max() < 1e-12
    assert model.sample_residuals(torch.zeros(B, N)).max() == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["GMRES", "FixedPoint", "LSQR"])
def test_both_modes_meet_the_target_for_every_sample(model, name):
    J = model.jacobian()
    per_sample = bb.backward_solve(model, J, name, "per_sample")
    assert per_sample.sample_num_steps is not None
    assert model.sample_residuals(per_sample.x).max() <= bb.RTOL
    rtol, k, tried = bb.one_vector_rtol(model, J, name)
    assert rtol == pytest.approx(bb.RTOL * 2.0 ** (-k / 2))
    assert rtol >= bb.RTOL / np.sqrt(B) / np.sqrt(2)  # the a-priori bound ends the search
    assert tried[-1] <= bb.RTOL and all(t > bb.RTOL for t in tried[:-1])
    one = bb.backward_solve(model, J, name, "one_vector", rtol)
    assert one.sample_num_steps is None
    assert model.sample_residuals(one.x).max() <= bb.RTOL


def test_rbpsolve_step_gives_the_reference_gradient(model):
    ref = bb.reference_gradient(model)
    forward_rtol = None if bb.forward_batch_axis_available() else bb.one_vector_forward_rtol(model)[0]
    counts = {}
    h, z, grads = bb.rbpsolve_step(model, forward_rtol=forward_rtol, counts=counts)
    assert counts["forward_status"] == "CONVERGED" and counts["backward_status"] == "CONVERGED"
    assert model.forward_residuals(h).max() <= bb.RTOL
    assert model.sample_residuals(z, h).max() <= bb.RTOL
    assert bb.gradient_difference(grads, ref) < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("torchdeq") is None, reason="torchdeq is not installed")
def test_torchdeq_step_gives_the_reference_gradient(model):
    ref = bb.reference_gradient(model)
    h, grads = bb.torchdeq_step(model, bb.make_torchdeq("anderson"))
    assert model.forward_residuals(h).max() <= bb.RTOL
    assert bb.gradient_difference(grads, ref) < 1e-4
    counts = bb.torchdeq_counts(model, "anderson")
    assert counts["forward_evaluations"] > 0 and counts["backward_products"] > 0
