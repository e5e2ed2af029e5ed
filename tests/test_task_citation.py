"""The citation task: message passing, the gradient methods against each other, training, failures, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse

torch = pytest.importorskip("torch")

import rbpsolve  # noqa: E402
from rbpsolve.adapters.tasks.citation import cli, methods, train as train_mod  # noqa: E402
from rbpsolve.adapters.tasks.citation.features import pca, random_split  # noqa: E402
from rbpsolve.adapters.tasks.citation.model import GRUGraphNet  # noqa: E402
from rbpsolve.adapters.tasks.citation.train import Config, Prepared, train  # noqa: E402
from rbpsolve.adapters.tasks.data import data_root  # noqa: E402

N, D, C = 8, 4, 3


def _edges(seed=0):
    rng = np.random.default_rng(seed)
    pairs = {(i, (i + 1) % N) for i in range(N)} | {tuple(rng.choice(N, 2, replace=False)) for _ in range(6)}
    pairs |= {(j, i) for i, j in pairs}
    return np.array(sorted(pairs)).T


def _net(scale=1.0, seed=0):
    torch.manual_seed(seed)
    net = GRUGraphNet(D, C, torch.as_tensor(_edges(seed)), N).double()
    with torch.no_grad():
        for p in net.gru.parameters():
            p.mul_(scale)
    return net


def test_message_passing_matches_dense_adjacency():
    net = _net()
    h = torch.randn(N, D, dtype=torch.float64)
    A = torch.zeros(N, N, dtype=torch.float64)
    src, dst = torch.as_tensor(_edges())
    A[dst, src] = 1.0  # row v sums the states of v's in-neighbours
    torch.testing.assert_close(net.step(h), net.gru(A @ h, h))
    h_T, diffs = net.propagate(h, 3)
    assert len(diffs) == 3 and all(d > 0 for d in diffs)
    ref = net.step(net.step(h))
    with torch.no_grad():
        assert diffs[2] == pytest.approx(float(torch.linalg.vector_norm(net.step(ref) - ref)) / h.numel())


def _grads(net, x, method, T, K):
    net.zero_grad()
    h, report = methods.final_state(net.step, x, method, T, K)
    loss = net.out(h).logsumexp(dim=1).sum()
    loss.backward()
    return torch.cat([p.grad.ravel() for p in net.gru.parameters()]), report


def test_rbp_family_matches_bptt_at_a_contractive_steady_state():
    # Small weights: F contracts, h^T is the fixed point, and every exact method gives the implicit gradient.
    net = _net(scale=0.1)
    x = torch.randn(N, D, dtype=torch.float64)
    bptt, _ = _grads(net, x, "bptt", 60, 5)
    for method, K in (("neumann_rbp", 40), ("gmres", 40), ("rbp", 40), ("cg_rbp", 40)):
        g, report = _grads(net, x, method, 60, K)
        assert report.status == "BUDGET_SPENT"
        torch.testing.assert_close(g, bptt, rtol=1e-4, atol=1e-8, msg=method)


def test_tbptt_k_plus_one_equals_neumann_k():
    # Proposition 1 at a converged state: TBPTT through K + 1 steps == Neumann-RBP with K products.
    net = _net(scale=0.1)
    x = torch.randn(N, D, dtype=torch.float64)
    tb, _ = _grads(net, x, "tbptt", 80, 3)
    nm, _ = _grads(net, x, "neumann_rbp", 80, 2)
    torch.testing.assert_close(tb, nm, rtol=1e-6, atol=1e-10)
    far, _ = _grads(net, x, "neumann_rbp", 80, 20)
    assert not torch.allclose(tb, far, rtol=1e-3)  # truncation matters here: the test can fail


def test_rbp_starts_from_a_uniform_z0_as_the_original_code():
    # rbp with K steps = (J^T)^K z_0 + the Neumann series with K - 1 products; z_0 ~ U(0, 1) from torch's
    # global generator, so equal seeds give equal gradients and the start shows at small K.
    net = _net(scale=0.1)
    x = torch.randn(N, D, dtype=torch.float64)
    torch.manual_seed(3)
    a, _ = _grads(net, x, "rbp", 60, 2)
    torch.manual_seed(3)
    b, _ = _grads(net, x, "rbp", 60, 2)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    series, _ = _grads(net, x, "neumann_rbp", 60, 1)
    assert not torch.allclose(a, series, rtol=1e-4)


def test_unknown_method_and_bad_truncation():
    net = _net()
    x = torch.zeros(N, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown method"):
        methods.final_state(net.step, x, "adam", 5, 2)
    with pytest.raises(ValueError, match="truncate K < steps T"):
        methods.final_state(net.step, x, "tbptt", 5, 5)
    with pytest.raises(ValueError, match="truncate .* below steps"):
        Config(method="bptt", steps=3, truncate=3)


def test_pca_matches_dense_svd_up_to_sign():
    rng = np.random.default_rng(0)
    X = scipy.sparse.random(40, 12, density=0.3, random_state=1, format="csr", dtype=np.float32)
    Z = pca(X, 3)
    Xc = X.toarray() - X.toarray().mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(np.abs(Z), np.abs(Xc @ vt[:3].T), atol=1e-5)
    with pytest.raises(ValueError, match="k must be"):
        pca(X, 12)
    del rng


def test_random_split_is_a_seeded_partition():
    ids = np.arange(10, 310)
    tr, va, te = random_split(ids, seed=3)
    assert (len(tr), len(va), len(te)) == (3, 147, 150)
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), ids)
    assert np.array_equal(tr, random_split(ids, seed=3)[0]) and not np.array_equal(va, random_split(ids, seed=4)[1])


def _prepared():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, N).astype(np.int64)
    labels[-1] = -1
    x = rng.standard_normal((N, D)).astype(np.float32)
    return Prepared("cora", x, labels, _edges(), np.flatnonzero(labels >= 0), C)


TINY = dict(dataset="cora", hidden=D, steps=4, truncate=2, epochs=3, eval_every=2, train_ratio=0.3, val_ratio=0.3)


@pytest.mark.parametrize("method", methods.METHODS)
def test_every_method_trains(method):
    r = train(Config(method=method, **TINY), _prepared())
    assert r["status"] == "ok" and len(r["train_loss"]) == 3 and np.isfinite(r["train_loss"]).all()
    assert r["eval_epochs"] == [0, 1] and 0 <= r["test_acc_at_best_val"] <= 100
    json.dumps(r)
    if method == "baseline":
        assert r["diff_norm"] == [] and r["backward_status"] == {}
    else:
        assert len(r["diff_norm"]) == 4
    if method in methods.GNN_METHODS[2:]:
        assert r["backward_status"] == {"BUDGET_SPENT": 3}


def test_failed_adjoint_solve_is_counted_not_hidden(monkeypatch):
    # A tolerance FixedPoint cannot meet in 2 steps: MAX_STEPS, counted, best iterate used, training goes on.
    monkeypatch.setattr(methods, "backward_solver", lambda m, K: rbpsolve.FixedPoint(max_steps=K, rtol=1e-14))
    r = train(Config(method="rbp", **TINY), _prepared())
    assert r["status"] == "ok" and r["backward_status"] == {"MAX_STEPS": 3}


def test_nonfinite_loss_stops_with_a_status(monkeypatch):
    real = methods.final_state

    def poisoned(*args):
        h, report = real(*args)
        return h * float("nan"), report

    monkeypatch.setattr(train_mod, "final_state", poisoned)
    r = train(Config(method="neumann_rbp", **TINY), _prepared())
    assert r["status"] == "nonfinite_loss" and r["train_loss"] == []


def _real_cora():
    return all((data_root() / "planetoid" / f"ind.cora.{s}").is_file()
               for s in ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index"))


real = pytest.mark.skipif(not _real_cora(), reason="real ind.cora.* files not found under $RBPSOLVE_DATA/planetoid "
                                                   "(set RBPSOLVE_DATA to ../shared/data)")


@real
def test_cli_task_quick(tmp_path, capsys):
    assert cli.task_main(["--dataset", "cora", "--method", "tbptt", "--quick", "--out", str(tmp_path)]) == 0
    assert "cora tbptt seed 0: status ok" in capsys.readouterr().out
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["config"]["steps"] == 4 and len(record["train_loss"]) == 3


@real
def test_cli_task_takes_the_short_method_names_of_the_other_tasks(tmp_path, capsys):
    # the issue's own command: rbpsolve task citation --dataset cora --method neumann
    out = tmp_path / "run.json"  # the older --out FILE.json still works
    argv = ["--dataset", "cora", "--method", "neumann", "--quick", "--data", data_root(None).as_posix(), "--out", str(out)]
    assert cli.task_main(argv) == 0
    assert "cora neumann_rbp seed 0: status ok" in capsys.readouterr().out
    assert json.loads(out.read_text())["config"]["method"] == "neumann_rbp"
    assert methods.method_name(" CG ") == "cg_rbp" and methods.method_name("rneumann") == "randomized_neumann"


@real
def test_cli_reproduce_quick_names_missing_pubmed(tmp_path, capsys):
    argv = ["--datasets", "cora,pubmed", "--methods", "baseline,neumann_rbp", "--seeds", "2", "--quick",
            "--out", str(tmp_path)]
    assert cli.reproduce_main(argv) == 0
    table = (tmp_path / "table.md").read_text()
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["datasets"]["cora"]["neumann_rbp"]["seeds"] == 2
    assert "| Neumann-RBP |" in table and "46.63 ± 8.3" in table
    if "pubmed" in summary["unavailable"]:
        assert "ind.pubmed.allx" in table and "Cannot run" in table
    assert (tmp_path / "fig3_cora.png").stat().st_size > 10_000
    assert len(list((tmp_path / "runs" / "cora").glob("*.json"))) == 4


def test_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        cli.reproduce_main(["--datasets", "karate"])
    assert "argument --datasets: unknown karate" in capsys.readouterr().err
