"""The torch adapter on a batch (``fixed_point(..., batch_axis=k)``): one fixed point and
one adjoint a sample, checked against BPTT, against each sample solved alone, and against
gradcheck; the failure policies per sample (raise/warn name the samples, "mask" drops them).

Every model is float64 and its samples are independent: sample i iterates its own map
with its own contraction, so each one's solo gradient is the reference for its share.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rbpsolve  # noqa: E402
from rbpsolve import GMRES, LSQR, Anderson, FixedPoint, Neumann, Picard, Status  # noqa: E402
from rbpsolve.adapters.torch import ConvergenceWarning, FixedPointLayer, fixed_point, unroll  # noqa: E402

f64 = torch.float64
B, N, D = 6, 5, 3
# A different contraction a sample: the bound on ||df_i/dh|| is SCALES[i].
SCALES = torch.tensor([0.3, 0.85, 0.5, 0.7, 0.4, 0.6], dtype=f64)
FWD = Picard(rtol=1e-14, max_steps=5000)
BWD = GMRES(rtol=1e-13)


def _model(seed=0, scales=SCALES):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, N, generator=g, dtype=f64)
    W = (W / torch.linalg.matrix_norm(W, 2)).requires_grad_()
    U = (0.5 * torch.randn(N, D, generator=g, dtype=f64)).requires_grad_()
    b = (0.2 * torch.randn(N, generator=g, dtype=f64)).requires_grad_()
    x = torch.randn(len(scales), D, generator=g, dtype=f64).requires_grad_()
    c = torch.randn(len(scales), N, generator=g, dtype=f64)
    return dict(W=W, U=U, b=b, x=x, c=c, s=scales)


def _f(m, rows=slice(None)):
    """h_i <- tanh(s_i W h_i + U x_i + b) for the samples ``rows`` (batch first)."""
    s, x = m["s"][rows], m["x"][rows]
    u = x @ m["U"].T + m["b"]
    return lambda h: torch.tanh(s.unsqueeze(-1) * (h @ m["W"].T) + u)


def _loss(m, h, rows=slice(None)):
    return (m["c"][rows] * h).sum() + 0.5 * (h**2).sum()


def _params(m):
    return [m["W"], m["U"], m["b"], m["x"]]


def _grads(m, run):
    for p in _params(m):
        p.grad = None
    run().backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in _params(m)]


def _batched(m, **kw):
    kw = {"forward": FWD, "backward": BWD, "batch_axis": 0, **kw}
    return fixed_point(_f(m), torch.zeros(len(m["s"]), N, dtype=f64), **kw)


def _solo_sum(m, samples, **kw):
    """The sum over ``samples`` of each one's gradient, solved alone (unbatched, 1-d state)."""
    kw = {"forward": FWD, "backward": BWD, **kw}
    total = [torch.zeros_like(p) for p in _params(m)]
    for i in samples:
        f_i = _f(m, i)
        grads = _grads(m, lambda: _loss(m, fixed_point(f_i, torch.zeros(N, dtype=f64), **kw)[0], i))
        total = [t + g for t, g in zip(total, grads)]
    return total


def _relative(a, b):
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------- exact gradients
def test_batched_gradients_match_bptt_and_solo_solves():
    m = _model()
    got = _grads(m, lambda: _loss(m, _batched(m)[0]))
    # BPTT through 400 steps: the truncation error is below 0.85^400.
    bptt = _grads(m, lambda: _loss(m, unroll(_f(m), torch.zeros(B, N, dtype=f64), 400)))
    solo = _solo_sum(m, range(B))
    for a, r, s in zip(got, bptt, solo):
        assert _relative(a, r) < 1e-8
        assert _relative(a, s) < 1e-8
    # x is per sample: row i of its gradient is sample i's alone
    assert _relative(got[3][1], _solo_sum(m, [1])[3][1]) < 1e-8


@pytest.mark.parametrize("backward", [Neumann(rtol=1e-13, max_steps=500), LSQR(rtol=1e-13), FixedPoint(rtol=1e-13)],
                         ids=["neumann", "lsqr", "fixedpoint"])
def test_other_backward_solvers_give_the_same_batched_gradient(backward):
    m = _model(seed=1)
    got = _grads(m, lambda: _loss(m, _batched(m, backward=backward)[0]))
    want = _grads(m, lambda: _loss(m, _batched(m, batch_axis=None)[0]))  # the whole batch as one system
    for a, w in zip(got, want):
        assert _relative(a, w) < 1e-8


