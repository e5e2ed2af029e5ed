"""The citation task's GRU graph network on the array API (hand-written products, scipy.sparse
message passing) against the torch model in float64: the update, J v, J^T u and the GRU's
parameter gradients to 1e-10; the dot test."""

from __future__ import annotations

import numpy as np
import pytest

import rbpsolve
from rbpsolve.adapters.tasks.citation.array_model import ArrayGRUGraph, GRUWeights
from rbpsolve.adapters.tasks.citation.array_sparse import Adjacency

torch = pytest.importorskip("torch")
import array_api_compat.numpy as xp  # noqa: E402

from rbpsolve.adapters.tasks.citation.model import GRUGraphNet  # noqa: E402

N, H, C = 9, 4, 3


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, N, size=(2, 20))
    edges = np.concatenate([edges, edges[:, :3]], axis=1)  # duplicate edges count twice, as index_add_
    torch.manual_seed(seed)
    net = GRUGraphNet(H, C, torch.tensor(edges), N).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5).add_(0.1 * torch.randn_like(p))  # nonzero biases, moderate weights
    w = GRUWeights(*(getattr(net.gru, k).detach().numpy().copy() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
                   net.out.weight.detach().numpy().copy(), net.out.bias.detach().numpy().copy())
    model = ArrayGRUGraph(w, Adjacency(edges, N, xp, xp.float64))
    return net, model, rng


@pytest.mark.parametrize("seed", range(3))
def test_update_and_products_match_autograd(seed):
    net, model, rng = _pair(seed)
    h, u, v = (rng.standard_normal((N, H)) for _ in range(3))
    ht = torch.tensor(h)
    np.testing.assert_allclose(model.update(h), net.step(ht).detach().numpy(), rtol=1e-12, atol=1e-14)
    _, jv = torch.autograd.functional.jvp(net.step, ht, torch.tensor(v))
    _, vj = torch.autograd.functional.vjp(net.step, ht, torch.tensor(u))
    np.testing.assert_allclose(model.jvp(h, v), jv.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(model.vjp(h, u), vj.numpy(), rtol=1e-10, atol=1e-13)
    params = dict(net.gru.named_parameters())
    grads = torch.autograd.grad((net.step(ht) * torch.tensor(u)).sum(), list(params.values()))
    ours = model.param_vjp(h, u)
    for (name, _), g in zip(params.items(), grads):
        np.testing.assert_allclose(ours[name], g.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)


def test_operator_dot_test_and_an_adjoint_solve():
    _, model, rng = _pair(4)
    h = rng.standard_normal((N, H))
    J = model.operator(h)
    assert rbpsolve.dottest(J) is True
    g = rng.standard_normal((N, H))
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES(rtol=1e-12))
    dense = J.to_dense()
    z = np.linalg.solve(np.eye(N * H) - dense.T, g.ravel())
    np.testing.assert_allclose(res.x.ravel(), z, rtol=1e-9, atol=1e-11)


def test_sparse_needs_numpy_or_cupy():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="sparse"):
        Adjacency(np.zeros((2, 1), dtype=int), 2, strict, strict.float64)
    with pytest.raises(ValueError, match="shape"):
        Adjacency(np.zeros((3, 1), dtype=int), 2, xp, xp.float64)


def test_operators_take_a_snapshot_of_the_state():
    """Changing h after building the operator (in place, as numpy allows) changes nothing: J is J(h)
    at the time, as a retained autograd graph is (the three array-API task models)."""
    from rbpsolve.adapters.tasks.hopfield.array_model import ArrayHopfield
    from rbpsolve.adapters.tasks.hyperopt.array_sgd import ArrayTrainingStep
    from rbpsolve.adapters.tasks.hyperopt.layout import MLPLayout

    _, model, rng = _pair(5)
    mlp = MLPLayout((5, 4, 3))
    step = ArrayTrainingStep(mlp, np.zeros((2, mlp.num_tensors)), rng.standard_normal((6, 5)), rng.integers(0, 3, 6))
    hop = ArrayHopfield(0.3 * rng.standard_normal((12, 12)), 4)
    for m, shape in ((model, (N, H)), (step, (2 * mlp.num_params,)), (hop, (12,))):
        h = rng.standard_normal(shape)
        u = rng.standard_normal(shape)
        J = m.operator(h)
        before = (J.rmv(u).copy(), J.mv(u).copy())
        h *= 3.0  # in place
        np.testing.assert_array_equal(J.rmv(u), before[0])
        np.testing.assert_array_equal(J.mv(u), before[1])
