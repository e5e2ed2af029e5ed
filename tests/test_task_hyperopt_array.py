"""The hyperparameter task's SGD-with-momentum step on the array API (hand-written gradient and
Hessian-vector products, Pearlmutter's R-operator) against the torch autograd step in float64:
F, J v, J^T u and (dF/dtheta)^T z to 1e-10; the dot test."""

from __future__ import annotations

import numpy as np
import pytest

import rbpsolve
from rbpsolve.adapters.tasks.hyperopt.array_sgd import ArrayTrainingStep

torch = pytest.importorskip("torch")

from rbpsolve.adapters.tasks.hyperopt.sgd import MLP, TrainingStep  # noqa: E402

LAYERS = (5, 4, 4, 3)


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    mlp = MLP(LAYERS)
    theta = np.stack([rng.normal(-1.0, 0.3, mlp.num_tensors), rng.normal(0.0, 0.5, mlp.num_tensors)])
    x, y = rng.standard_normal((7, LAYERS[0])), rng.integers(0, LAYERS[-1], 7)
    h = np.concatenate([0.5 * rng.standard_normal(mlp.num_params), 0.1 * rng.standard_normal(mlp.num_params)])
    theta_t = torch.tensor(theta, requires_grad=True)
    ours = ArrayTrainingStep(mlp, theta, x, y)
    theirs = TrainingStep(mlp, theta_t, torch.tensor(x), torch.tensor(y))
    return ours, theirs, theta_t, h, rng


@pytest.mark.parametrize("seed", range(3))
def test_step_and_products_match_autograd(seed):
    ours, theirs, theta_t, h, rng = _pair(seed)
    ht = torch.tensor(h)
    np.testing.assert_allclose(ours(h), theirs(ht).detach().numpy(), rtol=1e-12, atol=1e-14)
    d, u = rng.standard_normal(h.size), rng.standard_normal(h.size)
    _, jv = torch.autograd.functional.jvp(theirs, ht, torch.tensor(d))
    _, vj = torch.autograd.functional.vjp(theirs, ht, torch.tensor(u))
    np.testing.assert_allclose(ours.jvp(h, d), jv.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.vjp(h, u), vj.numpy(), rtol=1e-10, atol=1e-12)
    (gtheta,) = torch.autograd.grad((theirs(ht) * torch.tensor(u)).sum(), theta_t)
    np.testing.assert_allclose(ours.theta_vjp(h, u), gtheta.numpy(), rtol=1e-10, atol=1e-12)


def test_hessian_vector_product_against_autograd_hessian():
    ours, theirs, _, h, rng = _pair(3)
    P = ours.P
    w = torch.tensor(h[:P])
    H = torch.autograd.functional.hessian(lambda v: theirs.mlp.loss(v, theirs.x, theirs.y)
                                          + np.exp(-100.0) * torch.sum(v * v), w)
    d = rng.standard_normal(P)
    np.testing.assert_allclose(ours.hvp(h[:P], d), (H @ torch.tensor(d)).numpy(), rtol=1e-10, atol=1e-12)


def test_operator_passes_the_dot_test():
    ours, _, _, h, _ = _pair(4)
    assert rbpsolve.dottest(ours.operator(h)) is True


def test_bad_shapes():
    mlp = MLP(LAYERS)
    with pytest.raises(ValueError, match="theta"):
        ArrayTrainingStep(mlp, np.zeros((2, 3)), np.zeros((2, 5)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="batch"):
        ArrayTrainingStep(mlp, np.zeros((2, mlp.num_tensors)), np.zeros((2, 4)), np.zeros(2, dtype=int))


def test_array_api_strict_gives_the_numpy_answer():
    xp = pytest.importorskip("array_api_strict")
    _, _, _, h, _ = _pair(5)
    rng = np.random.default_rng(5)
    mlp = MLP(LAYERS)
    theta = np.stack([rng.normal(-1.0, 0.3, mlp.num_tensors), rng.normal(0.0, 0.5, mlp.num_tensors)])
    x, y = rng.standard_normal((7, LAYERS[0])), rng.integers(0, LAYERS[-1], 7)
    numpy_step = ArrayTrainingStep(mlp, theta, x, y)
    strict_step = ArrayTrainingStep(mlp, xp.asarray(theta), xp.asarray(x), y)
    u = rng.standard_normal(h.size)
    for name in ("vjp", "jvp"):
        got = getattr(strict_step, name)(xp.asarray(h), xp.asarray(u))
        np.testing.assert_allclose(np.asarray(got), getattr(numpy_step, name)(h, u), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(strict_step.theta_vjp(xp.asarray(h), xp.asarray(u))),
                               numpy_step.theta_vjp(h, u), rtol=1e-13, atol=1e-15)
