"""TrainingMonitor: the forward rate estimates rho(J), and the warning comes before the
backward fails."""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rbpsolve  # noqa: E402
from rbpsolve.adapters.torch import AdjointRiskWarning, TrainingMonitor, fixed_point, forward_rate  # noqa: E402

DT = torch.float64


def _linear(rho, n=8, seed=0):
    """``f(h) = A h + b`` with a symmetric A of spectral radius ``rho`` (one dominant eigenvalue)."""
    g = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(g.standard_normal((n, n)))
    eigenvalues = np.concatenate([[rho], rho * np.linspace(0.1, 0.6, n - 1)])
    A = torch.tensor(Q @ np.diag(eigenvalues) @ Q.T, dtype=DT, requires_grad=True)
    b = torch.tensor(g.standard_normal(n), dtype=DT)
    return A, (lambda h: h @ A.T + b)


def _step(rho, backward, monitor, forward=None):
    A, f = _linear(rho)
    forward = forward or rbpsolve.Picard(max_steps=60, rtol=0, atol=0)
    h, diag = fixed_point(f, torch.zeros(8, dtype=DT), forward=forward, backward=backward, on_failure="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rbpsolve.adapters.torch.ConvergenceWarning)
        h.square().sum().backward()
    return monitor.update(diag), diag


@pytest.mark.parametrize("rho", [0.3, 0.7, 0.95])
def test_forward_rate_estimates_the_spectral_radius(rho):
    monitor = TrainingMonitor(warn=False)
    record, _ = _step(rho, rbpsolve.GMRES(rtol=1e-10), monitor)
    assert record.rate == pytest.approx(rho, rel=1e-3)
    assert record.forward_status in ("BUDGET_SPENT", "CONVERGED") and record.backward_status == "CONVERGED"


def test_forward_rate_edge_cases():
    assert math.isnan(forward_rate([]))
    assert math.isnan(forward_rate([1.0]))
    assert math.isnan(forward_rate([1.0, 0.0]))  # an exact fixed point: no rate to read
    assert forward_rate([1.0, 0.5, 0.25, float("nan")]) == pytest.approx(0.5)
    assert forward_rate([8.0, 4.0, 2.0, 1.0], window=2) == pytest.approx(0.5)


def test_the_warning_comes_before_the_backward_fails():
    """rho(J) grows each training step; Neumann-RBP fails once rho passes 1. The monitor's
    first warning must come earlier than that failure."""
    monitor = TrainingMonitor()
    first_failure, caught = None, []
    for t, rho in enumerate(np.arange(0.5, 1.2, 0.05)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            record, _ = _step(float(rho), rbpsolve.Neumann(max_steps=200, rtol=1e-8), monitor)
        caught += [(t, str(x.message)) for x in w if issubclass(x.category, AdjointRiskWarning)]
        if record.backward_status not in ("CONVERGED", "BUDGET_SPENT") and first_failure is None:
            first_failure = t
    assert first_failure is not None, "the schedule should end with a failing backward"
    assert caught and caught[0][0] < first_failure
    assert [step for step, _ in monitor.warnings] == [t for t, _ in caught]
    kinds = {"rate" if "rho(J)" in m else "trend" if "rise" in m else "error" for _, m in caught}
    assert "rate" in kinds and "trend" in kinds
    # each kind once while its condition holds: far fewer warnings than steps
    assert len(caught) <= 4


def test_no_warning_while_everything_is_fine():
    monitor = TrainingMonitor()
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdjointRiskWarning)
        for _ in range(12):
            _step(0.5, rbpsolve.GMRES(rtol=1e-10), monitor)
    assert monitor.warnings == []
    assert len(monitor.as_dict()["rate"]) == 12
    assert "12 steps" in repr(monitor)


def test_a_truncated_backward_with_a_large_error_estimate_warns():
    """A fixed Neumann budget reports BUDGET_SPENT (ok) at rho = 0.8 with about 0.8^5 of
    the adjoint's norm left: the monitor says so."""
    monitor = TrainingMonitor(error_warn=1e-2)
    with pytest.warns(AdjointRiskWarning, match="relative error estimate"):
        record, diag = _step(0.8, rbpsolve.Neumann(max_steps=5, rtol=0, atol=0), monitor)
    assert record.backward_status == "BUDGET_SPENT"
    z = diag.backward.x
    assert record.relative_error == pytest.approx(diag.backward.error_estimate / float(torch.linalg.vector_norm(z)))
    assert record.relative_error > 1e-2


def test_results_of_ones_own_loop():
    J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(3))
    result = rbpsolve.solve_adjoint(J, np.ones(3), rbpsolve.Neumann(rtol=1e-10, max_steps=100))
    monitor = TrainingMonitor()
    record = monitor.update(backward=result)
    assert record.forward_status == "none" and math.isnan(record.rate)
    assert record.relative_error < 1e-8


@pytest.mark.parametrize("kwargs", [{"rate_warn": 0}, {"rate_warn": 1.5}, {"error_warn": -1}, {"window": 1}])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError):
        TrainingMonitor(**kwargs)


def test_update_needs_something():
    with pytest.raises(ValueError, match="nothing to record"):
        TrainingMonitor().update()
