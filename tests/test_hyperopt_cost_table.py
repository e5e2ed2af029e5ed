"""benchmarks/hyperopt_cost.py's table of repeated runs (Table 3): means, spreads, paired ratios."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("hyperopt_cost", Path(__file__).parents[1] / "benchmarks" / "hyperopt_cost.py")
cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cost)

MIB = 2**20


def _cell(seconds, rss=100, saved=90):
    return {"seconds_runs": seconds, "seconds": sum(seconds) / len(seconds), "rss_bytes": rss * MIB,
            "saved_bytes": saved * MIB}


def test_mean_and_sample_standard_deviation():
    assert cost._mean_sd([2.0]) == (2.0, 0.0)
    mean, sd = cost._mean_sd([1.0, 2.0, 3.0])
    assert mean == 2.0 and sd == pytest.approx(1.0)


def test_time_ratio_is_paired_run_by_run():
    # run-by-run ratios 2 and 4: mean 3, sd sqrt(2); the ratio of the means would be 6 / 2 = 3 too,
    # but its spread is not the spread of the ratios
    text = cost._time_ratio(_cell([4.0, 8.0]), _cell([2.0, 2.0]))
    assert text == f"×3.00 ± {2 ** 0.5:.2f}"
    assert cost._time_ratio({"seconds": 6.0}, {"seconds": 2.0}) == "×3.00"  # files written before --runs


def test_table_with_repeated_runs_shows_the_spread_and_the_paper():
    res = {"steps": 1000, "truncations": [10], "runs": 2, "memory_runs": 1,
           "bptt": _cell([4.0, 8.0], rss=2000, saved=1000),
           "neumann": {"10": _cell([2.0, 2.0], rss=50, saved=50)},
           "neumann_graph": {"10": _cell([3.0, 5.0], rss=2000, saved=1000)}}
    md = cost.table(res)
    assert "mean ± standard deviation of 2 runs" in md
    row = [line for line in md.splitlines() if line.startswith("| 10 |")][0]
    assert "6.00 ± 2.83" in row and "2.00 ± 0.00" in row and "(×3.02)" in row and "×40.00 / ×20.00" in row


def test_runs_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        cost.main(["--quick", "--runs", "0", "--out", "/nonexistent/x"])
    assert "--runs" in capsys.readouterr().err
