"""The torch adapter's implicit layer: gradients against dense formulas, BPTT and gradcheck.

Everything where exactness is claimed runs in float64 on small contractive models.
"""

from __future__ import annotations

import doctest
import importlib
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rbpsolve  # noqa: E402
from rbpsolve import GMRES, LSQR, Anderson, Neumann, Picard, Status  # noqa: E402
from rbpsolve.adapters.torch import (  # noqa: E402
    ConvergenceWarning,
    FixedPointLayer,
    fixed_point,
    jacobian_operator,
    unroll,
)

f64 = torch.float64
TIGHT = dict(forward=Picard(rtol=1e-15, max_steps=5000))


def _contraction(n, q, seed, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=g, dtype=dtype)
    return W * (q / torch.linalg.matrix_norm(W, 2))


def _relative(a, b):
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------- the dense steady state
@pytest.mark.parametrize("backward", [LSQR(rtol=1e-13), GMRES(rtol=1e-13)], ids=["lsqr", "gmres"])
@pytest.mark.parametrize("batch", [None, 3])
def test_steady_state_network_matches_the_dense_gradient(backward, batch):
    """x = tanh(W x + b): dR/dW = u x^T with (D^-1 - W^T) u = dR/dx, D = diag(1 - x^2)."""
    n = 10
    W = _contraction(n, 0.9, seed=1).requires_grad_()
    b = torch.randn(n, dtype=f64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    shape = (n,) if batch is None else (batch, n)
    c = torch.randn(shape, dtype=f64, generator=torch.Generator().manual_seed(3))

    x, diag = fixed_point(lambda h: torch.tanh(h @ W.T + b), torch.zeros(shape, dtype=f64), backward=backward, **TIGHT)
    R = (c * x).sum() + 0.25 * (x**4).sum()
    R.backward()
    assert diag.forward.ok and diag.backward.status is Status.CONVERGED

    Wn, xs = W.detach().numpy(), x.detach().numpy().reshape(-1, n)
    dRdx = (c.numpy() + xs.reshape(shape) ** 3).reshape(-1, n)
    gW, gb = np.zeros((n, n)), np.zeros(n)
    for xi, ri in zip(xs, dRdx):
        D = 1.0 - xi**2
        u = np.linalg.solve(np.diag(1.0 / D) - Wn.T, ri)
        gW += np.outer(u, xi)
        gb += u
    assert _relative(W.grad, torch.tensor(gW)) < 1e-8
    assert _relative(b.grad, torch.tensor(gb)) < 1e-8


# ---------------------------------------------------------------------------- Proposition 1
def _tanh_model(n=8, q=0.8, seed=0):
    W = _contraction(n, q, seed).requires_grad_()
    gen = torch.Generator().manual_seed(seed + 100)
    enc = torch.nn.Linear(5, n).double()
    with torch.no_grad():
        enc.weight.copy_(0.2 * torch.randn(n, 5, generator=gen, dtype=f64))  # tanh far from saturation
        enc.bias.copy_(0.2 * torch.randn(n, generator=gen, dtype=f64))
    x = torch.randn(4, 5, generator=gen, dtype=f64)
    target = torch.randn(4, n, generator=gen, dtype=f64)
    params = [W, *enc.parameters()]

    def make_f():
        u = enc(x)  # a layer before the recurrent core
        return lambda h: torch.tanh(h @ W.T + u)

    def loss(h):
        return ((h - target) ** 2).sum()

    return params, make_f, loss, torch.zeros(4, n, dtype=f64)


def _grads(params, run):
    for p in params:
        p.grad = None
    run().backward()
    return [p.grad.clone() for p in params]


@pytest.mark.parametrize("K", [1, 2, 5, 12])
def test_proposition_1_neumann_equals_tbptt_at_a_converged_state(K):
    """K-step Neumann-RBP (K VJPs, K+1 terms) == TBPTT through the last K+1 steps, to 1e-10."""
    params, make_f, loss, h0 = _tanh_model()
    rbp = _grads(params, lambda: loss(fixed_point(make_f(), h0, backward=Neumann(max_steps=K), **TIGHT)[0]))
    tbptt = _grads(params, lambda: loss(unroll(make_f(), h0, 400, truncate=K + 1)))
    for a, b in zip(rbp, tbptt):
        assert _relative(a, b) < 1e-10
    # and the truncation matters: K steps differ from the exact gradient
    exact = _grads(params, lambda: loss(fixed_point(make_f(), h0, backward=GMRES(rtol=1e-14), **TIGHT)[0]))
    assert _relative(rbp[0], exact[0]) > 1e-8


@pytest.mark.parametrize("as_callable", [False, True], ids=["tensor", "callable"])
def test_backward_x0_starts_the_original_rbp_from_a_given_z0(as_callable):
    """FixedPoint with K steps from z_0: z_K = (J^T)^K z_0 + sum_{t<K} (J^T)^t g, against a dense J."""
    K = 3
    params, make_f, loss, h0 = _tanh_model()
    z0 = torch.rand(h0.shape, generator=torch.Generator().manual_seed(7), dtype=f64)
    seen = []

    def start(g):
        seen.append(g.clone())
        return z0.clone()

    solver = rbpsolve.FixedPoint(max_steps=K, rtol=0.0, atol=0.0, divergence_factor=float("inf"))
    got = _grads(params, lambda: loss(fixed_point(make_f(), h0, backward=solver, **TIGHT,
                                                  backward_x0=start if as_callable else z0.clone())[0]))

    f = make_f()
    h_star = fixed_point(f, h0, **TIGHT)[0].detach()
    J = torch.autograd.functional.jacobian(lambda v: f(v.reshape(h0.shape)).reshape(-1), h_star.reshape(-1))
    g = torch.autograd.functional.jacobian(lambda v: loss(v.reshape(h0.shape)), h_star.reshape(-1))
    z = z0.reshape(-1)
    for _ in range(K):
        z = J.T @ z + g
    out = f(h_star)
    want = torch.autograd.grad(out, params, grad_outputs=z.reshape(h0.shape))
    for a, b in zip(got, want):
        assert _relative(a, b) < 1e-10
    if as_callable:
        assert len(seen) == 1 and _relative(seen[0].reshape(-1), g) < 1e-12
    # the start matters at this budget: from zero the answer differs
    zero = _grads(params, lambda: loss(fixed_point(make_f(), h0, backward=solver, **TIGHT)[0]))
    assert _relative(zero[0], got[0]) > 1e-6


def test_layer_backward_x0_gives_the_functional_gradient():
    """FixedPointLayer(backward_x0=...) passes the start on: the same gradient as fixed_point with it."""
    W = _contraction(6, 0.8, 3).requires_grad_()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(4), dtype=f64)

    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W = torch.nn.Parameter(W.detach().clone())

        def forward(self, h, u):
            return torch.tanh(h @ self.W.T + u)

    solver = rbpsolve.FixedPoint(max_steps=2, rtol=0.0, atol=0.0, divergence_factor=float("inf"))
    start = lambda g: torch.ones_like(g)  # noqa: E731
    layer = FixedPointLayer(Cell(), backward=solver, backward_x0=start, **TIGHT)
    layer(torch.zeros(4, 6, dtype=f64), x).pow(2).sum().backward()
    cell = layer.cell
    f = lambda h: cell(h, x)  # noqa: E731
    want = torch.autograd.grad(fixed_point(f, torch.zeros(4, 6, dtype=f64), backward=solver, backward_x0=start,
                                           **TIGHT)[0].pow(2).sum(), cell.W)[0]
    zero = torch.autograd.grad(fixed_point(f, torch.zeros(4, 6, dtype=f64), backward=solver,
                                           **TIGHT)[0].pow(2).sum(), cell.W)[0]
    assert _relative(cell.W.grad, want) < 1e-12 and _relative(cell.W.grad, zero) > 1e-6
    with pytest.raises(TypeError, match=r"backward_x0 must be a tensor shaped like h0 \(or a callable g -> tensor\)"):
        FixedPointLayer(Cell(), backward_x0=np.zeros(6))


