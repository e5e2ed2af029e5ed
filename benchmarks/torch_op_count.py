"""The floor under a step's overhead on torch CPU at small sizes (issue 14).

Counts the tensor operations each solver runs a step besides its products (attribute
reads such as ``.shape`` left out), in a 50-step fixed budget on a float64 state of 64
entries with a dense J (``||J||_2 = 0.9``), and times one such operation (``a + b`` on two
64-entry tensors). Their product is what the step must cost on torch's CPU dispatch, with
no Python around it at all.

Run from the repository root::

    python benchmarks/torch_op_count.py
"""

from __future__ import annotations

import collections
import time

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

import rbpsolve

N, STEPS = 64, 50


class _Operations(TorchFunctionMode):
    """Counts torch functions and methods called, attribute reads excepted."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__qualname__", str(func))
        if not name.endswith("__get__"):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def main():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((N, N))
    W *= 0.9 / np.linalg.norm(W, 2)
    Wt, g = torch.tensor(W), torch.tensor(rng.standard_normal(N))
    J = rbpsolve.JacobianOperator(vjp=lambda u: Wt.T @ u, jvp=lambda v: Wt @ v, like=g)
    a, b = torch.randn(N, dtype=torch.float64), torch.randn(N, dtype=torch.float64)
    for _ in range(2000):
        a + b
    start = time.perf_counter()
    for _ in range(20000):
        a + b
    op_us = (time.perf_counter() - start) / 20000 * 1e6
    print(f"one torch operation on {N} float64 entries (a + b): {op_us:.2f} us\n")
    print("| solver | operations a step besides the products | floor: operations x one operation (us/step) |")
    print("|---|---|---|")
    budget = dict(max_steps=STEPS, rtol=0.0, atol=0.0)
    for name, solver in [("FixedPoint", rbpsolve.FixedPoint(**budget)), ("Neumann", rbpsolve.Neumann(max_steps=STEPS)),
                         ("CGNE", rbpsolve.CGNE(**budget)), ("LSQR", rbpsolve.LSQR(**budget)),
                         ("GMRES", rbpsolve.GMRES(restart=STEPS, **budget))]:
        mode = _Operations()
        with mode:
            result = rbpsolve.solve_adjoint(J, g, solver)
        others = (sum(mode.counts.values()) - result.num_vjp - result.num_jvp) / result.num_steps
        print(f"| {name} | {others:.1f} | {others * op_us:.0f} |")


if __name__ == "__main__":
    main()
