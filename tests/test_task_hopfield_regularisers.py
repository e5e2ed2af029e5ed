"""The Hopfield task with a Jacobian regulariser: the penalty's gradient joins the method's, the
spectrum log, the experiment's table and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rbpsolve.adapters.tasks.data import data_root  # noqa: E402
from rbpsolve.adapters.tasks.hopfield import cli  # noqa: E402
from rbpsolve.adapters.tasks.hopfield.methods import gradient  # noqa: E402
from rbpsolve.adapters.tasks.hopfield.model import HopfieldNet  # noqa: E402
from rbpsolve.adapters.tasks.hopfield.regularised import make_penalty, spectrum  # noqa: E402
from rbpsolve.adapters.tasks.hopfield.regulariser_spec import parse_spec  # noqa: E402
from rbpsolve.adapters.tasks.hopfield.regularised_report import (  # noqa: E402
    regularised_table,
    run_regularised,
    summarize_arms,
)
from rbpsolve.adapters.tasks.hopfield.train import TrainConfig  # noqa: E402
from rbpsolve.adapters.torch import gershgorin_penalty  # noqa: E402

MNIST = data_root() / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="real MNIST files not under $RBPSOLVE_DATA/mnist")


def _net(seed=0):
    net = HopfieldNet(4, 3, generator=torch.Generator().manual_seed(seed), init_scale=0.3, dtype=torch.float64)
    image = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    return net, image


@pytest.mark.parametrize("method", ["neumann_rbp", "tbptt"])
def test_penalty_gradient_joins_the_method_gradient(method):
    """grad(loss + w R) - grad(loss) = w dR/dW0 with R at h_T (detached), computed independently."""
    net, image = _net()
    penalty = make_penalty("gershgorin", 2.0, 0.5)
    with_reg = gradient(net, image, method, 5, steps=30, penalty=penalty)
    plain = gradient(net, image, method, 5, steps=30)
    # the state the method reached, recomputed: 30 updates from the clamped image
    with torch.no_grad():
        W, x = net.weights(), net.clamp(image)
        h = x
        for _ in range(30):
            h = net.update(h, x, W)
    value = 2.0 * gershgorin_penalty(lambda v: net.update(v, x, net.weights()), h, delta=0.5).value
    (expected,) = torch.autograd.grad(value, net.W0)
    torch.testing.assert_close(with_reg.grad - plain.grad, expected, rtol=1e-9, atol=1e-12)
    assert with_reg.penalty == pytest.approx(float(value.detach())) and plain.penalty is None
    assert with_reg.loss == plain.loss  # the reported loss is the task's, without the penalty


def test_spectrum_estimates_against_dense():
    net, image = _net(1)
    s = spectrum(net, image, 50, krylov_steps=net.num_neurons)
    with torch.no_grad():
        W, x = net.weights(), net.clamp(image)
        h = x
        for _ in range(49):
            h = net.update(h, x, W)
    J = torch.autograd.functional.jacobian(lambda v: net.update(v, x, W), h)
    assert s["rho"] == pytest.approx(float(torch.linalg.eigvals(J).abs().max()), rel=1e-6)
    eye = torch.eye(J.shape[0], dtype=J.dtype)
    assert s["sigma_min"] == pytest.approx(float(torch.linalg.svdvals(eye - J)[-1]), rel=1e-6)


@pytest.mark.parametrize("text, expected", [("none", ("none", 1.0, None)), ("frobenius:100", ("frobenius", 100.0, None)),
                                            ("lambda_min:2:0.25", ("lambda_min", 2.0, 0.25)),
                                            ("column::0.5", ("column", 1.0, 0.5))])
def test_parse_spec(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize("text", ["l2", "column:x", "column:-1", "gershgorin:1:0", "column:1:2:3", "column:inf",
                                  "frobenius:1:2.5"])
def test_parse_spec_rejects(text):
    with pytest.raises(ValueError, match="NAME|WEIGHT|probes"):
        parse_spec(text)


def test_experiment_table_counts_failures_by_the_first_epoch_reading():
    patterns = (np.random.default_rng(0).random((3, 4, 4)) > 0.5).astype(np.float32)
    base = TrainConfig(method="rbp", truncate=3, iters=20, hidden=4, valid_every=10, spectrum_every=10)
    results = run_regularised(patterns, base, ["none", "frobenius:1"], 2)
    assert [r["config"]["seed"] for r in results] == [0, 1, 0, 1]  # the same seeds in every arm
    arms = summarize_arms(results)
    assert set(arms) == {"none", "frobenius (weight 1, probes 1)"}
    for trial in results:
        assert [s["step"] for s in trial["spectrum"]] == [0, 10, 20]
        assert (trial["penalty"] is None) == (trial["config"]["regulariser"] == "none")
    for label, arm in arms.items():
        trials = [r for r in results if (label == "none") == (r["config"]["regulariser"] == "none")]
        ratios = [r["final_loss"] / r["train_loss"][0] for r in trials]
        assert arm["failed"] == sum(not x < 0.5 for x in ratios)
    md = regularised_table(results, "cmd", {"pattern_side": 4, "patterns": 3})
    assert "| none | " in md and "×1.00" in md and "Wilson" in md


@needs_mnist
def test_cli_task_and_reproduce_with_regularisers(tmp_path, capsys):
    assert cli.task_main(["--quick", "--method", "rbp", "--truncate", "3", "--regulariser", "gershgorin:1:0.25",
                          "--spectrum-every", "10", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "regulariser gershgorin: weighted penalty" in out and "sigma_min(I - J)" in out
    code = cli.reproduce_main(["--quick", "--trials", "2", "--methods", "rbp", "--truncations", "3",
                               "--regularisers", "none", "lambda_min:10:0.25", "--spectrum-every", "10",
                               "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    data = json.loads((tmp_path / "regularisers.json").read_text())
    assert len(data["trials"]) == 4 and "--regularisers" in data["command"]
    assert (tmp_path / "regularisers.png").stat().st_size > 10_000
    assert "lambda_min (weight 10, delta 0.25)" in (tmp_path / "regularisers.md").read_text()


def test_cli_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.reproduce_main(["--regularisers", "l2", "--methods", "rbp", "--truncations", "3"])
    assert exit_info.value.code == 2 and "NAME[:WEIGHT[:PARAM]]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.reproduce_main(["--regularisers", "none", "--methods", "rbp,neumann_rbp", "--truncations", "3"])
    assert "one --methods value" in capsys.readouterr().err