@pytest.mark.parametrize("axis", [1, -1])
def test_batch_axis_other_than_zero(axis):
    """The state (n, B), samples along axis 1: the same gradient as batch first."""
    m = _model(seed=2)
    f0 = _f(m)

    def run():
        h, diag = fixed_point(lambda h: f0(h.T).T, torch.zeros(N, B, dtype=f64), forward=FWD, backward=BWD,
                              batch_axis=axis)
        assert diag.batch_axis == 1 and diag.backward is None
        run.diag = diag
        return _loss(m, h.T)

    got = _grads(m, run)
    assert run.diag.backward.sample_status.shape == (B,) and run.diag.backward.ok
    want = _grads(m, lambda: _loss(m, _batched(m)[0]))
    for a, w in zip(got, want):
        assert _relative(a, w) < 1e-10


def test_gradcheck_on_a_tiny_batch():
    g = torch.Generator().manual_seed(5)
    W = (0.4 * torch.randn(3, 3, generator=g, dtype=f64)).requires_grad_()
    x = torch.randn(2, 3, generator=g, dtype=f64).requires_grad_()
    scale = torch.tensor([[0.5], [1.0]], dtype=f64)

    def layer(W, x):
        return fixed_point(lambda h: torch.tanh(scale * (h @ W.T) + x), torch.zeros(2, 3, dtype=f64),
                           forward=Picard(rtol=1e-15, max_steps=5000), backward=GMRES(rtol=1e-14), batch_axis=0)[0]

    assert torch.autograd.gradcheck(layer, (W, x), eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- per-sample records
def test_diagnostics_hold_each_samples_records():
    m = _model(seed=3)
    bwd_solver = Neumann(rtol=1e-13, max_steps=500)  # a series: its steps follow each sample's contraction
    h, diag = _batched(m, backward=bwd_solver)
    assert diag.backward_samples is None and diag.masked is None
    fwd = diag.forward_samples
    assert fwd.status.shape == (B,) and all(s is Status.CONVERGED for s in fwd.status)
    assert len(fwd.failed) == 0 and fwd.summary == f"{B} converged"
    _loss(m, h).backward()
    bwd = diag.backward_samples
    assert all(s is Status.CONVERGED for s in bwd.status)
    assert bwd.residual_norm.shape == bwd.error_estimate.shape == (B,)
    # each sample has its own count, the one it takes alone
    solo_fwd, solo_bwd = [], []
    for i in range(B):
        hi, di = fixed_point(_f(m, i), torch.zeros(N, dtype=f64), forward=FWD, backward=bwd_solver)
        _loss(m, hi, i).backward()
        solo_fwd.append(di.forward.num_steps)
        solo_bwd.append(di.backward.num_steps)
    np.testing.assert_array_equal(fwd.num_steps, solo_fwd)
    np.testing.assert_array_equal(bwd.num_steps, solo_bwd)
    assert len(set(fwd.num_steps.tolist())) > 1 and len(set(bwd.num_steps.tolist())) > 1
    assert diag.backward.num_vjp < sum(solo_bwd)  # one batched VJP a step, not one a sample
    assert "6 converged" in repr(diag)


# ---------------------------------------------------------------------------- a sample that diverges
BAD = 3


def _linear(seed=4, bad_rho=1.5):
    """h_i <- s_i W h_i + tanh(U x_i + b): linear in h with J_i = s_i W of spectral radius
    SCALES[i], but sample BAD's ``bad_rho``: 1.5 > 1, so FixedPoint diverges on it
    backward; 0.995, so it runs out of steps far from converged. Anderson still finds
    every fixed point (it solves a linear one)."""
    m = _model(seed)
    with torch.no_grad():
        rho = torch.linalg.eigvals(m["W"]).abs().max()
    s = SCALES / rho
    s[BAD] = bad_rho / rho
    m["s"] = s
    return m


def _f_linear(m, rows=slice(None)):
    s, x = m["s"][rows], m["x"][rows]
    return lambda h: s.unsqueeze(-1) * (h @ m["W"].T) + torch.tanh(x @ m["U"].T + m["b"])


LIN_FWD = Anderson(memory=N + 1, rtol=1e-13, max_steps=200)
LIN_BWD = FixedPoint(rtol=1e-12, max_steps=400)  # 0.85^400 < 1e-28; 0.995^400 > 0.1


def _linear_batched(m, **kw):
    kw = {"forward": LIN_FWD, "backward": LIN_BWD, "batch_axis": 0, **kw}
    return fixed_point(_f_linear(m), torch.zeros(B, N, dtype=f64), **kw)


def _linear_solo(m, i, **kw):
    kw = {"forward": LIN_FWD, "backward": LIN_BWD, **kw}
    return fixed_point(_f_linear(m, i), torch.zeros(N, dtype=f64), **kw)


def test_raise_names_the_diverging_sample():
    m = _linear()
    h, diag = _linear_batched(m)
    assert diag.forward.ok  # the forward is fine on every sample
    with pytest.raises(rbpsolve.SolveError, match=rf"diverged: sample {BAD}\b") as info:
        _loss(m, h).backward()
    assert info.value.result.sample_status[BAD] is Status.DIVERGED
    assert list(diag.backward_samples.failed) == [BAD]
    assert all(p.grad is None for p in _params(m))


def test_warn_names_the_diverging_sample_and_carries_on():
    m = _linear()
    h, diag = _linear_batched(m, on_failure="warn")
    with pytest.warns(ConvergenceWarning, match=rf"diverged: sample {BAD}\b"):
        _loss(m, h).backward()
    assert m["W"].grad is not None and diag.masked is None


@pytest.mark.parametrize("bad_rho, status", [(1.5, Status.DIVERGED), (0.995, Status.MAX_STEPS)],
                         ids=["diverged", "max_steps"])
def test_mask_drops_the_failing_sample_and_keeps_the_others_exact(bad_rho, status):
    m = _linear(bad_rho=bad_rho)
    h, diag = _linear_batched(m, on_failure="mask")
    assert diag.masked is not None and len(diag.masked) == 0  # nothing failed forward
    with pytest.warns(ConvergenceWarning, match=rf"samples? {BAD}\b.*set to zero"):
        got = _grads(m, lambda: _loss(m, h))
    assert list(diag.masked) == [BAD] and diag.backward.sample_status[BAD] is status
    if status is Status.MAX_STEPS:  # the solver's z for it is far from zero: the mask zeroes it
        assert float(diag.backward.x[BAD].abs().max()) > 1e-3
    assert f"masked samples {BAD}" in repr(diag)
    # the bad sample's own input gets exactly no gradient; every other row is its solo one
    assert torch.count_nonzero(got[3][BAD]) == 0
    others = [i for i in range(B) if i != BAD]
    solo = [torch.zeros_like(p) for p in _params(m)]
    for i in others:
        hi, di = _linear_solo(m, i)
        assert di.forward.ok
        np.testing.assert_allclose(h[i].detach().numpy(), hi.detach().numpy(), rtol=0, atol=1e-11)
        solo = [t + g for t, g in zip(solo, _grads(m, lambda: _loss(m, _linear_solo(m, i)[0], i)))]
    for a, w in zip(got, solo):
        assert _relative(a, w) < 1e-8
    # exactly zero contribution: the same gradient, bit for bit, as a loss without that sample
    weight = torch.ones(B, 1, dtype=f64)
    weight[BAD] = 0.0
    without = _grads(m, lambda: _loss(m, weight * _linear_batched(m, on_failure="mask")[0]))
    for a, w in zip(got, without):
        assert torch.equal(a, w)
    # and its forward output is still returned (finite: the fixed point Anderson found)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        hb, db = _linear_solo(m, BAD, on_failure="warn")
    np.testing.assert_allclose(h[BAD].detach().numpy(), hb.detach().numpy(), rtol=0, atol=1e-10)


def test_mask_drops_a_sample_whose_forward_failed():
    """Picard diverges on the BAD sample (rho 1.5): its best iterate comes back, its
    gradient is zero, and the backward does not solve for it."""
    m = _linear()
    fwd = Picard(rtol=1e-13, max_steps=400)
    with pytest.warns(ConvergenceWarning, match=rf"forward solve failed on samples {BAD}\b"):
        h, diag = _linear_batched(m, forward=fwd, backward=GMRES(rtol=1e-13), on_failure="mask")
    assert list(diag.masked) == [BAD] and bool(torch.isfinite(h).all())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the backward itself succeeds on every sample it solves
        got = _grads(m, lambda: _loss(m, h))
    assert diag.backward.ok and diag.backward_samples.num_steps[BAD] == 0
    assert list(diag.masked) == [BAD] and torch.count_nonzero(got[3][BAD]) == 0
    assert torch.count_nonzero(got[3][0]) > 0


def test_a_per_sample_fallback_rescues_the_diverging_sample():
    m = _linear()
    h, diag = _linear_batched(m, on_failure=rbpsolve.Fallback(GMRES(rtol=1e-13)))
    got = _grads(m, lambda: _loss(m, h))
    assert diag.backward.ok and list(diag.backward.info["sample_fallback_index"]) == [
        1 if i == BAD else 0 for i in range(B)]
    exact = _grads(m, lambda: _loss(m, _linear_batched(m, backward=GMRES(rtol=1e-13))[0]))
    for a, w in zip(got, exact):
        assert _relative(a, w) < 1e-8


# ---------------------------------------------------------------------------- checks
def test_batch_axis_is_checked_with_the_fix_named():
    f, h0 = (lambda h: 0.5 * h), torch.zeros(4, 3, dtype=f64)
    with pytest.raises(TypeError, match="batch_axis must be an int, the axis of h0"):
        fixed_point(f, h0, batch_axis="0")
    with pytest.raises(TypeError, match="batch_axis must be an int"):
        fixed_point(f, h0, batch_axis=True)
    with pytest.raises(ValueError, match=r"batch_axis=2 is out of range for h0 of shape \(4, 3\).*\[-2, 1\]"):
        fixed_point(f, h0, batch_axis=2)
    with pytest.raises(ValueError, match="h0 is 0-d"):
        fixed_point(f, torch.zeros((), dtype=f64), batch_axis=0)
    with pytest.raises(ValueError, match="on_failure='mask'.*needs batch_axis"):
        fixed_point(f, h0, on_failure="mask")
    with pytest.raises(ValueError, match="'raise', 'warn', 'mask'"):
        fixed_point(f, h0, on_failure="ignore", batch_axis=0)
    with pytest.raises(TypeError, match="batch_axis must be an int"):
        FixedPointLayer(lambda h: h, batch_axis=0.0)
    with pytest.raises(ValueError, match="needs batch_axis"):
        FixedPointLayer(lambda h: h, on_failure="mask")


def _core_refuses(solver):
    J = rbpsolve.JacobianOperator(lambda u: u, lambda v: v, like=np.zeros((1, 1)))
    try:
        rbpsolve.solve_adjoint(J, np.zeros((1, 1)), solver, batch_axis=0, throw=False)
    except NotImplementedError:
        return True
    return False


@pytest.mark.parametrize("backward", [rbpsolve.RandomizedNeumann(max_steps=5, seed=0), Neumann(max_steps=5),
                                      rbpsolve.Fallback(Neumann(max_steps=5), GMRES())],
                         ids=["randomized", "neumann", "fallback"])
def test_a_backward_the_core_cannot_batch_is_refused_at_the_call(backward):
    calls = []

    def f(h):
        calls.append(1)
        return 0.5 * h

    h0 = torch.zeros(3, 2, dtype=f64, requires_grad=False)
    if _core_refuses(backward):
        with pytest.raises(NotImplementedError, match=r"fixed_point\(batch_axis=0\): the backward solver"):
            fixed_point(f, h0, backward=backward, batch_axis=0)
        assert not calls  # before any forward work
    else:
        h, diag = fixed_point(f, h0, backward=backward, batch_axis=0)
        assert diag.forward.sample_status is not None


def test_a_forward_chain_the_core_cannot_batch_is_refused():
    with pytest.raises(NotImplementedError, match=r"fixed_point\(batch_axis=0\): the forward solver"):
        fixed_point(lambda h: 0.5 * h, torch.zeros(3, 2, dtype=f64), batch_axis=0,
                    on_failure=rbpsolve.Fallback(Anderson()))


# ---------------------------------------------------------------------------- the layer
def test_layer_with_batch_axis_gives_the_functional_gradient():
    m = _model(seed=6)

    class Cell(torch.nn.Module):
        def forward(self, h, x):
            u = x @ m["U"].T + m["b"]
            return torch.tanh(m["s"].unsqueeze(-1) * (h @ m["W"].T) + u)

    layer = FixedPointLayer(Cell(), forward=FWD, backward=BWD, batch_axis=0, on_failure="mask")
    assert "batch_axis=0" in repr(layer)
    got = _grads(m, lambda: _loss(m, layer(torch.zeros(B, N, dtype=f64), m["x"])))
    assert layer.diagnostics.backward_samples.status.shape == (B,) and len(layer.diagnostics.masked) == 0
    want = _grads(m, lambda: _loss(m, _batched(m)[0]))
    for a, w in zip(got, want):
        assert _relative(a, w) < 1e-12
