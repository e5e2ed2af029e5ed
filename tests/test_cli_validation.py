"""Bad command-line values end in one clean error line, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rbpsolve import cli

BAD_VALUES = [
    ("compare", "--n", "-5"),
    ("compare", "--n", "0"),
    ("compare", "--n", "1"),
    ("compare", "--n", "abc"),
    ("compare", "--n", "2.5"),
    ("analyze", "--n", "-5"),
    ("compare", "--norm", "nan"),
    ("compare", "--norm", "inf"),
    ("compare", "--norm", "-1"),
    ("compare", "--norm", "0"),
    ("analyze", "--norm", "nan"),
    ("analyze", "--norm", "x"),
    ("compare", "--seed", "-1"),
    ("analyze", "--seed", "1.5"),
    ("analyze", "--rtol", "-1"),
    ("analyze", "--rtol", "0"),
    ("analyze", "--rtol", "2"),
    ("analyze", "--rtol", "nan"),
    ("compare", "--rtol", "1"),
    ("compare", "--rtol", "inf"),
    ("compare", "--max-steps", "0"),
    ("compare", "--max-steps", "-3"),
    ("compare", "--truncate", "-1"),
    ("compare", "--truncate", "0"),
]


@pytest.mark.parametrize(("command", "option", "value"), BAD_VALUES)
def test_bad_numeric_option_is_one_error_line(command, option, value, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert f"argument {option}: " in errors[0] and repr(value) in errors[0]


def test_unreachable_norm_is_one_error_line(capsys):
    # The steady state of this 4-neuron network vanishes (a fold) before ||J|| = 1e6: one error line, no traceback.
    with pytest.raises(SystemExit) as info:
        cli.main(["analyze", "--n", "4", "--norm", "1e6"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1 and "argument --norm: " in err


def test_edge_values_are_accepted(capsys):
    assert cli.main(["compare", "--n", "2", "--seed", "0", "--truncate", "1", "--max-steps", "1", "--rtol", "0.5"]) == 0
    assert cli.main(["analyze", "--n", "8", "--norm", "1.5", "--rtol", "1e-3"]) == 0
    assert "GMRES" in capsys.readouterr().out


@pytest.mark.parametrize("task", ["hyperopt", "hopfield", "citation"])
def test_task_with_missing_data_directory_is_one_clean_line(task, tmp_path):
    pytest.importorskip("torch")
    missing = tmp_path / "missing"
    proc = subprocess.run([sys.executable, "-m", "rbpsolve.cli", "task", task, "--data", str(missing)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    assert f"--data {missing}: no such directory" in lines[0]
    assert "the --data option" in lines[0] and "RBPSOLVE_DATA" in lines[0] and "`root`" not in lines[0]
    assert not missing.exists()  # nothing was created, let alone downloaded
