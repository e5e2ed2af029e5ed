"""One training step of a Hopfield-like network by BPTT, TBPTT or RBP (``fixed_point`` +
Neumann-RBP), and the peak of torch's allocator over it.

Shared by the asv suite (``bench_training.py``, ``bench_peers.py``) and the standalone
script ``benchmarks/train_step_memory.py``. The model: 784 input + 1024 hidden + 784 output
units, fully connected, batch 10, float32,

    h_{t+1} = F(h_t) = (1 - tau) h_t + tau * tanh(h_t W^T + b + P x),

where ``P x`` clamps the image onto the input units as a current; the loss is the mean
squared error between ``tanh`` of the output units and ``x``.
"""

from __future__ import annotations

import json
import os
import tempfile

N_IN, N_HID, N_OUT = 784, 1024, 784
TAU = 0.2  # the Euler step of the continuous dynamics: contraction about 1 - tau (1 - rho(DW))


def build(n_in=N_IN, n_hid=N_HID, n_out=N_OUT, batch=10, seed=0):
    import torch

    n = n_in + n_hid + n_out
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=gen).mul_(0.9 / n**0.5).requires_grad_()
    b = torch.zeros(n).requires_grad_()
    x = torch.rand(batch, n_in, generator=gen)
    current = torch.zeros(batch, n)
    current[:, :n_in] = x
    opt = torch.optim.SGD([W, b], lr=1e-3)

    def make_f():
        drive = b + current

        def F(h):
            return (1 - TAU) * h + TAU * torch.tanh(h @ W.T + drive)

        return F

    def loss(h):
        return ((torch.tanh(h[:, -n_out:]) - x) ** 2).mean()

    h0 = torch.zeros(batch, n)
    return dict(W=W, b=b, current=current, opt=opt, make_f=make_f, loss=loss, h0=h0)


def train_step(model, method, T, K):
    import rbpsolve
    from rbpsolve.adapters.torch import fixed_point, unroll

    model["opt"].zero_grad(set_to_none=True)
    F = model["make_f"]()
    info = {}
    if method == "bptt":
        h = unroll(F, model["h0"], T)
    elif method == "tbptt":
        h = unroll(F, model["h0"], T, truncate=K + 1)
    elif method == "rbp":
        h, diag = fixed_point(
            F,
            model["h0"],
            forward=rbpsolve.Picard(max_steps=T, rtol=0.0, atol=0.0),
            backward=rbpsolve.Neumann(max_steps=K),
        )
        info["diag"] = diag
    else:
        raise ValueError(method)
    L = model["loss"](h)
    L.backward()
    model["opt"].step()
    if "diag" in info:
        d = info.pop("diag")
        info.update(
            forward_steps=d.forward.num_steps,
            forward_status=d.forward.status.name,
            last_step_norm=d.forward.history[-1],
            backward_status=d.backward.status.name,
            backward_vjp=d.backward.num_vjp,
        )
    info["loss"] = float(L.detach())
    return info


def warm_up(K):
    small = build(n_in=4, n_hid=8, n_out=4, batch=2)
    for method in ("bptt", "tbptt", "rbp"):
        for _ in range(2):
            train_step(small, method, 3 * K, K)


def tensor_peak(model, method, T, K):
    """Peak bytes above the starting level of torch's CPU allocator during one step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_step(model, method, T, K)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            trace = json.load(fh)
    events = sorted(
        (e for e in trace["traceEvents"] if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0),
        key=lambda e: e["ts"],
    )
    level = peak = 0
    for e in events:
        level += int(e["args"]["Bytes"])
        peak = max(peak, level)
    return peak
