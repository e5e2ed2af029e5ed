"""The failed-run rule of the citation tables: failed runs are reported apart, not averaged in."""

import pytest

from adapters.tasks.citation.report import is_failed, summarize, write_table


def _run(seed, acc, status="ok", epochs=3):
    return {"config": {"dataset": "citeseer", "method": "bptt", "seed": seed}, "best_val_acc": acc,
            "test_acc_at_best_val": acc, "status": status, "backward_status": {}, "skipped_steps": 0,
            "seconds": 1.0, "train_loss": [1.0] * epochs}


def test_failed_run_is_left_out_of_the_mean_and_listed(tmp_path):
    runs = [_run(0, 30.0), _run(1, 40.0), _run(7, 19.31, "nonfinite_gradient", epochs=1)]
    assert [is_failed(r) for r in runs] == [False, False, True]
    cell = summarize(runs)["datasets"]["citeseer"]["bptt"]
    assert cell["test_acc_mean"] == pytest.approx(35.0)
    assert cell["test_acc_std"] == pytest.approx(5.0)
    assert (cell["seeds"], cell["completed_runs"], cell["failed_runs"]) == (3, 2, 1)
    assert cell["failed"] == [{"seed": 7, "status": "nonfinite_gradient", "epochs_trained": 1,
                               "test_acc_at_best_val": 19.31}]
    text = write_table(summarize(runs, {"pubmed": "ind.pubmed.allx is missing"}), tmp_path / "t.md", "s")
    assert "| BPTT | 35.00 ± 5.0 | 2/3 | 1 (seed 7: nonfinite_gradient after 1 epoch(s), test 19.31) |" in text
    assert "| Baseline | cannot run | 0 |" in text