def test_backward_x0_of_the_wrong_shape_or_kind_is_refused():
    params, make_f, loss, h0 = _tanh_model()
    with pytest.raises(ValueError, match="backward_x0 must match h0: shape"):
        fixed_point(make_f(), h0, backward_x0=torch.zeros(3, dtype=f64))
    with pytest.raises(ValueError, match="float32"):
        fixed_point(make_f(), h0, backward_x0=torch.zeros(h0.shape, dtype=torch.float32))
    with pytest.raises(TypeError, match="backward_x0 must be a tensor"):
        fixed_point(make_f(), h0, backward_x0=np.zeros(h0.shape))
    with pytest.raises(ValueError, match="backward_x0 contains NaN or inf"):
        fixed_point(make_f(), h0, backward_x0=torch.full(h0.shape, float("nan"), dtype=f64))
    h, _ = fixed_point(make_f(), h0, backward_x0=lambda g: g[:1])
    with pytest.raises(ValueError, match=r"backward_x0\(g\) must match h0"):
        loss(h).backward()
    h, _ = fixed_point(make_f(), h0, backward_x0=lambda g: g * float("inf"))
    with pytest.raises(ValueError, match=r"backward_x0\(g\) contains NaN or inf"):
        loss(h).backward()
    assert all(p.grad is None for p in params)  # nothing reached .grad


