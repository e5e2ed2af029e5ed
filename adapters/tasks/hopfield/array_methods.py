r"""The methods of Table 1 on the array-API Hopfield model (:mod:`.array_model`): one gradient each.

The same arithmetic as :func:`.methods.gradient` on torch, with the hand-written products: ``T``
updates from ``h_0 = x``; the loss at ``h_T``;

- ``bptt`` / ``tbptt``: ``z_T = dL/dh_T``, then for ``t = T-1, ..., T-K`` (all ``T`` for BPTT)
  ``grad += (dF(h_t)/dW_0)^T z_{t+1}`` and ``z_t = J(h_t)^T z_{t+1}``;
- the RBP family: the table's solver (:func:`rbpsolve.adapters.tasks.methods.solver`) on
  ``(I - J^T) z = dL/dh_T`` with ``J`` at ``h_{T-1}``, then ``grad = (dF(h_{T-1})/dW_0)^T z`` (Eq. 6).
  ``rbp`` starts at ``z_0 ~ U(0, 1)`` (drawn from ``rng``, a ``numpy.random.Generator``).
"""

from __future__ import annotations

import dataclasses

import array_api_compat
import numpy as np

import rbpsolve

from .. import methods as _table

__all__ = ["ArrayStep", "array_gradient"]


@dataclasses.dataclass
class ArrayStep:
    """One training step's loss, gradient (an array of the model's namespace) and backward record."""

    loss: float
    grad: object
    status: str  # the backward Status name, or "unrolled"
    num_vjp: int = 0
    num_jvp: int = 0


def array_gradient(model, image, method: str, K: int, *, steps: int = 50, rng=None) -> ArrayStep:
    """``dL/dW_0`` of the loss at ``h_T`` by ``method`` with truncation ``K``."""
    method = _table.canonical(method, _table.PAPER_METHODS + _table.EXTRA_METHODS)
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"truncation K must be an int >= 1; got {K!r}")
    x = model.clamp(image)
    unrolled = _table.METHODS[method].unrolled
    keep = steps if method == "bptt" else min(K, steps) if unrolled else 1
    states, h = [], x
    for t in range(steps):  # keep the states the backward reads: the last `keep` before h_T
        if t >= steps - keep:
            states.append(h)
        h = model.update(h, x)
    g = model.loss_grad(h, image)
    loss = model.loss(h, image)
    if unrolled:
        z, grad = g, None
        for h_t in reversed(states):
            share = model.param_vjp(h_t, z)
            grad = share if grad is None else grad + share
            z = model.vjp(h_t, z)
        return ArrayStep(loss, grad, "unrolled", len(states), 0)
    h_prev = states[-1]
    solver = _solver(method, K, rng)
    x0 = None
    if method == "rbp":  # the paper's code starts RBP's iteration at z_0 ~ U(0, 1)
        rng = np.random.default_rng(0) if rng is None else rng
        xp = array_api_compat.array_namespace(g)
        x0 = xp.asarray(rng.random(g.shape[0]), dtype=g.dtype, device=array_api_compat.device(g))
    result = rbpsolve.solve_adjoint(model.operator(h_prev), g, solver, x0=x0, throw=False)
    return ArrayStep(loss, model.param_vjp(h_prev, result.x), result.status.name, result.num_vjp, result.num_jvp)


def _solver(method, K, rng):
    if method == "randomized_neumann":
        seed = int((np.random.default_rng(0) if rng is None else rng).integers(0, 2**31 - 1))
        return _table.solver(method, K, seed=seed)
    return _table.solver(method, K)
