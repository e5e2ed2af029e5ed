r"""One meta step: train ``T`` steps, the meta-loss, and its gradient with respect to ``theta``.

Methods, as in the paper's code (``model/hypergrad_net.py`` and ``model/rbp.py`` of
lrjconan/RBP, followed exactly unless said otherwise):

- ``bptt``: back-propagation through all ``T`` steps (second order: every step's gradient
  is taken with ``create_graph=True``), via :func:`rbpsolve.adapters.torch.unroll`;
- ``tbptt``: the graph of the last ``K`` steps only (``unroll(..., truncate=K)``; the code
  detaches the state after step ``T - K``);
- ``neumann_rbp``, ``rbp``, ``cg_rbp``, ``gmres`` (the older ``neumann``, ``cg`` are
  accepted): recurrent back-propagation at the final state.
  Steps ``1 .. T-1`` run without a graph; the last step ``F_T`` is taken on the *whole*
  training set (the code's ``_update(model, momentum, train_data, train_label)`` at
  ``ii == T - 1``: the average of the step over all mini-batches, which is how the
  meta-gradient is averaged over mini-batches at the end of a meta step); with
  ``J = dF_T/dh`` at ``h_{T-1}`` (Hessian-vector products, from
  :func:`rbpsolve.adapters.torch.jacobian_operator`) and ``g = dL/dh_T``,

  .. math:: z = \text{solve}\,[(I - J^\top) z = g], \qquad
            \frac{dL}{d\theta} \approx z^\top \frac{\partial F_T}{\partial \theta},

  with the solvers of the shared table :mod:`rbpsolve.adapters.tasks.methods`, which this
  task follows without departure: ``Neumann(max_steps=K)`` (Neumann-RBP, Algorithm 3:
  ``z = sum_{k<=K} (J^T)^k g``, ``K`` VJPs), ``FixedPoint(max_steps=K)`` from a uniform
  random ``z`` (the original RBP, Algorithm 1, as the code starts it), ``CGNE(max_steps=K)``
  (CG-RBP) or ``GMRES(max_steps=K)``. No tolerance and no divergence test: exactly ``K``
  products, as in the code.

The meta-loss is the cross-entropy of the network after ``T`` steps on the meta set: the
whole training set in the paper's code (``meta_train_loss``; the code notes that the
validation set could be used instead), or the validation set (``meta_objective="val"``).
Initialisation and mini-batch order are drawn from ``seed`` at every meta step, so they
are the same at every meta step (the code calls ``torch.manual_seed(seed)`` in each forward).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch

import rbpsolve
from rbpsolve.adapters.torch import jacobian_operator, unroll

from .. import methods as _table
from .sgd import MLP, TrainingStep, init_state

__all__ = ["METHODS", "RBP_METHODS", "Data", "MetaStep", "adjoint_solver", "batch_schedule", "meta_step"]

UNROLL_METHODS = ("bptt", "tbptt")
RBP_METHODS = ("neumann_rbp", "rbp", "cg_rbp", "gmres")
METHODS = UNROLL_METHODS + RBP_METHODS


@dataclass
class Data:
    """Training set and meta set (inputs ``(N, 784)`` float, labels ``(N,)`` int64), on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_meta: torch.Tensor
    y_meta: torch.Tensor

    def to(self, device):
        return Data(*(t.to(device) for t in (self.x_train, self.y_train, self.x_meta, self.y_meta)))


@dataclass
class MetaStep:
    """What one meta step returns.

    Attributes
    ----------
    meta_loss : float
        Cross-entropy on the meta set after ``T`` steps.
    grad : torch.Tensor
        ``dL/dtheta`` (exact for ``bptt``, approximate otherwise), shape ``(2, L)``.
    train_losses : list of float
        The loss of every training step on its batch (the last one, for the RBP methods,
        on the whole training set).
    seconds : float
        Wall time of the meta step.
    solve : dict
        For the RBP methods: the adjoint solve's ``status``, ``num_vjp``, ``num_jvp``.
    """

    meta_loss: float
    grad: torch.Tensor
    train_losses: list
    seconds: float
    solve: dict = field(default_factory=dict)


