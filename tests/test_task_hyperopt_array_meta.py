"""One meta step of the hyperparameter task on numpy against the torch one, from the same start and
mini-batch schedule, float64: meta-loss, every training loss and the hypergradient to 1e-10."""

from __future__ import annotations

import numpy as np
import pytest

from rbpsolve.adapters.tasks.hyperopt.array_hypergrad import array_meta_step, numpy_start

torch = pytest.importorskip("torch")

from rbpsolve.adapters.tasks.hyperopt.hypergrad import Data, meta_step  # noqa: E402
from rbpsolve.adapters.tasks.hyperopt.sgd import MLP, hyper_init  # noqa: E402

LAYERS = (6, 5, 4, 3)


@pytest.mark.parametrize("method, K", [("bptt", None), ("tbptt", 3), ("neumann_rbp", 4), ("cg_rbp", 3), ("gmres", 3)])
def test_meta_step_agrees_with_torch(method, K):
    rng = np.random.default_rng(0)
    mlp = MLP(LAYERS)
    x, y = rng.standard_normal((30, LAYERS[0])), rng.integers(0, LAYERS[-1], 30)
    xm, ym = rng.standard_normal((12, LAYERS[0])), rng.integers(0, LAYERS[-1], 12)
    theta = hyper_init(mlp, dtype=torch.float64)
    start = numpy_start(mlp, 30, 8, 10, seed=3)
    data = Data(torch.tensor(x), torch.tensor(y), torch.tensor(xm), torch.tensor(ym))
    expected = meta_step(mlp, theta, data, method=method, steps=10, truncate=K, batch_size=8, start=start)
    got = array_meta_step(mlp, theta.numpy(), x, y, xm, ym, method=method, steps=10, truncate=K, h0=start[0],
                          schedule=start[1])
    assert got["meta_loss"] == pytest.approx(expected.meta_loss, rel=1e-12)
    np.testing.assert_allclose(got["train_losses"], expected.train_losses, rtol=1e-12)
    np.testing.assert_allclose(got["grad"], expected.grad.numpy(), rtol=1e-9, atol=1e-13)
    assert got["solve"] == expected.solve


def test_numpy_start_laws_and_bad_input():
    mlp = MLP(LAYERS)
    h0, schedule = numpy_start(mlp, 20, 8, 5, seed=0)
    assert h0.shape == (2 * mlp.num_params,) and np.all(h0[mlp.num_params:] == 0)
    assert [len(s) for s in schedule] == [8, 8, 4, 8, 8]  # a fresh permutation every epoch of 3 batches
    assert sorted(np.concatenate(schedule[:3])) == list(range(20))
    with pytest.raises(ValueError, match="batch_size"):
        numpy_start(mlp, 20, 0, 5, seed=0)
    with pytest.raises(ValueError, match="truncate"):
        array_meta_step(mlp, np.zeros((2, mlp.num_tensors)), np.zeros((4, 6)), np.zeros(4, int), np.zeros((4, 6)),
                        np.zeros(4, int), method="neumann_rbp", steps=2, h0=h0, schedule=schedule[:2])
