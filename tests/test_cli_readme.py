"""The `rbpsolve` command and its built-in example work as documented (the README's blocks: test_readme.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from rbpsolve import cli
from rbpsolve.examples import tanh_network



def test_example_network_has_requested_norm_and_is_a_steady_state():
    net = tanh_network(48, 0.8, seed=3)
    assert abs(net.norm_J - 0.8) <= 1e-8
    assert np.allclose(net.x_star, np.tanh(net.W @ net.x_star + net.b), atol=1e-12)
    d = 1 - net.x_star**2
    assert np.allclose(net.jacobian, d[:, None] * net.W)
    J = net.operator()
    assert np.allclose(J.to_dense(), net.jacobian, atol=1e-14)


def test_example_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n must be a positive int"):
        tanh_network(0)
    with pytest.raises(ValueError, match="norm must be a positive finite number"):
        tanh_network(8, -1.0)


def test_compare_prints_every_solver_converging(capsys):
    assert cli.main(["compare", "--n", "64", "--norm", "0.9"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "solver" not in line]
    assert len(rows) == 6
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name, status = cells[0], cells[1]
        expected = "BUDGET_SPENT" if name.startswith("Neumann, K=") else "CONVERGED"
        assert status == expected, row
        true_error, bound, estimate = float(cells[9]), cells[7], float(cells[8].split()[0])
        if bound != "-":
            assert true_error <= float(bound), row
        assert true_error <= 10 * estimate, row  # the estimate column is printed and honest here
        if status == "CONVERGED":
            assert float(cells[6]) <= 1e-8 * 1.01, row  # relative residual within rtol


def test_compare_reports_divergence_of_rbp(capsys):
    # ||J|| = 3 on this seed puts rho(J) above 1: the original RBP must say DIVERGED.
    net = tanh_network(64, 3.0, seed=0)
    assert net.spectral_radius > 1
    cli.main(["compare", "--n", "64", "--norm", "3.0"])
    out = capsys.readouterr().out
    fixed = next(line for line in out.splitlines() if line.startswith("| FixedPoint"))
    gmres = next(line for line in out.splitlines() if line.startswith("| GMRES"))
    assert "DIVERGED" in fixed and "CONVERGED" in gmres


def test_analyze_prints_report_and_exact_figures(capsys):
    assert cli.main(["analyze", "--n", "64", "--norm", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "J is likely a contraction" in out
    estimate = float(re.search(r"\|\|J\|\|_2\s+~ ([0-9.]+)", out).group(1))
    assert abs(estimate - 0.9) < 1e-3


def test_console_script_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "rbpsolve.cli", "compare", "--n", "32"], capture_output=True, text=True, check=True
    )
    assert "GMRES(50)" in proc.stdout