def test_bptt_approaches_the_implicit_gradient_as_the_unroll_grows():
    params, make_f, loss, h0 = _tanh_model(q=0.9)
    exact = _grads(params, lambda: loss(fixed_point(make_f(), h0, backward=GMRES(rtol=1e-14), **TIGHT)[0]))
    errors = []
    for T in (5, 20, 60, 400):
        bptt = _grads(params, lambda: loss(unroll(make_f(), h0, T)))
        errors.append(max(_relative(a, b) for a, b in zip(bptt, exact)))
    # Falling with T until rounding (~1e-15) is reached; two errors at rounding level may come in any order.
    for shorter, longer in zip(errors, errors[1:]):
        assert longer < shorter or max(shorter, longer) < 1e-13
    assert errors[0] > 1e-3 and errors[-1] < 1e-10


def test_layers_before_and_after_the_core_match_bptt():
    """Linear -> fixed point -> Linear: every part's gradient matches a long BPTT."""
    n = 6
    gen = torch.Generator().manual_seed(5)
    enc = torch.nn.Linear(3, n).double()
    dec = torch.nn.Linear(n, 2).double()
    core = torch.nn.Linear(n, n).double()
    with torch.no_grad():
        core.weight.copy_(_contraction(n, 0.7, seed=6))
    x = torch.randn(5, 3, generator=gen, dtype=f64)
    y = torch.randn(5, 2, generator=gen, dtype=f64)
    params = [*enc.parameters(), *core.parameters(), *dec.parameters()]

    def model(solve):
        u = enc(x)
        h = solve(lambda h: torch.tanh(core(h) + u), torch.zeros(5, n, dtype=f64))
        return ((dec(h) - y) ** 2).mean()

    implicit = _grads(params, lambda: model(lambda f, h0: fixed_point(f, h0, backward=GMRES(rtol=1e-14), **TIGHT)[0]))
    bptt = _grads(params, lambda: model(lambda f, h0: unroll(f, h0, 300)))
    for a, b in zip(implicit, bptt):
        assert _relative(a, b) < 1e-9
    assert all(torch.all(g != 0) for g in implicit[:2])  # the encoder really got a gradient


def test_gradcheck():
    n = 4
    gen = torch.Generator().manual_seed(9)
    W = _contraction(n, 0.6, seed=9).requires_grad_()
    b = torch.randn(n, generator=gen, dtype=f64, requires_grad=True)
    x = torch.randn(2, n, generator=gen, dtype=f64, requires_grad=True)

    def fn(W, b, x):
        h, _ = fixed_point(lambda h: torch.tanh(h @ W.T + b + x), torch.zeros(2, n, dtype=f64),
                           forward=Picard(rtol=1e-15, max_steps=2000), backward=GMRES(rtol=1e-14))
        return h

    assert torch.autograd.gradcheck(fn, (W, b, x), eps=1e-6, atol=1e-7, rtol=1e-6)


