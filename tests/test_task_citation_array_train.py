"""The citation task's numpy training loop against the torch one, from the same weights, float64:
every epoch's loss, the accuracies and the backward statuses; the CLI's --backend numpy."""

from __future__ import annotations

import numpy as np
import pytest

import array_api_compat.numpy as xp
from rbpsolve.adapters.tasks.array_optim import SGD
from rbpsolve.adapters.tasks.citation.array_train import initial_weights, train_array
from rbpsolve.adapters.tasks.citation.config import Config, Prepared

N, D, C = 40, 6, 3


def _toy():
    rng = np.random.default_rng(0)
    return Prepared("toy", rng.standard_normal((N, D)), rng.integers(0, C, N), rng.integers(0, N, (2, 120)),
                    np.arange(N), C)


@pytest.mark.parametrize("method", ["bptt", "tbptt", "cg_rbp", "neumann_rbp", "gmres", "lsqr"])
def test_training_agrees_with_torch(method):
    pytest.importorskip("torch")
    from rbpsolve.adapters.tasks.citation.train import train

    data = _toy()
    config = Config(dataset="cora", method=method, steps=12, truncate=3, epochs=8, eval_every=2, hidden=D,
                    train_ratio=0.3, val_ratio=0.3, lr=0.3)
    weights = initial_weights(D, C, 0)
    expected = train(config, data, weights=weights)
    got = train_array(config, xp, data, weights=weights, dtype=xp.float64)
    assert got["train_loss"][0] != pytest.approx(got["train_loss"][-1], rel=1e-3)  # the weights did move
    np.testing.assert_allclose(got["train_loss"], expected["train_loss"], rtol=1e-10)
    # the torch path averages correct predictions in float32: equal up to that rounding
    assert got["val_acc"] == pytest.approx(expected["val_acc"], rel=1e-6)
    assert got["test_acc"] == pytest.approx(expected["test_acc"], rel=1e-6)
    assert got["backward_status"] == expected["backward_status"]
    np.testing.assert_allclose(got["diff_norm"], expected["diff_norm"], rtol=1e-8, atol=1e-15)


def test_sgd_weight_decay_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    p0, grads = rng.standard_normal(4), [rng.standard_normal(4) for _ in range(5)]
    ours, p = SGD(0.1, 0.9, weight_decay=5e-4), p0.copy()
    q = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.SGD([q], lr=0.1, momentum=0.9, weight_decay=5e-4)
    for g in grads:
        p = ours.step(p, g)
        q.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p, q.detach().numpy(), rtol=1e-13)


def test_baseline_is_refused():
    with pytest.raises(ValueError, match="baseline"):
        train_array(Config(method="baseline", hidden=D), xp, _toy())


def test_cli_backend_numpy(capsys):
    from rbpsolve.adapters.tasks.citation import cli
    from rbpsolve.adapters.tasks.data import data_root

    with pytest.raises(SystemExit) as info:
        cli.task_main(["--quick", "--backend", "numpy", "--method", "baseline"])
    assert info.value.code == 2 and "--backend torch" in capsys.readouterr().err
    if not (data_root() / "planetoid" / "ind.cora.x").is_file():
        pytest.skip("Planetoid Cora not under $RBPSOLVE_DATA/planetoid")
    assert cli.task_main(["--quick", "--backend", "numpy", "--method", "rbp", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cora rbp seed 0: status ok" in out and "backend numpy" in out
