"""Figures of docs/results: one colour per method across panels, one legend valid for all of them."""

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("torch")

from adapters.tasks.hopfield.figures import METHOD_ORDER, method_colors, plot_curves  # noqa: E402


def _trial(method, K, losses):
    return {"config": {"method": method, "truncate": K}, "train_loss": losses, "train_loss_every": 10,
            "valid": [(0, 0.2), (10, 0.1)]}


def test_method_colors_do_not_depend_on_plotting_order():
    a = method_colors(["rbp", "tbptt", "neumann"])
    b = method_colors(["neumann_rbp", "rbp", "tbptt", "bptt", "cg"])  # old and canonical names alike
    assert set(a) == {"rbp", "tbptt", "neumann_rbp"}
    for m in a:
        assert a[m] == b[m]
    assert len(set(b.values())) == len(b)
    assert set(method_colors(["zzz"])) == {"zzz"}
    assert method_colors(METHOD_ORDER)["bptt"] == "C0"


def test_plot_curves_one_legend_for_every_panel(tmp_path):
    # K = 10 plots the methods in another order than K = 30 (rbp first there); colours must not follow it.
    results = [_trial("rbp", 10, [1.0, 2.0]), _trial("neumann", 10, [1.0, 0.5]),
               _trial("neumann", 30, [1.0, 0.4]), _trial("rbp", 30, [1.0, 0.6]),
               _trial("tbptt", 30, [1.0, 0.3]), _trial("bptt", 10, [1.0, 0.5])]
    path = tmp_path / "fig.png"
    legend = plot_curves(results, path, [10, 30])
    assert path.stat().st_size > 0
    assert set(legend) == {"bptt", "tbptt", "rbp", "neumann_rbp"}  # old run files' names made canonical
    assert legend == {m: method_colors(["bptt", "tbptt", "rbp", "neumann_rbp"])[m] for m in legend}
    assert list(legend) == [m for m in METHOD_ORDER if m in legend]
