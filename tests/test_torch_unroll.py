"""The baselines of the torch adapter: BPTT, K-step TBPTT and Tallec & Ollivier's random truncation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rbpsolve.adapters.torch import RandomTruncation, unroll  # noqa: E402

f64 = torch.float64


def _model(n=5, q=0.9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=gen, dtype=f64)
    W = (W * (q / torch.linalg.matrix_norm(W, 2))).requires_grad_()
    b = (0.3 * torch.randn(n, generator=gen, dtype=f64)).requires_grad_()
    target = torch.randn(n, generator=gen, dtype=f64)
    return W, b, (lambda h: torch.tanh(h @ W.T + b)), target


def _grad(params, h):
    for p in params:
        p.grad = None
    h.backward()
    return [None if p.grad is None else p.grad.clone() for p in params]


def test_bptt_of_a_scalar_recurrence():
    w = torch.tensor(0.5, dtype=f64, requires_grad=True)
    h = unroll(lambda h: w * h + 1.0, torch.zeros((), dtype=f64), 4)  # 1 + w + w^2 + w^3
    h.backward()
    assert float(w.grad) == pytest.approx(1 + 2 * 0.5 + 3 * 0.25)


def test_tbptt_keeps_exactly_the_last_K_steps():
    """h_T = sum_t w^t: TBPTT through K steps differentiates only the last K powers."""
    w = torch.tensor(0.5, dtype=f64, requires_grad=True)
    T = 6
    for K in (1, 2, 4, 6, 9):
        w.grad = None
        unroll(lambda h: w * h + 1.0, torch.zeros((), dtype=f64), T, truncate=K).backward()
        # h_{T-K} is a constant c; h_T = w^K c + sum_{t<K} w^t
        c = sum(0.5**t for t in range(T - min(K, T)))
        k = min(K, T)
        expected = k * 0.5 ** (k - 1) * c + sum(t * 0.5 ** (t - 1) for t in range(1, k))
        assert float(w.grad) == pytest.approx(expected, rel=1e-14)


def _saved_bytes(run):
    """Bytes autograd saves for backward while ``run`` builds its graph."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return total[0]


def test_tbptt_memory_does_not_grow_with_T_and_bptt_memory_does():
    W, b, f, _ = _model(n=32)
    h0 = torch.zeros(4, 32, dtype=f64)
    tb = [_saved_bytes(lambda: unroll(f, h0, T, truncate=5)) for T in (10, 40)]
    bp = [_saved_bytes(lambda: unroll(f, h0, T)) for T in (10, 20, 40)]
    assert tb[0] == tb[1] > 0
    assert bp[2] - bp[1] == 2 * (bp[1] - bp[0]) > 0  # linear in T


def test_h0_gets_a_gradient_only_when_the_graph_reaches_it():
    w = torch.tensor(0.5, dtype=f64, requires_grad=True)
    h0 = torch.tensor(1.0, dtype=f64, requires_grad=True)
    unroll(lambda h: w * h, h0, 3).backward()
    assert float(h0.grad) == pytest.approx(0.125)
    h0.grad = None
    unroll(lambda h: w * h, h0, 3, truncate=2).backward()
    assert h0.grad is None


def test_random_truncation_is_unbiased_for_the_bptt_gradient():
    """Tallec & Ollivier: the mean of many draws is the T-step BPTT gradient (5 sigma), h0 included."""
    W, b, f, target = _model(q=0.9, seed=3)
    T = 6
    h0 = (0.5 * torch.ones(5, dtype=f64)).requires_grad_()
    params = [W, b, h0]
    loss = lambda h: ((h - target) ** 2).sum()  # noqa: E731
    exact = _grad(params, loss(unroll(f, h0, T)))
    N = 1500
    samples = [
        _grad(params, loss(unroll(f, h0, T, truncate=RandomTruncation(continue_prob=0.6, min_steps=1, seed=s))))
        for s in range(N)
    ]
    for i, ex in enumerate(exact):
        # h0.grad is None when the draw stops short of it: a zero contribution
        draws = np.stack([np.zeros(ex.shape) if s[i] is None else s[i].numpy() for s in samples])
        mean, std = draws.mean(0), draws.std(0, ddof=1)
        assert np.all(np.abs(mean - ex.numpy()) <= 5 * std / np.sqrt(N) + 1e-12), i
    # power: the head alone (TBPTT through 1 step) is biased beyond the bound
    tb = _grad(params[:2], loss(unroll(f, h0, T, truncate=1)))
    draws = np.stack([s[0].numpy() for s in samples])
    assert np.any(np.abs(tb[0].numpy() - exact[0].numpy()) > 5 * draws.std(0, ddof=1) / np.sqrt(N))


