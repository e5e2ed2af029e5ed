"""A hostile sweep: whatever the operator, dtype, solver and settings, an ok result is what its
status says. CONVERGED means the true residual (recomputed here in float64) meets the
tolerance up to the rounding of the dtype; every result carries a finite x and an estimate;
no exception escapes for a well-formed call."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import rbpsolve
from rbpsolve import Status
from rbpsolve._estimate_quality import random_jacobian

SOLVERS = [
    lambda rtol, k, v: rbpsolve.FixedPoint(rtol=rtol, max_steps=k, verify=v),
    lambda rtol, k, v: rbpsolve.Neumann(rtol=rtol, max_steps=k, verify=v),
    lambda rtol, k, v: rbpsolve.CGNE(rtol=rtol, max_steps=k, verify=v),
    lambda rtol, k, v: rbpsolve.LSQR(rtol=rtol, max_steps=k, verify=v),
    lambda rtol, k, v: rbpsolve.GMRES(rtol=rtol, max_steps=k, verify=v, restart=7),
    lambda rtol, k, v: rbpsolve.RandomizedNeumann(min_steps=min(3, k), max_steps=k, verify=v, seed=0),
]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10**6),
    rho=st.floats(0.1, 1.6),
    kind=st.sampled_from(["normal", "nonnormal"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1e-30, 1.0, 1e30]),
    which=st.integers(0, len(SOLVERS) - 1),
    rtol=st.sampled_from([0.0, 1e-14, 1e-8, 1e-4]),
    steps=st.integers(1, 80),
    verify=st.sampled_from([None, True]),
)
def test_an_ok_result_is_what_its_status_says(seed, rho, kind, dtype, scale, which, rtol, steps, verify):
    n = 16
    W = random_jacobian(n, rho, kind, seed)
    g = np.random.default_rng(seed).standard_normal(n) * scale
    if not np.all(np.isfinite(g.astype(dtype))) or np.all(g.astype(dtype) == 0):
        return
    Wd = W.astype(dtype)
    J = rbpsolve.JacobianOperator(lambda u: Wd.T @ u, lambda v: Wd @ v, like=np.zeros(n, dtype))
    solver = SOLVERS[which](rtol if which != 5 else 0.0, steps, verify)
    with np.errstate(over="ignore", invalid="ignore"):  # a divergent series may overflow: NONFINITE
        res = rbpsolve.solve_adjoint(J, g.astype(dtype), solver, throw=False)
    assert res.x.dtype == dtype and res.x.shape == (n,)
    assert res.error_estimate is not None and isinstance(res.estimate_reliable, bool)
    if res.status is Status.NONFINITE:
        return
    assert np.all(np.isfinite(res.x))
    if res.status is Status.CONVERGED:
        gd = g.astype(dtype).astype(np.float64)
        x = res.x.astype(np.float64)
        true = np.linalg.norm(gd - (x - Wd.T.astype(np.float64) @ x))
        eps = float(np.finfo(dtype).eps)
        slack = 8 * eps * (np.linalg.norm(gd) + np.linalg.norm(x) * (1 + np.linalg.norm(W, 2)))
        assert true <= max(rtol * np.linalg.norm(gd), 0.0) + slack, (true, rtol, res)
        assert res.residual_kind == "verified"
    if res.status is Status.BUDGET_SPENT and which in (0, 1, 5) and rtol == 0.0 and math.isfinite(res.error_estimate):
        # A fixed budget judged converging: its last term is below its first.
        assert res.history[-1] < res.history[0] or res.history[-1] == 0.0 or len(res.history) < 2