# ---------------------------------------------------------------------------- failure policies
def _divergent_model(n=6):
    """h = A h + u with spectral radius 2.5: Anderson finds h*, Picard and Neumann diverge.

    (Neumann(max_steps=20) flags divergence once a term grows 1e4-fold, so it needs rho > 1.58.)
    """
    gen = torch.Generator().manual_seed(11)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=f64))
    A = (Q @ torch.diag(torch.tensor([2.5, -1.3, 0.4, 0.3, -0.2, 0.1], dtype=f64)) @ Q.T).requires_grad_()
    enc = torch.nn.Linear(2, n).double()
    dec = torch.nn.Linear(n, 1).double()
    x = torch.randn(3, 2, generator=gen, dtype=f64)
    params = [A, *enc.parameters(), *dec.parameters()]

    def loss(**kwargs):
        u = enc(x)
        h, diag = fixed_point(lambda h: h @ A.T + u, torch.zeros(3, n, dtype=f64), **kwargs)
        return dec(h).square().sum(), diag

    def exact():
        u = enc(x).detach()
        Ad = A.detach()
        h = torch.linalg.solve(torch.eye(n, dtype=f64) - Ad, u.T).T
        return h

    return params, loss, exact


def _clear(params):
    for p in params:
        p.grad = None


def _no_nan(params):
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


def test_divergent_backward_raises_by_default_and_no_nan_reaches_grad():
    params, loss, _ = _divergent_model()
    L, diag = loss(forward=Anderson(rtol=1e-13, memory=8))
    assert diag.forward.ok
    with pytest.raises(rbpsolve.SolveError) as info:
        L.backward()
    assert info.value.result.status is Status.DIVERGED
    assert diag.backward.status is Status.DIVERGED
    assert _no_nan(params)
    assert params[0].grad is None and params[1].grad is None  # nothing reached the core or encoder


def test_divergent_backward_warns_and_uses_the_best_iterate():
    params, loss, _ = _divergent_model()
    L, diag = loss(forward=Anderson(rtol=1e-13, memory=8), on_failure="warn")
    with pytest.warns(ConvergenceWarning, match="backward solve ended DIVERGED"):
        L.backward()
    assert _no_nan(params) and params[0].grad is not None
    assert not diag.backward.ok


def test_divergent_backward_falls_back_to_gmres():
    params, loss, _ = _divergent_model()
    L, diag = loss(forward=Anderson(rtol=1e-13, memory=8), on_failure=rbpsolve.Fallback(GMRES(rtol=1e-13)))
    L.backward()
    got = [p.grad.clone() for p in params]
    assert isinstance(diag.backward.solver, GMRES) and diag.backward.ok
    assert len(diag.backward.attempts) == 1 and diag.backward.attempts[0].status is Status.DIVERGED
    _clear(params)
    L, _ = loss(forward=Anderson(rtol=1e-13, memory=8), backward=GMRES(rtol=1e-13))
    L.backward()
    for a, p in zip(got, params):
        assert _relative(a, p.grad) < 1e-12


def test_divergent_forward_each_policy():
    params, loss, exact = _divergent_model()
    with pytest.raises(rbpsolve.SolveError) as info:
        loss(forward=Picard(rtol=1e-10))
    assert info.value.result.status is Status.DIVERGED
    assert all(p.grad is None for p in params)

    with pytest.warns(ConvergenceWarning, match="forward solve ended DIVERGED"):
        L, diag = loss(forward=Picard(rtol=1e-10), on_failure="warn")
    assert torch.isfinite(L) and diag.forward.status is Status.DIVERGED

    L, diag = loss(forward=Picard(rtol=1e-10), on_failure=rbpsolve.Fallback(Anderson(rtol=1e-13, memory=8), GMRES(rtol=1e-12)))
    assert isinstance(diag.forward.solver, Anderson) and diag.forward.attempts[0].status is Status.DIVERGED
    L.backward()
    assert isinstance(diag.backward.solver, GMRES) and _no_nan(params)


