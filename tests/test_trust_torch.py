"""The torch adapter's default backward never hands back a wrong gradient as ok.

The issue's case: a linear model with n = 30 and rho(J) = 1.3. Neumann(max_steps=20), the
default backward, summed 20 growing terms and reported BUDGET_SPENT with a parameter
gradient 29 times off; a Fallback never ran. Now the budget is judged DIVERGED: the
default raises, ``on_failure=Fallback(GMRES())`` takes over and gives the implicit
gradient, and ``"warn"`` warns.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rbpsolve  # noqa: E402
from rbpsolve.adapters.torch import ConvergenceWarning, fixed_point  # noqa: E402

N = 30


def _model(rho, seed=1):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((N, N))
    W *= rho / np.abs(np.linalg.eigvals(W)).max()
    assert np.linalg.cond(np.eye(N) - W) < 1e3
    W = torch.tensor(W)
    b = torch.tensor(rng.standard_normal(N), requires_grad=True)
    c = torch.tensor(rng.standard_normal(N))
    return W, b, c


def _exact_grad(W, c):
    # h* = (I - W)^{-1} b and L = c^T h*, so dL/db = (I - W)^{-T} c.
    return torch.linalg.solve(torch.eye(N, dtype=W.dtype) - W.T, c)


def _solve(W, b, c, **kw):
    forward = rbpsolve.Anderson(memory=N + 5, max_steps=300, rtol=1e-13)
    h, diag = fixed_point(lambda h: W @ h + b, torch.zeros(N, dtype=W.dtype), forward=forward, **kw)
    assert diag.forward.status is rbpsolve.Status.CONVERGED
    return h, diag


@pytest.mark.parametrize("backward", [None, rbpsolve.RandomizedNeumann(min_steps=10, seed=0)],
                         ids=["default Neumann(20)", "RandomizedNeumann"])
def test_the_default_raises_on_a_diverging_series(backward):
    W, b, c = _model(1.3)
    h, diag = _solve(W, b, c, backward=backward)
    with pytest.raises(rbpsolve.SolveError, match="DIVERGED"):
        (c @ h).backward()
    assert b.grad is None
    assert diag.backward.status is rbpsolve.Status.DIVERGED and not diag.backward.ok


@pytest.mark.parametrize("backward", [None, rbpsolve.RandomizedNeumann(min_steps=10, seed=0)],
                         ids=["default Neumann(20)", "RandomizedNeumann"])
def test_a_fallback_takes_over_and_gives_the_implicit_gradient(backward):
    W, b, c = _model(1.3)
    h, diag = _solve(W, b, c, backward=backward, on_failure=rbpsolve.Fallback(rbpsolve.GMRES(rtol=1e-12)))
    (c @ h).backward()
    torch.testing.assert_close(b.grad, _exact_grad(W, c), rtol=1e-9, atol=1e-12)
    assert isinstance(diag.backward.solver, rbpsolve.GMRES) and diag.backward.ok
    assert [a.status for a in diag.backward.attempts] == [rbpsolve.Status.DIVERGED]


def test_warn_policy_warns_instead_of_returning_a_silent_wrong_gradient():
    W, b, c = _model(1.3)
    h, _ = _solve(W, b, c, on_failure="warn")
    with pytest.warns(ConvergenceWarning, match="DIVERGED"):
        (c @ h).backward()


def test_a_contraction_keeps_the_default_budget_and_its_gradient():
    W, b, c = _model(0.5)
    h, diag = _solve(W, b, c)
    (c @ h).backward()
    assert diag.backward.status is rbpsolve.Status.BUDGET_SPENT and diag.backward.num_vjp == 20
    exact = _exact_grad(W, c)
    # The truncation error of 21 terms at rho = 0.5: about 0.5^21 relative.
    assert float(torch.linalg.norm(b.grad - exact) / torch.linalg.norm(exact)) < 1e-4


def test_diagnostics_show_the_backward_estimate():
    W, b, c = _model(0.5)
    h, diag = _solve(W, b, c, backward=rbpsolve.GMRES(rtol=1e-8))
    assert diag.backward_error_estimate is None and "backward=not run" in repr(diag)
    (c @ h).backward()
    estimate = diag.backward_error_estimate
    assert estimate == diag.backward.error_estimate and 0 < estimate < 1e-6
    true = float(torch.linalg.norm(b.grad - _exact_grad(W, c)))  # dL/db = z here
    assert true <= 10 * estimate
    assert "error estimate" in repr(diag) and "CONVERGED" in repr(diag)
