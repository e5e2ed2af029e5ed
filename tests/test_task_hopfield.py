"""The Hopfield task: the update against a hand-computed step, the methods' gradients, the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rbpsolve.adapters.tasks.data import data_root
from rbpsolve.adapters.tasks.hopfield import cli, methods as methods_mod
from rbpsolve.adapters.tasks.hopfield.methods import METHODS, gradient
from rbpsolve.adapters.tasks.hopfield.model import HopfieldNet
from rbpsolve.adapters.tasks.hopfield.patterns import corrupt, load_patterns, pool
from rbpsolve.adapters.tasks.hopfield.stats import wilson
from rbpsolve.adapters.tasks.hopfield.train import TrainConfig, train_trial

MNIST = data_root() / "mnist"
needs_mnist = pytest.mark.skipif(
    not (MNIST / "train-images-idx3-ubyte.gz").is_file() or not (MNIST / "train-labels-idx1-ubyte.gz").is_file(),
    reason="real MNIST training files not under $RBPSOLVE_DATA/mnist (set RBPSOLVE_DATA to ../shared/data)")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_update_matches_hand_computed_step():
    # 2 observed, 1 hidden, 2 output neurons: n = 5.
    net = HopfieldNet(2, 1, a=1.0, b=0.5, dtype=torch.float64)
    w0 = np.arange(25, dtype=float).reshape(5, 5) / 100.0
    with torch.no_grad():
        net.W0.copy_(torch.tensor(w0))
    image = torch.tensor([1.0, 0.0], dtype=torch.float64)
    h = torch.tensor([0.3, -0.2, 0.5, 1.0, -1.5], dtype=torch.float64)
    W = (w0 + w0.T) * (1 - np.eye(5))
    expected = W @ _sigmoid(0.5 * h.numpy())  # (1 - a) h = 0 for a = 1
    expected[:2] = [1.0, 0.0]  # observed neurons clamped to the pixels
    got = net.update(h, net.clamp(image)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # By hand, hidden neuron 2: sum_j W[2, j] sigmoid(h_j / 2), W[2, j] = (w0[2, j] + w0[j, 2]), j != 2.
    s = _sigmoid(0.5 * np.array([0.3, -0.2, 0.5, 1.0, -1.5]))
    by_hand = 0.12 * s[0] + 0.18 * s[1] + 0.30 * s[3] + 0.36 * s[4]
    assert got[2] == pytest.approx(by_hand, rel=1e-12)


def test_leak_term_for_a_other_than_one():
    net = HopfieldNet(1, 1, a=2.0, b=1.0, dtype=torch.float64)
    with torch.no_grad():
        net.W0.zero_()
    h = torch.tensor([0.0, 4.0, -2.0], dtype=torch.float64)
    got = net.update(h, net.clamp(torch.tensor([1.0], dtype=torch.float64)))
    np.testing.assert_allclose(got.detach().numpy(), [1.0, -4.0, 2.0])  # (1 - a) h with W = 0


def test_weights_symmetric_without_self_loops():
    net = HopfieldNet(3, 2, generator=torch.Generator().manual_seed(1))
    W = net.weights()
    assert torch.equal(W, W.T) and torch.count_nonzero(torch.diagonal(W)) == 0
    assert net.num_neurons == 8


def test_clamp_rejects_wrong_size():
    with pytest.raises(ValueError, match="has 5 pixels; this network observes 4"):
        HopfieldNet(4, 2).clamp(torch.zeros(5))


def test_pool_and_corrupt():
    img = np.zeros((1, 4, 4), dtype=np.float32)
    img[0, 0, 1] = img[0, 3, 3] = 1
    np.testing.assert_array_equal(pool(img, 2)[0], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="must divide"):
        pool(img, 3)
    pattern = np.zeros((10, 10), dtype=np.float32)
    pattern.flat[:41] = 1
    noisy = corrupt(pattern, 0.5, np.random.default_rng(0))
    assert noisy.sum() == 41 - 20 and np.all(noisy <= pattern)


@needs_mnist
def test_patterns_are_first_image_of_each_digit():
    from rbpsolve.adapters.tasks.data.mnist import load_mnist

    images, _ = load_mnist("train")
    patterns = load_patterns()
    assert patterns.shape == (10, 28, 28) and set(np.unique(patterns)) == {0.0, 1.0}
    np.testing.assert_array_equal(patterns, images[[1, 3, 5, 7, 2, 0, 13, 15, 17, 4]] > 0)


def _small_net(seed=0, scale=0.3):
    net = HopfieldNet(4, 3, init_scale=scale, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    image = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    return net, image


def test_neumann_equals_tbptt_one_longer_at_a_converged_state():
    # Proposition 1: K-step Neumann-RBP at h_{T-1} = K+1-step TBPTT when h_{T-K-1} = ... = h_T.
    net, image = _small_net()
    for K in (2, 5):
        a = gradient(net, image, "neumann", K, steps=60).grad
        b = gradient(net, image, "tbptt", K + 1, steps=60).grad
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_accurate_solvers_agree_with_bptt():
    net, image = _small_net()
    ref = gradient(net, image, "bptt", 1, steps=60).grad
    for method in ("cg", "gmres", "lsqr", "neumann"):
        got = gradient(net, image, method, 30, steps=60).grad
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-9, msg=method)
    assert not torch.allclose(gradient(net, image, "tbptt", 1, steps=60).grad, ref, rtol=1e-3)


def test_original_rbp_starts_from_random_vector():
    # With K = 1 the random start z_0 ~ U(0,1) survives in z = J^T z_0 + g: the gradient differs
    # from Neumann's, and from one start to another; with K large both forget it.
    net, image = _small_net(scale=0.5)
    g1 = gradient(net, image, "rbp", 1, rng=torch.Generator().manual_seed(1)).grad
    g2 = gradient(net, image, "rbp", 1, rng=torch.Generator().manual_seed(2)).grad
    assert not torch.allclose(g1, g2)
    far = gradient(net, image, "rbp", 200, rng=torch.Generator().manual_seed(1)).grad
    torch.testing.assert_close(far, gradient(net, image, "neumann", 200).grad, rtol=1e-6, atol=1e-9)


def test_diverging_series_is_flagged_not_raised():
    # h = 0 is an exact fixed point when W's rows sum to zero (sigmoid(0) = 1/2 everywhere); there
    # J = b sigmoid'(0) W = W / 8 restricted to the free neurons, with spectral radius 2.5 for c = 10:
    # the plain Neumann series grows like 2.5^k. The step flags it; nothing raises.
    net = HopfieldNet(1, 3, dtype=torch.float64)  # neuron 0 observed (no links), 1..4 free
    L = torch.zeros(5, 5, dtype=torch.float64)
    L[1:, 1:] = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1], [-1, 0, 0, 1], [0, -1, 1, 0]])
    with torch.no_grad():
        net.W0.copy_(5.0 * L)  # W = W0 + W0^T = 10 L
    image = torch.ones(1, dtype=torch.float64)
    step = gradient(net, image, "neumann", 30)
    assert step.status == "BUDGET_SPENT" and step.diverging
    assert gradient(net, image, "neumann", 2).diverging is False
    rbp = gradient(net, image, "rbp", 30)
    assert rbp.diverging and rbp.status == "BUDGET_SPENT"
    assert gradient(net, image, "gmres", 30).diverging is False  # a Krylov solve is not judged by growth
    fb = gradient(net, image, "fallback", 30)  # Neumann reports DIVERGED, GMRES takes over
    assert fb.diverging and torch.isfinite(fb.grad).all()


def test_bad_method_and_truncation():
    net, image = _small_net()
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        gradient(net, image, "sgd", 5)
    with pytest.raises(ValueError, match="truncation K must be an int >= 1"):
        gradient(net, image, "neumann", 0)


def test_nan_trial_is_recorded_not_raised(monkeypatch):
    real = methods_mod.gradient
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        step = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            step.loss = math.nan
        return step

    monkeypatch.setattr("rbpsolve.adapters.tasks.hopfield.train.gradient", flaky)
    patterns = (np.random.default_rng(0).random((2, 4, 4)) > 0.5).astype(np.float32)
    trial = train_trial(patterns, TrainConfig(method="neumann", truncate=3, iters=10, hidden=4, valid_every=5))
    assert trial["status"] == "nan" and "step 2" in trial["reason"]
    assert len(trial["train_loss"]) == 3 and trial["train_loss"][-1] is None


def test_training_reduces_loss():
    patterns = (np.random.default_rng(0).random((3, 5, 5)) > 0.6).astype(np.float32)
    trial = train_trial(patterns, TrainConfig(method="neumann", truncate=5, iters=40, hidden=8, valid_every=10,
                                              lr=1e-2))
    assert trial["ratio"] < 0.9 and trial["final_loss"] < trial["initial_loss"]
    assert trial["status"] == ("success" if trial["ratio"] < 0.5 else "failed")
    assert len(trial["diff_norms"]) == 50 and len(trial["valid"]) == 5


def test_wilson_interval():
    assert wilson(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson(20, 20) == pytest.approx((0.8389, 1.0), abs=1e-4)
    lo, hi = wilson(10, 20)
    assert lo == pytest.approx(0.2993, abs=1e-4) and hi == pytest.approx(0.7007, abs=1e-4)


@needs_mnist
@pytest.mark.parametrize("method", METHODS)
def test_task_cli_quick_every_method(method, capsys):
    assert cli.task_main(["--quick", "--method", method, "--truncate", "3"]) == 0
    out = capsys.readouterr().out
    assert f"method {method}, truncation 3, 20 steps" in out and "result: " in out


@needs_mnist
def test_reproduce_cli_quick_writes_table_json_figures(tmp_path, capsys):
    code = cli.reproduce_main(["--quick", "--trials", "2", "--methods", "bptt,rbp,neumann",
                               "--truncations", "2,3", "--out", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["trials"]) == 2 * (1 + 2 + 2)
    assert {t["status"] for t in data["trials"]} <= {"success", "failed", "nan"}
    table = (tmp_path / "table.md").read_text()
    assert "| 2 |" in table and "RBP (ours)" in table and "1%" not in table.split("\n")[8]
    for name in ("fig1ab_curves.png", "fig1c_diff_norm.png", "fig2_retrieval.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    # Shards merge: the same trials twice make a table of twice the trials.
    merged = tmp_path / "merged"
    assert cli.reproduce_main(["--from-json", str(tmp_path / "results.json"), str(tmp_path / "results.json"),
                               "--out", str(merged)]) == 0
    assert len(json.loads((merged / "results.json").read_text())["trials"]) == 2 * len(data["trials"])
    assert "(4/4;" in (merged / "table.md").read_text() or "(0/4;" in (merged / "table.md").read_text()


def test_cuda_absent_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    with pytest.raises(SystemExit):
        cli.task_main(["--quick", "--device", "cuda"])
    assert "--device 'cuda' is not usable here" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.task_main(["--quick", "--data", str(tmp_path)])
    assert "is missing" in capsys.readouterr().err