def test_nan_in_the_forward_map_each_policy():
    w = torch.tensor(0.5, dtype=f64, requires_grad=True)
    h0 = torch.ones(3, dtype=f64)
    f = lambda h: w * h + (float("nan") if float(h.detach().sum()) > 1.0 else 1.0)  # noqa: E731
    with pytest.raises(rbpsolve.SolveError, match="NONFINITE"):
        fixed_point(f, h0)
    with pytest.warns(ConvergenceWarning, match="forward solve ended NONFINITE"):
        h, diag = fixed_point(f, torch.zeros(3, dtype=f64), on_failure="warn")
    assert torch.isfinite(diag.forward.x).all()  # the best finite iterate, not the NaN


# ---------------------------------------------------------------------------- diagnostics
def test_diagnostics_after_backward():
    n = 5
    W = _contraction(n, 0.5, seed=3).requires_grad_()
    b = torch.ones(n, dtype=f64)
    h, diag = fixed_point(lambda h: torch.tanh(h @ W.T + b), torch.zeros(n, dtype=f64), forward=Picard(rtol=1e-8))
    assert diag.backward is None and diag.backward_calls == 0
    # forward history: the step lengths ||h_{k+1} - h_k||
    hk, steps = torch.zeros(n, dtype=f64), []
    with torch.no_grad():
        for _ in range(diag.forward.num_steps):
            nxt = torch.tanh(hk @ W.T + b)
            steps.append(float((nxt - hk).norm()))
            hk = nxt
    np.testing.assert_allclose(diag.forward_history, steps, rtol=1e-12)
    assert diag.forward.info["num_evaluations"] == diag.forward.num_steps
    h.sum().backward(retain_graph=True)
    assert diag.backward.num_vjp == 20 and diag.backward.status is Status.BUDGET_SPENT and diag.jvp_mode is None
    h.sum().backward()
    assert diag.backward_calls == 2


def test_lsqr_backward_records_the_jvp_mode():
    n = 4
    W = _contraction(n, 0.5, seed=4).requires_grad_()
    for mode in ("double_backward", "forward"):
        h, diag = fixed_point(lambda h: torch.sin(h @ W.T) + 1.0, torch.zeros(n, dtype=f64), backward=LSQR(rtol=1e-10), jvp=mode)
        h.sum().backward()
        assert diag.jvp_mode == mode and diag.backward.num_jvp > 0


def test_no_grad_mode_returns_the_solution_without_a_graph():
    W = _contraction(4, 0.5, seed=4).requires_grad_()
    with torch.no_grad():
        h, diag = fixed_point(lambda h: torch.tanh(h @ W.T + 1.0), torch.zeros(4, dtype=f64))
    assert not h.requires_grad and diag.forward.ok


def test_h0_gets_no_gradient_and_float32_works():
    W = _contraction(8, 0.5, seed=4, dtype=torch.float32).requires_grad_()
    h0 = torch.zeros(2, 8, requires_grad=True)
    h, diag = fixed_point(lambda h: torch.tanh(h @ W.T + 1.0), h0)
    assert h.dtype == torch.float32 and diag.forward.x.dtype == torch.float32
    h.sum().backward()
    assert h0.grad is None and W.grad.dtype == torch.float32 and torch.isfinite(W.grad).all()


def test_fixed_point_layer_keeps_the_last_diagnostics():
    class Cell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 6).double()

        def forward(self, h, x):
            return torch.tanh(0.3 * self.lin(h) + x)

    layer = FixedPointLayer(Cell(), backward=GMRES(rtol=1e-12), forward=Anderson(rtol=1e-12))
    assert [n for n, _ in layer.named_parameters()] == ["cell.lin.weight", "cell.lin.bias"]
    x = torch.randn(3, 6, dtype=f64)
    h = layer(torch.zeros(3, 6, dtype=f64), x)
    assert layer.diagnostics.forward.ok and layer.diagnostics.backward is None
    h.square().sum().backward()
    assert layer.diagnostics.backward.ok and layer.cell.lin.weight.grad is not None
    assert "GMRES" in repr(layer)
    # matches the functional form
    grad = layer.cell.lin.weight.grad.clone()
    layer.zero_grad()
    h2, _ = fixed_point(lambda h: layer.cell(h, x), torch.zeros(3, 6, dtype=f64), backward=GMRES(rtol=1e-12), forward=Anderson(rtol=1e-12))
    h2.square().sum().backward()
    assert _relative(layer.cell.lin.weight.grad, grad) < 1e-9


