"""Hyperparameter optimisation through training (issue 7): the training step's Jacobian,
the hypergradients of every method against finite differences and dense references, and
quick end-to-end runs."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from rbpsolve.adapters.tasks.hyperopt.experiment import optimise  # noqa: E402
from rbpsolve.adapters.tasks.hyperopt.hypergrad import METHODS, Data, batch_schedule, meta_step  # noqa: E402
from rbpsolve.adapters.tasks.hyperopt.sgd import MLP, TrainingStep, hyper_init, init_state  # noqa: E402
from rbpsolve.adapters.torch import jacobian_operator  # noqa: E402

TINY = MLP((5, 4, 3))


def tiny_data(n=24, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    xm = torch.randn(n, 5, generator=g, dtype=dtype)
    ym = torch.randint(0, 3, (n,), generator=g)
    return Data(x, y, xm, ym)


def tiny_theta(dtype=torch.float64):
    # away from the symmetric start so every entry matters; large rates make the Hessian terms visible
    th = hyper_init(TINY, lr=0.8, momentum=0.6, dtype=dtype)
    return th + 0.1 * torch.arange(th.numel(), dtype=dtype).reshape(th.shape) / th.numel()


def tiny_state(scale=0.5):
    g = torch.Generator().manual_seed(1)
    return scale * torch.randn(2 * TINY.num_params, generator=g, dtype=torch.float64)


def test_training_step_gradcheck_in_state_and_hyperparameters():
    d = tiny_data()
    x, y = d.x_train[:8], d.y_train[:8]

    def F(h, theta):
        return TrainingStep(TINY, theta, x, y)(h)

    h = tiny_state().requires_grad_()
    th = tiny_theta().requires_grad_()
    assert torch.autograd.gradcheck(F, (h, th), eps=1e-6, atol=1e-6)


def test_step_vjp_and_jvp_from_the_adapter_match_finite_differences():
    d = tiny_data()
    step = TrainingStep(TINY, tiny_theta(), d.x_train[:8], d.y_train[:8])
    h = tiny_state()
    J = jacobian_operator(step, h)
    g = torch.Generator().manual_seed(2)
    v = torch.randn(h.shape, generator=g, dtype=h.dtype)
    u = torch.randn(h.shape, generator=g, dtype=h.dtype)
    eps = 1e-6
    with torch.no_grad():
        fd = (step(h + eps * v) - step(h - eps * v)) / (2 * eps)
    Jv = J.mv(v)  # J v: a Hessian-vector product by double backward
    assert torch.allclose(Jv, fd, atol=1e-7, rtol=1e-6)
    # the Hessian part is really there: the weight rows of J v are not v_w + alpha beta v_v alone
    P = TINY.num_params
    alpha, beta = step.rates()
    assert (fd[:P] - (v[:P] + alpha * beta * v[P:])).abs().max() > 1e-3
    JTu = J.rmv(u)  # J^T u
    assert torch.allclose(torch.dot(JTu, v), torch.dot(u, fd), rtol=1e-6, atol=1e-8)


def test_no_grad_step_equals_recorded_step_and_keeps_no_graph():
    d = tiny_data()
    th = tiny_theta().requires_grad_()
    step = TrainingStep(TINY, th, d.x_train[:8], d.y_train[:8])
    h = tiny_state()
    with torch.no_grad():
        a = step(h)
    b = step(h)
    assert not a.requires_grad and b.requires_grad
    assert torch.allclose(a, b.detach(), atol=1e-14)


def _meta_loss(theta, d, T):
    return meta_step(TINY, theta, d, method="bptt", steps=T, batch_size=6).meta_loss


def test_bptt_hypergradient_matches_finite_differences():
    d, T = tiny_data(), 7
    th = tiny_theta()
    r = meta_step(TINY, th, d, method="bptt", steps=T, batch_size=6)
    eps = 1e-6
    fd = torch.zeros_like(th)
    for i in range(th.numel()):
        e = torch.zeros_like(th).view(-1)
        e[i] = eps
        e = e.view(th.shape)
        fd.view(-1)[i] = (_meta_loss(th + e, d, T) - _meta_loss(th - e, d, T)) / (2 * eps)
    assert fd.abs().max() > 1e-3  # a real signal to compare
    assert torch.allclose(r.grad, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("K", [6, 9])
def test_tbptt_with_truncation_at_least_T_is_bptt(K):
    d, T = tiny_data(), 6
    th = tiny_theta()
    full = meta_step(TINY, th, d, method="bptt", steps=T, batch_size=6)
    trunc = meta_step(TINY, th, d, method="tbptt", steps=T, truncate=K, batch_size=6)
    short = meta_step(TINY, th, d, method="tbptt", steps=T, truncate=2, batch_size=6)
    assert torch.allclose(full.grad, trunc.grad, rtol=1e-12, atol=1e-14)
    assert full.meta_loss == pytest.approx(trunc.meta_loss, rel=1e-12)
    assert not torch.allclose(full.grad, short.grad, rtol=1e-3)


def test_neumann_rbp_is_the_truncated_series_at_the_last_step():
    """z = sum_{k<=K} (J^T)^k g with the dense Jacobian of the last (full-batch) step; grad = z^T dF/dtheta."""
    d, T, K = tiny_data(), 5, 3
    th = tiny_theta()
    r = meta_step(TINY, th, d, method="neumann", steps=T, truncate=K, batch_size=6)
    assert r.solve["num_vjp"] == K
    # reference: replay T-1 mini-batch steps, then the last step on the whole training set
    gen = torch.Generator().manual_seed(1234)
    h = init_state(TINY, gen, dtype=th.dtype)
    sched = batch_schedule(d.x_train.shape[0], 6, T, gen)
    with torch.no_grad():
        for idx in sched[:-1]:
            h = TrainingStep(TINY, th, d.x_train[idx], d.y_train[idx])(h)
    thr = th.clone().requires_grad_()
    F = lambda hh, tt: TrainingStep(TINY, tt, d.x_train, d.y_train)(hh)  # noqa: E731
    Jh = torch.autograd.functional.jacobian(lambda hh: F(hh, th), h)
    hT = F(h, thr)
    P = TINY.num_params
    wT = hT.detach()[:P].requires_grad_()
    (gw,) = torch.autograd.grad(TINY.loss(wT, d.x_meta, d.y_meta), wT)
    g = torch.cat([gw, torch.zeros_like(gw)])
    z, term = g.clone(), g.clone()
    for _ in range(K):
        term = Jh.T @ term
        z = z + term
    (ref,) = torch.autograd.grad(hT, thr, z)
    assert torch.allclose(r.grad, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_end_to_end(method):
    d = tiny_data(dtype=torch.float32)
    rec = optimise(TINY, d, method=method, steps=6, truncate=3, meta_steps=3, batch_size=6, progress=False)
    assert len(rec["meta_loss_log10"]) == 3 and all(math.isfinite(v) for v in rec["meta_loss_log10"])
    assert len(rec["last_train_loss_log10"]) == 6
    start = hyper_init(TINY)
    assert not torch.allclose(torch.tensor(rec["theta"]), start)  # Adam moved theta
    assert all(0 < m < 1 for m in rec["momentum"]) and all(lr > 0 for lr in rec["lr"])
    json.dumps(rec)


def test_bad_input_is_named():
    d = tiny_data()
    with pytest.raises(ValueError, match="unknown method 'sgd'; choose one of"):
        meta_step(TINY, tiny_theta(), d, method="sgd", steps=3, truncate=2)
    with pytest.raises(ValueError, match="needs truncate K"):
        meta_step(TINY, tiny_theta(), d, method="neumann", steps=3)
    with pytest.raises(ValueError, match="theta must have shape"):
        TrainingStep(TINY, torch.zeros(3), d.x_train, d.y_train)
    with pytest.raises(ValueError, match="momentum must lie"):
        hyper_init(TINY, momentum=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        batch_schedule(10, 20, 3, torch.Generator())


def _have_mnist():
    try:
        from rbpsolve.adapters.tasks.data.mnist import load_mnist

        load_mnist("test")
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _have_mnist(), reason="MNIST not in the data directory (set RBPSOLVE_DATA to shared/data)")
def test_cli_quick_runs_on_mnist(tmp_path):
    from rbpsolve.adapters.tasks.hyperopt.cli import task_main

    assert task_main(["--quick", "--method", "neumann", "--out", str(tmp_path / "t"), "--no-progress"]) == 0
    res = json.loads((tmp_path / "t" / "results.json").read_text())
    rec = res["cells"][0]["methods"]["neumann_rbp"]  # the canonical name of the alias given
    assert rec["solves"][0]["num_vjp"] == 5 and 0 <= rec["test"]["error"] <= 1
    assert (tmp_path / "t" / "fig5_training_loss.png").stat().st_size > 1000


def test_reproduce_writes_table_and_figures(tmp_path, monkeypatch):
    """The reproduce command on a stand-in split (the real-data path is the test above)."""
    pytest.importorskip("matplotlib", reason="reproduce draws the figures: pip install -e '.[plot]'")
    from rbpsolve.adapters.tasks.hyperopt import cli

    g = torch.Generator().manual_seed(0)
    part = lambda n: (torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    split = {"train": part(300), "val": part(100), "test": part(100)}
    monkeypatch.setattr(cli, "_load", lambda args, sizes, prog=None: (Data(*split["train"], *split["train"]), split))
    argv = ["--grid", "6,3", "8,3", "--meta-steps", "2", "--batch-size", "50", "--methods", "bptt", "tbptt",
            "--out", str(tmp_path / "r"), "--no-progress"]
    assert cli.reproduce_main(argv) == 0
    assert (tmp_path / "r" / "fig5_training_loss.png").stat().st_size > 1000
    assert "TBPTT" in (tmp_path / "r" / "summary.md").read_text()
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [(c["steps"], c["truncate"]) for c in res["cells"]] == [(6, 3), (8, 3)]
    assert set(res["cells"][1]["methods"]) == {"bptt", "tbptt"}
    assert (tmp_path / "r" / "fig5_training_loss.png").stat().st_size > 1000
    table = (tmp_path / "r" / "summary.md").read_text()
    assert "| 8 | 3 | TBPTT |" in table


def test_agreement_mode_compares_with_bptt(tmp_path, monkeypatch):
    from rbpsolve.adapters.tasks.hyperopt import cli

    g = torch.Generator().manual_seed(0)
    part = lambda n: (torch.randn(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    split = {"train": part(200), "val": part(50), "test": part(50)}
    monkeypatch.setattr(cli, "_load", lambda args, sizes, prog=None: (Data(*split["train"], *split["train"]), split))
    argv = ["--agreement", "--grid", "6,6", "--batch-size", "50", "--methods", "bptt", "tbptt", "neumann",
            "--out", str(tmp_path), "--no-progress"]
    assert cli.reproduce_main(argv) == 0
    rows = json.loads((tmp_path / "agreement.json").read_text())["rows"]
    tb = next(r for r in rows if r["method"] == "tbptt")
    assert tb["cosine"] == pytest.approx(1.0, abs=1e-5) and tb["rel_error"] < 1e-4  # K = T: TBPTT is BPTT
    assert -1 <= next(r for r in rows if r["method"] == "neumann_rbp")["cosine"] <= 1


def _fake_results(cells, command):
    rec = lambda m, n: {"method": m, "meta_loss_log10": [-0.1 * i for i in range(n)],  # noqa: E731
                        "last_train_loss_log10": [0.0, -0.5], "seconds": [1.0] * n}
    return {"meta_objective": "train", "device": "cpu", "batch_size": 200, "seed": 1234, "command": command,
            "seconds_total": 10.0,
            "cells": [{"steps": T, "truncate": K, "methods": {m: rec(m, n) for m in ms}} for T, K, ms, n in cells]}


def test_merge_joins_cells_run_side_by_side(tmp_path):
    """Cells run in separate processes join into one grid: paper order, BPTT shared across K, meta steps shown."""
    pytest.importorskip("matplotlib", reason="reproduce draws the figures: pip install -e '.[plot]'")
    from rbpsolve.adapters.tasks.hyperopt import cli

    a = _fake_results([(100, 100, ["tbptt", "neumann"], 3), (500, 50, ["bptt", "neumann"], 3)], "a")
    b = _fake_results([(100, 50, ["bptt", "neumann"], 3), (1500, 50, ["neumann"], 2)], "b")
    for name, res in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    out = tmp_path / "merged"
    assert cli.reproduce_main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [(c["steps"], c["truncate"]) for c in res["cells"]] == [(100, 50), (500, 50), (1500, 50), (100, 100)]
    k100 = res["cells"][3]["methods"]
    # older files' "neumann" comes out canonical
    assert list(k100) == ["bptt", "tbptt", "neumann_rbp"] and k100["bptt"]["shared_with_cell"] == "T=100"
    assert "bptt" not in res["cells"][2]["methods"]  # no BPTT run at T = 1500 to borrow
    assert res["commands"] == ["a", "b"] and res["seconds_total"] == 20.0
    table = (out / "summary.md").read_text()
    assert "| 1500 | 50 | Neumann-RBP | 2 |" in table and "| 100 | 100 | BPTT | 3 |" in table
    assert (out / "fig5_training_loss.png").stat().st_size > 1000
    # the inputs are left as they were
    assert json.loads((tmp_path / "a" / "results.json").read_text()) == a


def _refused(capsys, argv, message):
    from rbpsolve.adapters.tasks.hyperopt import cli

    with pytest.raises(SystemExit) as info:
        cli.reproduce_main(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]  # one line; "writing to ..." may come before it
    assert info.value.code == 2 and last.startswith("rbpsolve reproduce hyperopt: error: --merge: ") and message in last


def test_merge_refuses_a_method_run_twice(tmp_path, capsys):
    from rbpsolve.adapters.tasks.hyperopt import cli

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_fake_results([(100, 50, ["neumann"], 2)], name)))
    _refused(capsys, ["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")],
             "T=100, K=50 has 'neumann_rbp' in two")
    _refused(capsys, ["--merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")], "does not exist")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps({"grid": [[100, 50]], "rows": []}))
    _refused(capsys, ["--merge", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "m")],
             "result set 2 has no 'cells' list")
    (tmp_path / "c" / "results.json").write_text('{"cells": [')
    _refused(capsys, ["--merge", str(tmp_path / "c"), "--out", str(tmp_path / "m")], "is not valid JSON")
    assert not (tmp_path / "m").exists()  # nothing written on refusal
