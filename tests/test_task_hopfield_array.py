"""The array-API Hopfield model with hand-written products against the torch autograd model
(float64): the update, J v, J^T u, the parameter product, and every deterministic method's
gradient to 1e-10; the dot test; numpy and array_api_strict alike."""

from __future__ import annotations

import numpy as np
import pytest

import rbpsolve
from rbpsolve.adapters.tasks.hopfield.array_methods import array_gradient
from rbpsolve.adapters.tasks.hopfield.array_model import ArrayHopfield

torch = pytest.importorskip("torch")

from rbpsolve.adapters.tasks.hopfield.methods import gradient  # noqa: E402
from rbpsolve.adapters.tasks.hopfield.model import HopfieldNet  # noqa: E402

D_IN, HIDDEN = 6, 5
DETERMINISTIC = ["bptt", "tbptt", "cg_rbp", "neumann_rbp", "gmres", "lsqr", "fallback"]


def _pair(seed=0, scale=0.3, xp=None):
    net = HopfieldNet(D_IN, HIDDEN, generator=torch.Generator().manual_seed(seed), init_scale=scale,
                      dtype=torch.float64)
    W0 = net.W0.detach().numpy().copy()
    model = ArrayHopfield(W0 if xp is None else xp.asarray(W0), D_IN)
    image = (np.random.default_rng(seed).random(D_IN) > 0.5).astype(np.float64)
    return net, model, image


def _torch_F(net, image):
    x = net.clamp(torch.tensor(image))
    return lambda h: net.update(h, x), x


@pytest.mark.parametrize("seed", range(3))
def test_update_and_products_match_autograd(seed):
    net, model, image = _pair(seed)
    F, x = _torch_F(net, image)
    rng = np.random.default_rng(seed + 10)
    h, u, v = (rng.standard_normal(model.n) for _ in range(3))
    ht = torch.tensor(h)
    np.testing.assert_allclose(model.update(h, model.clamp(image)), F(ht).detach().numpy(), rtol=1e-13, atol=1e-14)
    _, jv = torch.autograd.functional.jvp(F, ht, torch.tensor(v))
    _, vj = torch.autograd.functional.vjp(F, ht, torch.tensor(u))
    np.testing.assert_allclose(model.jvp(h, v), jv.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.vjp(h, u), vj.numpy(), rtol=1e-12, atol=1e-14)
    (gW,) = torch.autograd.grad((F(ht) * torch.tensor(u)).sum(), net.W0)
    np.testing.assert_allclose(model.param_vjp(h, u), gW.numpy(), rtol=1e-12, atol=1e-14)


def test_operator_passes_the_dot_test():
    _, model, image = _pair(1, scale=0.5)
    h = np.random.default_rng(0).standard_normal(model.n)
    assert rbpsolve.dottest(model.operator(h)) is True


@pytest.mark.parametrize("method", DETERMINISTIC)
@pytest.mark.parametrize("K", [1, 5])
def test_gradients_match_the_torch_task(method, K):
    net, model, image = _pair(2, scale=0.4)
    expected = gradient(net, torch.tensor(image), method, K, steps=30)
    got = array_gradient(model, image, method, K, steps=30)
    assert got.loss == pytest.approx(expected.loss, rel=1e-12)
    np.testing.assert_allclose(got.grad, expected.grad.numpy(), rtol=1e-10, atol=1e-13)
    assert got.status == expected.status
    assert (got.num_vjp, got.num_jvp) == (expected.num_vjp, expected.num_jvp) or method in ("bptt", "tbptt")


