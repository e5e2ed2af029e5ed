"""The second reading of the Hopfield success criterion (final loss against the first epoch's)."""

import pytest

pytest.importorskip("torch")

from adapters.tasks.hopfield.reproduce import first_epoch_ratio, table_markdown  # noqa: E402


def _trial(method, K, first, final, initial=0.22):
    return {"config": {"method": method, "truncate": K, "iters": 20, "lr": 1e-3, "hidden": 8, "steps": 5,
                       "device": "cpu", "seed": 0},
            "status": "failed", "initial_loss": initial, "final_loss": final, "ratio": final / initial,
            "train_loss": [first, final], "train_loss_every": 10, "valid": [], "diverging_solves": 0}


def test_first_epoch_ratio():
    assert first_epoch_ratio(_trial("neumann", 10, 0.9, 0.18)) == pytest.approx(0.2)
    assert first_epoch_ratio({"train_loss": [], "final_loss": 1.0}) is None
    assert first_epoch_ratio({"train_loss": [None], "final_loss": 1.0}) is None
    assert first_epoch_ratio({"train_loss": [0.5], "final_loss": None}) is None


def test_table_reports_both_readings():
    text = table_markdown([_trial("neumann", 10, 0.9, 0.18), _trial("rbp", 10, 0.9, 8.0)], "cmd")
    assert "| Neumann-RBP | 10 | 1/1 | 0.200 |" in text
    assert "| RBP | 10 | 0/1 | 8.889 |" in text
    assert "0% (0/1" in text  # the first reading (initial = before training) fails both