def test_randomized_neumann_backward_is_unbiased():
    """The mean of many RandomizedNeumann gradients is the exact implicit gradient (5 sigma)."""
    n = 5
    W = _contraction(n, 0.6, seed=8).requires_grad_()
    b = torch.randn(n, dtype=f64, generator=torch.Generator().manual_seed(1))
    f = lambda h: torch.tanh(h @ W.T + b)  # noqa: E731
    h0 = torch.zeros(n, dtype=f64)

    def grad(backward):
        W.grad = None
        h, _ = fixed_point(f, h0, backward=backward, forward=Picard(rtol=1e-14))
        (h**2).sum().backward()
        return W.grad.clone().numpy()

    exact = grad(GMRES(rtol=1e-14))
    N = 600
    samples = np.stack([grad(rbpsolve.RandomizedNeumann(continue_prob=0.6, seed=s)) for s in range(N)])
    mean, std = samples.mean(0), samples.std(0, ddof=1)
    assert np.all(np.abs(mean - exact) <= 5 * std / np.sqrt(N) + 1e-12)
    truncated = grad(Neumann(max_steps=1))
    assert np.any(np.abs(truncated - exact) > 5 * std / np.sqrt(N))


# ---------------------------------------------------------------------------- jacobian_operator
def test_jacobian_operator_matches_autograd_and_passes_the_dot_test():
    W = _contraction(6, 0.9, seed=2)
    f = lambda h: torch.tanh(h @ W.T) * 2.0 + h.roll(1, -1) ** 2  # noqa: E731
    h = torch.randn(2, 3, dtype=f64, generator=torch.Generator().manual_seed(0)).reshape(6)
    dense = torch.autograd.functional.jacobian(f, h).numpy()
    for mode in ("double_backward", "forward"):
        J = jacobian_operator(f, h, jvp=mode)
        np.testing.assert_allclose(J.to_dense(), dense, rtol=1e-12, atol=1e-14)
        assert rbpsolve.dottest(J)
        v = torch.randn(6, dtype=f64)
        np.testing.assert_allclose(J.mv(v).numpy(), dense @ v.numpy(), rtol=1e-12)
        np.testing.assert_allclose(J.rmv(v).numpy(), dense.T @ v.numpy(), rtol=1e-12)


