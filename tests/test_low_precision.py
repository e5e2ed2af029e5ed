"""float16 and bfloat16 states (mixed-precision training): products in the input dtype,
iterates and reductions in float32, the result in the input dtype; checked against float64
references with tolerances from the dtype's eps."""

from __future__ import annotations

import numpy as np
import pytest

import rbpsolve
from rbpsolve import Status

N = 48


def _problem(seed=0, norm=0.8):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((N, N))
    W *= norm / np.linalg.norm(W, 2)
    g = rng.standard_normal(N)
    return W, g, np.linalg.solve(np.eye(N) - W.T, g)


def _dtypes():
    out = [("numpy", np.float16)]
    try:
        import torch
    except ImportError:
        return out
    return out + [("torch", torch.float16), ("torch", torch.bfloat16)]


def _arrays(lib, dtype, W, g):
    if lib == "numpy":
        return W.astype(dtype), g.astype(dtype), np.zeros(N, dtype), lambda x: np.asarray(x, dtype=np.float64), 2.0**-10
    import torch

    eps = torch.finfo(dtype).eps
    return (torch.tensor(W).to(dtype), torch.tensor(g).to(dtype), torch.zeros(N, dtype=dtype),
            lambda x: x.double().numpy(), eps)


SOLVERS = {
    "GMRES": rbpsolve.GMRES(),
    "CGNE": rbpsolve.CGNE(),
    "LSQR": rbpsolve.LSQR(),
    "FixedPoint": rbpsolve.FixedPoint(),
    "Neumann(tol)": rbpsolve.Neumann(rtol=None, max_steps=500),
    "Neumann(K=40)": rbpsolve.Neumann(max_steps=40),
}


@pytest.mark.parametrize("lib, dtype", _dtypes(), ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("name", list(SOLVERS))
def test_low_precision_solves_against_float64(lib, dtype, name):
    W, g, z = _problem()
    Wl, gl, like, to64, eps = _arrays(lib, dtype, W, g)
    J = rbpsolve.JacobianOperator(lambda u: Wl.T @ u, lambda v: Wl @ v, like=like)
    res = rbpsolve.solve_adjoint(J, gl, SOLVERS[name])
    assert res.ok and res.x.dtype == dtype
    # The data itself is rounded to eps: cond(I - J^T) <= 9 turns that into ~9 eps, and the
    # default tolerance 16 eps adds cond * 16 eps at most.
    err = np.linalg.norm(to64(res.x) - z) / np.linalg.norm(z)
    assert err <= 9 * (16 + 4) * eps, err
    assert np.linalg.norm(to64(res.x) - z) <= 10 * res.error_estimate
    if res.status is Status.CONVERGED:
        assert res.residual_kind == "verified"


@pytest.mark.parametrize("lib, dtype", _dtypes(), ids=lambda v: str(v).replace("torch.", ""))
def test_a_float32_tolerance_in_low_precision_is_not_claimed(lib, dtype):
    W, g, _ = _problem(1)
    Wl, gl, like, _, eps = _arrays(lib, dtype, W, g)
    J = rbpsolve.JacobianOperator(lambda u: Wl.T @ u, lambda v: Wl @ v, like=like)
    res = rbpsolve.solve_adjoint(J, gl, rbpsolve.GMRES(rtol=1e-6), throw=False)
    assert res.status in (Status.ACCURACY_LIMIT, Status.CONVERGED)
    if res.status is Status.CONVERGED:  # only if the verified residual really met it
        assert res.residual_norm <= 1e-6 * res.b_norm
    else:
        assert res.info["attainable"] > 1e-6 * res.b_norm


def test_float16_norms_do_not_overflow():
    # ||g|| = 60000 * sqrt(48) ~ 4e5 > 65504, the largest float16: reductions run in float32.
    W, _, _ = _problem(2, norm=0.5)
    g = np.full(N, 6.0e4)
    J = rbpsolve.JacobianOperator(lambda u: W.astype(np.float16).T @ u, like=np.zeros(N, np.float16))
    res = rbpsolve.solve_adjoint(J, g.astype(np.float16), rbpsolve.Neumann(max_steps=5), throw=False)
    # The answer itself (about 2 * 6e4 per entry) exceeds float16: reported, not inf as ok.
    z = np.linalg.solve(np.eye(N) - W.T, g)
    if np.abs(z).max() > 65504:
        assert res.status is Status.NONFINITE
    else:
        assert res.ok and np.all(np.isfinite(res.x))


def test_low_precision_forward_fixed_point():
    W, g, _ = _problem(3, norm=0.5)
    Wh = W.astype(np.float16)
    res = rbpsolve.fixed_point(lambda h: np.tanh(Wh @ h + np.float16(0.5)), np.zeros(N, np.float16), rbpsolve.Picard())
    assert res.status is Status.CONVERGED and res.x.dtype == np.float16
    h = np.zeros(N)
    for _ in range(200):
        h = np.tanh(W @ h + 0.5)
    assert np.linalg.norm(res.x.astype(np.float64) - h) <= 50 * 2.0**-10 * np.linalg.norm(h)


def test_torch_adapter_in_bfloat16_against_float64():
    torch = pytest.importorskip("torch")
    from rbpsolve.adapters.torch import fixed_point

    torch.manual_seed(0)
    W = torch.randn(16, 16, dtype=torch.float64)
    W *= 0.5 / torch.linalg.matrix_norm(W, 2)
    x = torch.randn(4, 16, dtype=torch.float64)

    def grad(dtype):
        w = W.to(dtype).detach().clone().requires_grad_()
        h, diag = fixed_point(lambda h: torch.tanh(h @ w.T + x.to(dtype)), torch.zeros(4, 16, dtype=dtype),
                              backward=rbpsolve.GMRES())
        h.double().square().sum().backward()
        assert diag.forward.ok and diag.backward.ok and w.grad.dtype == dtype
        return w.grad.double()

    exact = grad(torch.float64)
    low = grad(torch.bfloat16)
    assert float(torch.linalg.norm(low - exact) / torch.linalg.norm(exact)) < 0.1
