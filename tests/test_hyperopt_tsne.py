"""Figure 6 of the hyperparameter task: theta recorded at chosen meta steps, the training
trajectory it gives, and the t-SNE figure (tiny network, random data: cheap)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from rbpsolve.adapters.tasks.hyperopt.experiment import optimise  # noqa: E402
from rbpsolve.adapters.tasks.hyperopt.hypergrad import Data  # noqa: E402
from rbpsolve.adapters.tasks.hyperopt.sgd import MLP  # noqa: E402
from rbpsolve.adapters.tasks.hyperopt import tsne  # noqa: E402

TINY = MLP((5, 4, 3))


def tiny_data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)  # float32, as optimise starts theta
    y = torch.randint(0, 3, (n,), generator=g)
    return Data(x, y, x, y)


def _needs_plotting():
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")


def test_theta_recorded_at_the_chosen_meta_steps():
    d = tiny_data()
    rec = tsne.record_thetas(TINY, d, method="tbptt", meta_steps=(3, 1), steps=6, truncate=2, batch_size=8,
                             progress=False)
    assert rec["meta_steps"] == 3 and len(rec["meta_loss_log10"]) == 3
    assert sorted(rec["theta_at"]) == ["1", "3"]
    # meta step s trains with theta after s - 1 updates: meta step 1 has the starting theta
    start = optimise(TINY, d, method="tbptt", steps=6, truncate=2, meta_steps=1, meta_lr=0.0, batch_size=8,
                     progress=False)["theta"]
    assert rec["theta_at"]["1"] == start
    assert rec["theta_at"]["3"] != start and rec["theta_at"]["3"] != rec["theta"]
    # ... and the trajectory of that theta ends at that meta step's meta-loss (TBPTT: the same mini-batch steps)
    states = tsne.trajectory(TINY, rec["theta_at"]["3"], d.x_train, d.y_train, steps=6, batch_size=8)
    loss = TINY.loss(states[-1, : TINY.num_params], d.x_meta, d.y_meta)
    assert abs(float(torch.log10(loss)) - rec["meta_loss_log10"][2]) < 1e-5


def test_theta_at_out_of_range_is_refused():
    with pytest.raises(ValueError, match="theta_at"):
        optimise(TINY, tiny_data(), method="tbptt", steps=4, truncate=2, meta_steps=2, theta_at=(3,), batch_size=8,
                 progress=False)
    assert "theta_at" not in optimise(TINY, tiny_data(), method="tbptt", steps=4, truncate=2, meta_steps=1,
                                      batch_size=8, progress=False)


def test_trajectory_has_T_plus_one_states_of_the_state_size():
    d = tiny_data()
    theta = torch.zeros(2, TINY.num_tensors)
    states = tsne.trajectory(TINY, theta, d.x_train, d.y_train, steps=7, batch_size=8)
    assert states.shape == (8, 2 * TINY.num_params)
    assert torch.all(states[0, TINY.num_params:] == 0)  # h_0 = [w_0; 0]
    assert not torch.equal(states[0], states[-1])


def test_figure6_writes_a_png_on_tiny_input(tmp_path):
    _needs_plotting()
    g = torch.Generator().manual_seed(3)
    panels = {(m, s): tsne.embed(torch.randn(9, 30, generator=g).cumsum(0), components=5)
              for m in tsne.PAPER_METHODS for s in tsne.PAPER_META_STEPS}
    assert all(xy.shape == (9, 2) for xy in panels.values())
    path = tsne.figure6(panels, tmp_path / "fig6.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_end_to_end_is_json_ready(tmp_path):
    _needs_plotting()
    out = tsne.run(TINY, tiny_data(), steps=8, truncate=2, meta_steps=(1, 2), batch_size=8, progress=False)
    out = json.loads(json.dumps(out))
    assert set(out["runs"]) == {"tbptt", "neumann_rbp"}
    for r in out["runs"].values():
        assert sorted(r["panels"]) == ["1", "2"] and len(r["meta_loss_log10"]) == 2
        assert all(len(p["embedding"]) == 9 for p in r["panels"].values())
    assert tsne.figure6(tsne.panels_of(out), tmp_path / "f.png").is_file()


def test_missing_sklearn_is_one_clear_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(ModuleNotFoundError, match="pip install scikit-learn") as err:
        tsne.require_sklearn()
    assert "\n" not in str(err.value)


def test_cli_train_size_needs_tsne(capsys):
    from rbpsolve.adapters.tasks.hyperopt.cli import reproduce_main

    with pytest.raises(SystemExit) as exit_:
        reproduce_main(["--train-size", "500", "--out", "unused"])
    assert exit_.value.code == 2 and "only with --tsne" in capsys.readouterr().err
