"""Issue 21: the cost of each Jacobian regulariser against its limit, the products it must spend.

A tanh layer ``f(h) = tanh(W h + x)`` on a batch of 8 states of ``n`` entries (float32, CPU), the
samples independent (``batch_axis=0``). For each regulariser, one evaluation and the backward of
its value, timed in one process against one VJP of ``f`` (the unit of the products):

- ``track_products``: the VJPs + JVPs the evaluation spent (its docstring's count);
- ``track_cost_in_vjps``: the time of evaluation and backward, in VJP times;
- ``time_penalty``: that time in seconds.

The entry-based penalties (column, Gershgorin) need one VJP per entry of a sample (``n``), batched
by ``vmap`` into one backward; Hutchinson's Frobenius estimate needs its probes (2 here); the Lanczos
estimate of ``lambda_min`` (no ``batch_axis``: the whole batch is one system of ``8 n`` entries) 2
products a step (20 steps) and one JVP with a graph.
"""

from ._base import best_time

NAMES = ["frobenius", "column", "gershgorin", "lambda_min"]
SIZES = [64, 256]
BATCH = 8


def _setup(n):
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise NotImplementedError("torch is not installed")
    import torch

    g = torch.Generator().manual_seed(0)
    W = (0.9 / n**0.5 * torch.randn(n, n, generator=g)).requires_grad_()
    x = torch.randn(BATCH, n, generator=g)
    h = torch.randn(BATCH, n, generator=g)
    return W, (lambda v: torch.tanh(v @ W.T + x)), h


def _evaluate(name, f, h):
    from rbpsolve.adapters import torch as adapter

    if name == "frobenius":
        return adapter.jacobian_frobenius(f, h, probes=2, batch_axis=0)
    if name == "column":
        return adapter.column_penalty(f, h, eta=0.5, batch_axis=0)
    if name == "gershgorin":
        return adapter.gershgorin_penalty(f, h, delta=0.5, batch_axis=0)
    return adapter.smallest_eigenvalue_penalty(f, h, delta=0.5, steps=20, rtol=1e-12)


class RegulariserCost:
    params = (NAMES, SIZES)
    param_names = ["regulariser", "n"]
    timeout = 300

    def setup(self, name, n):
        self.W, self.f, self.h = _setup(n)
        self._run(name)  # warm-up

    def _run(self, name):
        import torch

        p = _evaluate(name, self.f, self.h)
        torch.autograd.grad(p.value, self.W)
        return p

    def _vjp(self):
        import torch

        hh = self.h.detach().requires_grad_()
        out = self.f(hh)
        torch.autograd.grad(out, hh, torch.ones_like(out))

    def time_penalty(self, name, n):
        self._run(name)

    def track_products(self, name, n):
        p = _evaluate(name, self.f, self.h)
        return p.num_vjp + p.num_jvp

    track_products.unit = "products"

    def track_cost_in_vjps(self, name, n):
        penalty = best_time(lambda: self._run(name), lambda: None, repeat=5)
        vjp = best_time(self._vjp, lambda: None, repeat=5)
        return penalty / vjp

    track_cost_in_vjps.unit = "VJP times"