def test_random_truncation_draws_and_weights():
    # continue_prob = 1 is BPTT
    W, b, f, target = _model(seed=4)
    h0 = torch.zeros(5, dtype=f64)
    loss = lambda h: ((h - target) ** 2).sum()  # noqa: E731
    a = _grad([W, b], loss(unroll(f, h0, 8)))
    c = _grad([W, b], loss(unroll(f, h0, 8, truncate=RandomTruncation(continue_prob=1.0))))
    for x, y in zip(a, c):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # a scalar recurrence with a known draw: weights alpha^-(s - K0 + 1) past the head
    alpha, k0 = 0.5, 2
    seed = next(s for s in range(100) if RandomTruncation(continue_prob=alpha, min_steps=k0, seed=s).draw() == 4)
    w = torch.tensor(0.5, dtype=f64, requires_grad=True)
    unroll(lambda h: w * h + 1.0, torch.zeros((), dtype=f64), 10,
           truncate=RandomTruncation(continue_prob=alpha, min_steps=k0, seed=seed)).backward()
    # d h_T / d w = sum_s w^s h_{T-1-s}: terms s = 0, 1 weight 1; s = 2, 3 weights 2 and 4
    hs = [0.0]
    for _ in range(10):
        hs.append(0.5 * hs[-1] + 1.0)
    expected = sum(c * 0.5**s * hs[9 - s] for s, c in zip(range(4), (1, 1, 2, 4)))
    assert float(w.grad) == pytest.approx(expected, rel=1e-14)
    # the depth is K0 + geometric
    depths = np.array([RandomTruncation(continue_prob=0.8, min_steps=3, seed=s).draw() for s in range(4000)])
    assert depths.min() == 3
    assert abs(depths.mean() - (3 + 0.8 / 0.2)) < 5 * np.sqrt(0.8) / 0.2 / np.sqrt(4000)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(continue_prob=0.0), ValueError, r"continue_prob must lie in \(0, 1\]"),
        (dict(continue_prob=2), ValueError, "continue_prob"),
        (dict(min_steps=0), ValueError, "min_steps must be at least 1"),
        (dict(min_steps=1.5), TypeError, "min_steps must be an int"),
        (dict(seed=-1), TypeError, "seed"),
    ],
)
def test_random_truncation_settings_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        RandomTruncation(**kwargs)


def test_bad_input_names_the_problem():
    f = lambda h: 0.5 * h  # noqa: E731
    h0 = torch.zeros(3, dtype=f64)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        unroll(f, h0, 0)
    with pytest.raises(TypeError, match="steps must be an int"):
        unroll(f, h0, 2.0)
    with pytest.raises(ValueError, match="truncate must be at least 1"):
        unroll(f, h0, 3, truncate=0)
    with pytest.raises(TypeError, match="truncate must be None"):
        unroll(f, h0, 3, truncate="last")
    with pytest.raises(TypeError, match="h0 must be a torch.Tensor"):
        unroll(f, [0.0], 3)
    with pytest.raises(TypeError, match="f must be callable"):
        unroll(None, h0, 3)
    with pytest.raises(ValueError, match=r"f returned a tensor of shape \(2,\)"):
        unroll(lambda h: h[:2], h0, 3)