class _NoForwardAD(torch.autograd.Function):
    """sin with a differentiable backward and no forward-mode rule."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.cos(x)


class _NoDoubleBackward(torch.autograd.Function):
    """sin with a once-differentiable backward and a forward-mode rule."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.x = x
        return torch.sin(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.cos(x)

    @staticmethod
    def jvp(ctx, t):
        return t * torch.cos(ctx.x)


class _Neither(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.cos(x)


@pytest.mark.parametrize("fn,mode,used", [
    (_NoForwardAD, "forward", "double_backward"),
    (_NoDoubleBackward, "double_backward", "forward"),
    (_NoForwardAD, "double_backward", "double_backward"),
    (_NoDoubleBackward, "forward", "forward"),
])
def test_jvp_falls_back_where_a_rule_is_missing(fn, mode, used):
    W = _contraction(4, 0.5, seed=1).requires_grad_()
    f = lambda h: fn.apply(h @ W.T) + 0.5  # noqa: E731
    h, diag = fixed_point(f, torch.zeros(4, dtype=f64), backward=LSQR(rtol=1e-12), jvp=mode, **TIGHT)
    h.sum().backward()
    assert diag.jvp_mode == used and diag.backward.ok
    grad = W.grad.clone()
    W.grad = None
    h, _ = fixed_point(lambda h: torch.sin(h @ W.T) + 0.5, torch.zeros(4, dtype=f64), backward=LSQR(rtol=1e-12), **TIGHT)
    h.sum().backward()
    assert _relative(grad, W.grad) < 1e-9


def test_jvp_neither_mode_is_an_error_that_says_what_to_do():
    J = jacobian_operator(lambda h: _Neither.apply(h), torch.ones(3, dtype=f64))
    np.testing.assert_allclose(J.rmv(torch.ones(3, dtype=f64)).numpy(), np.cos(np.ones(3)))
    with pytest.raises(RuntimeError, match="neither JVP mode works.*Neumann, FixedPoint, GMRES"):
        J.mv(torch.ones(3, dtype=f64))


def test_a_map_that_ignores_h_has_zero_jacobian():
    J = jacobian_operator(lambda h: torch.ones_like(h), torch.zeros(3, dtype=f64))
    assert np.all(J.to_dense() == 0)
    assert torch.all(J.rmv(torch.ones(3, dtype=f64)) == 0)


# ---------------------------------------------------------------------------- bad input
def test_bad_input_names_the_problem():
    h0 = torch.zeros(3, dtype=f64)
    f = lambda h: 0.5 * h  # noqa: E731
    with pytest.raises(TypeError, match="f must be callable"):
        fixed_point(None, h0)
    with pytest.raises(TypeError, match="h0 must be a torch.Tensor"):
        fixed_point(f, np.zeros(3))
    with pytest.raises(TypeError, match="h0 has dtype torch.int64"):
        fixed_point(f, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="GMRES solves the linear adjoint system"):
        fixed_point(f, h0, forward=GMRES())
    with pytest.raises(TypeError, match="Picard is a forward solver"):
        fixed_point(f, h0, backward=Picard())
    with pytest.raises(TypeError, match="backward= takes rbpsolve solver settings"):
        fixed_point(f, h0, backward="neumann")
    with pytest.raises(ValueError, match="on_failure must be"):
        fixed_point(f, h0, on_failure="ignore")
    with pytest.raises(ValueError, match="jvp must be"):
        fixed_point(f, h0, jvp="reverse")
    with pytest.raises(ValueError, match=r"F returned an array of shape \(2,\) but h0 has shape \(3,\)"):
        fixed_point(lambda h: h[:2], h0)
    with pytest.raises(ValueError, match="jvp must be one of"):
        jacobian_operator(f, h0, jvp="reverse")
    with pytest.raises(ValueError, match=r"f returned a tensor of shape \(2,\)"):
        jacobian_operator(lambda h: h[:2], h0)
    with pytest.raises(TypeError, match="cell must be"):
        FixedPointLayer(3)
    with pytest.raises(ValueError, match="jvp must be one of"):
        FixedPointLayer(torch.nn.Identity(), jvp="fwd")
    with pytest.raises(ValueError, match="on_failure must be"):
        FixedPointLayer(torch.nn.Identity(), on_failure="skip")


def test_double_backward_through_the_layer_is_refused():
    W = _contraction(3, 0.5, seed=0).requires_grad_()
    h, _ = fixed_point(lambda h: torch.tanh(h @ W.T + 1.0), torch.zeros(3, dtype=f64))
    with pytest.raises(RuntimeError, match="does not support higher-order gradients"):
        torch.autograd.grad(h.sum(), W, create_graph=True)


def test_import_rbpsolve_alone_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, rbpsolve, rbpsolve.adapters; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", ["_jacobian", "_implicit", "_layer", "_unroll"])
def test_adapter_docstring_examples_run(module):
    mod = importlib.import_module(f"rbpsolve.adapters.torch.{module}")
    with warnings.catch_warnings():
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device for torch")),
])
@pytest.mark.parametrize("backward", [Neumann(max_steps=30), GMRES(rtol=1e-10), LSQR(rtol=1e-10)], ids=["neumann", "gmres", "lsqr"])
def test_everything_stays_on_the_tensors_device(device, backward):
    W = _contraction(8, 0.6, seed=2).to(device).requires_grad_()
    x = torch.randn(3, 8, dtype=f64, device=device)
    h, diag = fixed_point(lambda h: torch.tanh(h @ W.T + x), torch.zeros(3, 8, dtype=f64, device=device),
                          forward=Anderson(rtol=1e-12), backward=backward)
    h.square().sum().backward()
    assert h.device.type == device and diag.forward.x.device.type == device
    assert diag.backward.x.device.type == device and W.grad.device.type == device
    assert torch.isfinite(W.grad).all()
