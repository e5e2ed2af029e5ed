"""Products with ``J = df/dh`` that are themselves differentiable: the raw material of the
Jacobian regularisers.

A regulariser ``R(J)`` added to a loss needs ``dR/dw`` for every parameter ``w`` of ``f``,
which differentiates *through* the products: ``J^T u`` is built with ``create_graph=True``
(a second-order graph of ``f``), ``J v`` by differentiating that VJP once more with
respect to ``u`` (the double-backward trick, also ``create_graph=True``).
"""

from __future__ import annotations

import torch

from .._argument_checks import check_entry_budget as _check_size
from ._jacobian import _check_state, check_output

__all__ = ["DifferentiableJacobian", "check_batch_axis_of", "dense_blocks"]


class DifferentiableJacobian:
    """``J = df/dh`` at ``h`` with products that carry a graph back to ``f``'s parameters.

    ``f(h)`` is evaluated once. If ``h`` itself requires grad (the output of
    :func:`rbpsolve.adapters.torch.fixed_point`, say), the products also depend on ``h``
    through its own graph, so a regulariser's gradient reaches ``h*``'s dependence on the
    parameters too: through ``fixed_point``'s backward, one more adjoint solve. A detached
    ``h`` ignores that dependence (torchdeq's Jacobian penalty does the same).

    ``num_vjp`` and ``num_jvp`` count the products made (a VJP of ``k`` batched probes
    counts ``k``).
    """

    def __init__(self, f, h):
        if not callable(f):
            raise TypeError(f"f must be callable, a map h -> f(h); got {type(f).__name__}")
        space = _check_state(h, "h")
        self.h = h if h.requires_grad else h.detach().requires_grad_()
        with torch.enable_grad():
            self.out = f(self.h)
        check_output(self.out, space, "h")
        self.num_vjp = self.num_jvp = 0
        self._dual = None

    def vjp(self, u, *, create_graph: bool = True):
        """``J^T u``; with a graph unless ``create_graph=False``."""
        self.num_vjp += 1
        return self._grad(u, create_graph=create_graph, batched=False)

    def vjps(self, probes):
        """``J^T u_i`` for each ``u_i = probes[i]``, one batched backward (``vmap``) where
        autograd allows it, else one backward a probe; with a graph."""
        self.num_vjp += probes.shape[0]
        try:
            return self._grad(probes, create_graph=True, batched=True)
        except (RuntimeError, NotImplementedError):  # an op without a batching rule
            return torch.stack([self._grad(u, create_graph=True, batched=False) for u in probes])

    def jvp(self, v, *, create_graph: bool = True):
        """``J v`` by double backward: ``d/du (J^T u) . v``, linear in ``u``; with a graph
        unless ``create_graph=False``."""
        self.num_jvp += 1
        if self._dual is None:
            u0 = torch.zeros_like(self.out, requires_grad=True)
            with torch.enable_grad():
                (w,) = torch.autograd.grad(self.out, self.h, u0, create_graph=True, allow_unused=True,
                                           materialize_grads=True)
            self._dual = (u0, w)
        u0, w = self._dual
        if not w.requires_grad:  # f is affine in h with no parameter dependence through u: J v is 0
            return torch.zeros_like(self.h)
        (jv,) = torch.autograd.grad(w, u0, v, retain_graph=True, create_graph=create_graph, allow_unused=True,
                                    materialize_grads=True)
        return jv

    def _grad(self, u, *, create_graph: bool, batched: bool):
        if not self.out.requires_grad:  # f does not depend on h (nor on anything with a graph)
            return torch.zeros_like(u)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.out, self.h, u, retain_graph=True, create_graph=create_graph,
                                       allow_unused=True, materialize_grads=True, is_grads_batched=batched)
        return g


def check_batch_axis_of(h, batch_axis):
    """``batch_axis`` as a non-negative int (or None), checked against ``h``'s shape."""
    if batch_axis is None:
        return None
    if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
        raise TypeError(f"batch_axis must be an int or None; got {batch_axis!r}")
    if not -h.ndim <= batch_axis < h.ndim:
        raise ValueError(f"batch_axis={batch_axis} is out of range for a state of shape {tuple(h.shape)}")
    return batch_axis % h.ndim


def dense_blocks(jac: DifferentiableJacobian, batch_axis, max_size: int):
    """``J`` as a dense, differentiable matrix: ``(n, n)``, or ``(B, m, m)`` blocks of a
    per-sample (block-diagonal) Jacobian with ``batch_axis``.

    Row ``i`` of ``J`` is ``J^T e_i``: ``n`` VJPs; with ``batch_axis`` one probe ``e_i`` in
    every sample at once gives row ``i`` of every block, so ``m`` VJPs (the sample's
    size) whatever the batch. Refuses states past ``max_size`` entries a block, naming
    the cost.
    """
    h = jac.h
    if batch_axis is None:
        n = h.numel()
        _check_size(n, max_size, "state")
        eye = torch.eye(n, dtype=h.dtype, device=h.device).reshape((n,) + tuple(h.shape))
        return jac.vjps(eye).reshape(n, n)
    moved = h.movedim(batch_axis, 0)
    B, m = moved.shape[0], moved[0].numel()
    _check_size(m, max_size, "sample")
    probes = torch.eye(m, dtype=h.dtype, device=h.device).reshape((m, 1) + tuple(moved.shape[1:]))
    probes = probes.expand((m,) + tuple(moved.shape)).movedim(1, batch_axis + 1)
    rows = jac.vjps(probes.contiguous())  # (m, *h.shape): rows[i] holds row i of every block
    rows = rows.movedim(batch_axis + 1, 1).reshape(m, B, m)
    return rows.transpose(0, 1)  # (B, m, m): blocks[b, i, :] = row i of J_b