def test_rbp_starts_at_a_uniform_draw():
    """Original RBP's answer depends on z_0 ~ U(0, 1): two seeds differ at a short budget and agree
    with Neumann-RBP once the start is forgotten (a contraction, 300 steps)."""
    _, model, image = _pair(3, scale=0.3)
    a = array_gradient(model, image, "rbp", 2, rng=np.random.default_rng(1)).grad
    b = array_gradient(model, image, "rbp", 2, rng=np.random.default_rng(2)).grad
    assert not np.allclose(a, b)
    far = array_gradient(model, image, "rbp", 300, rng=np.random.default_rng(1)).grad
    np.testing.assert_allclose(far, array_gradient(model, image, "neumann_rbp", 300).grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("method", ["bptt", "neumann_rbp", "gmres"])
def test_array_api_strict_gives_the_numpy_answer(method):
    xp = pytest.importorskip("array_api_strict")
    _, model, image = _pair(4)
    _, strict, _ = _pair(4, xp=xp)
    expected = array_gradient(model, image, method, 4, steps=20).grad
    got = array_gradient(strict, xp.asarray(image), method, 4, steps=20).grad
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=1e-15)


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        ArrayHopfield(np.zeros((3, 4)), 1)
    with pytest.raises(ValueError, match="input_dim"):
        ArrayHopfield(np.zeros((4, 4)), 3)
    _, model, _ = _pair()
    with pytest.raises(ValueError, match="pixels"):
        model.clamp(np.zeros(D_IN + 1))
    with pytest.raises(ValueError, match="truncation"):
        array_gradient(model, np.zeros(D_IN), "neumann_rbp", 0)


@pytest.mark.parametrize("method", ["neumann_rbp", "tbptt"])
def test_first_training_steps_agree_with_torch(method):
    """The same W_0 (numpy), corruption and order: ten Adam steps on both paths, float64."""
    from rbpsolve.adapters.tasks.hopfield.array_train import initial_weights, train_trial_array
    from rbpsolve.adapters.tasks.hopfield.train import TrainConfig, train_trial

    patterns = (np.random.default_rng(0).random((3, 3, 3)) > 0.5).astype(np.float32)
    config = TrainConfig(method=method, truncate=4, iters=10, hidden=5, valid_every=5, steps=20, lr=1e-2)
    W0 = initial_weights(2 * 9 + 5, config.seed, init_scale=0.1)
    expected = train_trial(patterns, config, W0=W0)
    got = train_trial_array(patterns, config, np, dtype=np.float64, W0=W0)
    np.testing.assert_allclose(got["train_loss"], expected["train_loss"], rtol=1e-10)
    assert got["final_loss"] == pytest.approx(expected["final_loss"], rel=1e-10)
    assert got["initial_loss"] == pytest.approx(expected["initial_loss"], rel=1e-12)
    # the torch path averages the binarised retrieval in the patterns' float32: equal up to that rounding
    assert [v for _, v in got["valid"]] == pytest.approx([v for _, v in expected["valid"]], rel=1e-7)
    assert got["status"] == expected["status"] and got["backward_status"] == expected["backward_status"]


def test_adam_matches_torch():
    from rbpsolve.adapters.tasks.array_optim import SGD, Adam

    rng = np.random.default_rng(0)
    p0, grads = rng.standard_normal(5), [rng.standard_normal(5) for _ in range(6)]
    for ours, theirs in ((Adam(lr=0.01), lambda q: torch.optim.Adam([q], lr=0.01)),
                         (SGD(lr=0.1, momentum=0.9), lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.9))):
        p, q = p0.copy(), torch.tensor(p0, requires_grad=True)
        opt = theirs(q)
        for g in grads:
            p = ours.step(p, g)
            q.grad = torch.tensor(g)
            opt.step()
        np.testing.assert_allclose(p, q.detach().numpy(), rtol=1e-13)
    with pytest.raises(ValueError):
        Adam(lr=-1)


def test_cli_backend_numpy_runs_and_cupy_says_why(capsys):
    from rbpsolve.adapters.tasks.data import data_root
    from rbpsolve.adapters.tasks.hopfield import cli

    with pytest.raises(SystemExit) as info:
        cli.task_main(["--quick", "--backend", "numpy", "--regulariser", "gershgorin"])
    assert info.value.code == 2 and "--backend torch" in capsys.readouterr().err
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception:
        with pytest.raises(SystemExit) as info:
            cli.task_main(["--quick", "--backend", "cupy"])
        assert info.value.code == 2 and "--backend numpy" in capsys.readouterr().err
    if not (data_root() / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("real MNIST files not under $RBPSOLVE_DATA/mnist")
    assert cli.task_main(["--quick", "--backend", "numpy", "--method", "neumann_rbp", "--truncate", "3",
                          "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "backend numpy" in out and "result: " in out and "VJP" in out