def batch_schedule(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Index tensors of the ``steps`` mini-batches: a fresh permutation every epoch (the code's schedule)."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, {n}] (the training set size); got {batch_size}")
    per_epoch = math.ceil(n / batch_size)
    out = []
    for i in range(steps):
        if i % per_epoch == 0:
            perm = torch.randperm(n, generator=generator)
        start = (i * batch_size) % n
        out.append(perm[start : min(n, start + batch_size)])
    return out


def adjoint_solver(method: str, K: int):
    """The rbpsolve solver of an RBP method with the truncation ``K`` (the shared table's: exactly ``K`` iterations)."""
    return _table.solver(_table.canonical(method, RBP_METHODS), K)


def _check(method, steps, truncate):
    method = _table.canonical(method, METHODS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps (training steps T) must be a positive int; got {steps!r}")
    if method != "bptt" and (isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 1):
        raise ValueError(f"method {method!r} needs truncate K, a positive int; got {truncate!r}")
    if method in RBP_METHODS and steps < 2:
        raise ValueError(f"method {method!r} needs at least 2 training steps (it differentiates the last one); got {steps}")
    return method


def meta_step(
    mlp: MLP,
    theta: torch.Tensor,
    data: Data,
    *,
    method: str,
    steps: int,
    truncate: int | None = None,
    batch_size: int = 200,
    seed: int = 1234,
    forward_graph: bool = False,
    start=None,
) -> MetaStep:
    """Train ``steps`` steps from the seeded start with hyperparameters ``theta``; meta-loss and its gradient.

    Parameters
    ----------
    mlp : MLP
    theta : torch.Tensor
        ``(2, L)`` hyperparameters; need not require grad (a detached copy is used).
    data : Data
    method : {"bptt", "tbptt", "neumann_rbp", "rbp", "cg_rbp", "gmres"}
        Or an alias (``neumann``, ``cg``).
    steps : int
        ``T``, training steps.
    truncate : int
        ``K``: steps in TBPTT's graph, or iterations of the adjoint solver.
    batch_size : int
        Mini-batch size (200 in the paper).
    seed : int
        Seed of the initial weights and of the mini-batch order (the same every meta step).
    forward_graph : bool
        RBP methods only: record the graph through steps ``1 .. T-2`` anyway, as the
        paper's code does (it builds every step with ``create_graph=True`` and only
        detaches at ``T - 1``); for measuring its memory (Table 3), never needed otherwise.
    start : (numpy.ndarray, list of numpy.ndarray), optional
        ``(h_0, schedule)`` instead of the seeded torch draws: the array-API path's
        (:func:`.array_hypergrad.numpy_start`), to compare the two step by step.
    """
    method = _check(method, steps, truncate)
    t0 = time.perf_counter()
    theta = theta.detach().clone().requires_grad_()
    gen = torch.Generator().manual_seed(seed)
    if start is None:
        h0 = init_state(mlp, gen, dtype=theta.dtype, device=theta.device)
        schedule = batch_schedule(data.x_train.shape[0], batch_size, steps, gen)
    else:
        h0 = torch.as_tensor(start[0], dtype=theta.dtype, device=theta.device)
        schedule = [torch.as_tensor(idx, dtype=torch.int64) for idx in start[1]]
    losses = []
    count = iter(range(steps))

    def f(h):
        idx = schedule[next(count)].to(data.x_train.device)
        step = TrainingStep(mlp, theta, data.x_train[idx], data.y_train[idx])
        out = step(h)
        losses.append(step.last_loss)
        return out

    P = mlp.num_params
    solve = {}
    if method in UNROLL_METHODS:
        hT = unroll(f, h0, steps, truncate=None if method == "bptt" else truncate)
        meta = mlp.loss(hT[:P], data.x_meta, data.y_meta)
        (grad,) = torch.autograd.grad(meta, theta)
    else:
        h = h0
        with contextlib.nullcontext() if forward_graph else torch.no_grad():
            for _ in range(steps - 1):
                h = f(h)
        h_prev = h.detach()
        last = TrainingStep(mlp, theta, data.x_train, data.y_train)
        kept = []

        def F(h):  # the last step; keeps its first output, whose graph also reaches theta
            out = last(h)
            kept.append(out)
            return out

        J = jacobian_operator(F, h_prev)
        hT = kept[0]
        losses.append(last.last_loss)
        with torch.enable_grad():
            wT = hT.detach()[:P].requires_grad_()
            meta = mlp.loss(wT, data.x_meta, data.y_meta)
            (gw,) = torch.autograd.grad(meta, wT)
        g = torch.cat([gw, torch.zeros_like(gw)])  # L does not depend on the velocities
        x0 = None
        if method == "rbp":  # the code starts RBP's iteration at z ~ U(0, 1)
            x0 = torch.rand(g.shape, generator=gen, dtype=g.dtype).to(g.device)
        res = rbpsolve.solve_adjoint(J, g, adjoint_solver(method, truncate), x0=x0, throw=False)
        (grad,) = torch.autograd.grad(hT, theta, res.x)
        solve = {"status": res.status.name, "num_vjp": int(res.num_vjp), "num_jvp": int(res.num_jvp)}
        del J, kept, hT
    return MetaStep(
        meta_loss=float(meta.detach()),
        grad=grad.detach(),
        train_losses=[float(v) for v in losses],
        seconds=time.perf_counter() - t0,
        solve=solve,
    )
