r"""The citation task's GRU graph network with its nodes partitioned over processes (issue 20).

Run it with ``torchrun --nproc_per_node 2 -m rbpsolve.adapters.tasks.citation.sharded
--dataset cora --steps 5 --method neumann --K 20``; without ``WORLD_SIZE`` in the environment it
runs as one process, the reference.

The nodes are renumbered (:func:`rbpsolve.adapters.torch.node_order`) and split into
contiguous blocks, so rank ``r`` holds the block ``H_r`` of the state ``H`` (``N x d``). The
propagation step of :mod:`.model`, ``h_v' = GRUCell(sum_{u in N(v)} h_u, h_v)``, then runs at
rank ``r``'s nodes on ``[H_r; E_r H]``, its own rows and its halo (the in-neighbours owned
elsewhere, :func:`rbpsolve.adapters.torch.halo_exchange`):

.. math::

    F_r(H) = \mathrm{GRUCell}(A_r [H_r; E_r H], H_r), \qquad F(H) = (F_0(H), \dots, F_{P-1}(H)),

the same map ``F`` as one process computes, row for row. The parameters ``w`` are replicated.
With the loss ``L = sum_r L_r(H_r)`` (each rank's training nodes, divided by the global count)
the adjoint system ``(I - J^T) z = g`` of ``J = dF/dH`` is solved with ``z`` and ``g`` sharded
like ``H``: a VJP ``J^T z`` is each rank's backward through ``F_r`` with its halo rows'
gradients sent back to their owners (the transposed exchange). Then

.. math::

    \frac{dL}{dw} = \sum_r \Big( z_r^T \frac{\partial F_r}{\partial w}
                    + \frac{\partial L_r}{\partial w} \Big),

each rank's term computed by autograd from its local graph and the sum taken by one
``all_reduce`` after the backward. The solvers' inner products and norms are sums over ranks
too; an :class:`rbpsolve.Sharding` (:func:`rbpsolve.adapters.torch.distributed.sharding`)
completes them in its all-reduces (see :func:`solve_state`).

**Agreement with one process.** The ranks sum each node's messages and the gradient in
another order than one process does, so the two agree to rounding amplified by the problem's
own sensitivity. In float64 on Cora (Kaiming initialisation, Neumann, first step) the
relative gradient difference was 1.8e-14 at ``T = 10``, 1.4e-13 at ``T = 20``, 2.5e-12 at
``T = 30``, 4.6e-10 at ``T = 50`` and 4e-4 at ``T = 100``, tracking how far a relative
parameter change of 1e-14 moves ``h^T`` within one process (6e-13, 9e-12, 1e-9 and 6e-4 at
``T = 20, 30, 50, 100``): at the task's ``T = 100`` the initial map is expanding and the
forward itself is chaotic, so 2-rank and 1-process training runs part after the first step in
either precision, as two 1-process runs with different summation orders would.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import rbpsolve
from rbpsolve.adapters.torch import Partition, fixed_point, halo_exchange, node_order
from rbpsolve.adapters.torch.distributed import sharding as make_sharding

from .. import _cli
from ..data import DataFileError
from .config import PCA_DIMS, Config, Prepared, prepare
from .features import random_split
from .method_table import backward_solver
from .model import GRUGraphNet

__all__ = ["ShardedGRUGraphNet", "Local", "synthetic", "local_problem", "solve_state", "train_step", "main"]

PROG = "python -m rbpsolve.adapters.tasks.citation.sharded"
METHODS = {"neumann": "neumann_rbp", "gmres": "gmres"}
STATUSES = tuple(rbpsolve.Status.__members__)


class ShardedGRUGraphNet(torch.nn.Module):
    """The propagation step of a :class:`.model.GRUGraphNet` at one rank's nodes.

    Parameters
    ----------
    model : GRUGraphNet
        Its ``gru`` and ``out`` modules are shared, not copied: the parameters are the
        model's (the same on every rank when every rank seeds the same).
    plan : rbpsolve.adapters.torch.HaloPlan
        This rank's part of the partition.
    group : ProcessGroup, optional
    """

    def __init__(self, model: GRUGraphNet, plan, group=None):
        super().__init__()
        self.gru, self.out, self.plan, self.group = model.gru, model.out, plan, group
        self.register_buffer("src", plan.src.clone())
        self.register_buffer("dst", plan.dst.clone())

    def step(self, h: torch.Tensor) -> torch.Tensor:
        """``F_r``: the local rows of one propagation, from the local rows and the halo."""
        ext = torch.cat([h, halo_exchange(h, self.plan, self.group)])
        msg = torch.zeros_like(h).index_add_(0, self.dst, ext.index_select(0, self.src))
        return self.gru(msg, h)


@dataclasses.dataclass(eq=False)
class Local:
    """What one rank trains on: its step, its initial states and its share of the labels.

    ``weight`` is ``1 / n_train`` at the rank's training rows and 0 elsewhere, so that
    ``sum(weight * cross_entropy)`` is the rank's share of the global mean loss and every
    rank's loss depends on its whole state (a rank without training nodes still takes part
    in the backward's exchanges).
    """

    step: object
    h0: torch.Tensor
    labels: torch.Tensor
    weight: torch.Tensor
    train_rows: torch.Tensor
    val_rows: torch.Tensor
    plan: object = None
    sharding: object = None
    group: object = None
    cut_edges: int = 0


def synthetic(num_nodes: int = 40, dim: int = 8, num_classes: int = 3, seed: int = 0) -> Prepared:
    """A small random graph for tests and CI: a ring plus ``num_nodes`` random chords, both
    directions, Gaussian features and random labels (every node labelled)."""
    rng = np.random.default_rng(seed)
    ring = np.stack([np.arange(num_nodes), (np.arange(num_nodes) + 1) % num_nodes])
    chords = rng.integers(0, num_nodes, size=(2, num_nodes))
    pairs = np.concatenate([ring, chords, ring[::-1], chords[::-1]], axis=1)
    pairs = pairs[:, pairs[0] != pairs[1]]
    edges = np.unique(pairs[0] * num_nodes + pairs[1])
    edges = np.stack([edges // num_nodes, edges % num_nodes])
    x = (rng.standard_normal((num_nodes, dim)) / math.sqrt(dim)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=num_nodes).astype(np.int64)
    return Prepared("synthetic", x, labels, edges, np.arange(num_nodes, dtype=np.int64), num_classes)


def load(dataset: str, dim: int | None, root: str | None, seed: int) -> tuple[Prepared, tuple]:
    """The data and its (train, val) ids: Planetoid with the task's 1/49 % split, or :func:`synthetic`."""
    if dataset == "synthetic":
        data = synthetic(dim=dim or 8, seed=seed)
        return data, random_split(data.labeled_ids, seed, 0.3, 0.3)[:2]
    data = prepare(dataset, dim or PCA_DIMS[dataset], root)
    config = Config()
    return data, random_split(data.labeled_ids, seed, config.train_ratio, config.val_ratio)[:2]


def build_model(data: Prepared, seed: int, dtype) -> GRUGraphNet:
    """The model of :mod:`.model`, seeded: every rank draws the same parameters."""
    torch.manual_seed(seed)
    return GRUGraphNet(data.x.shape[1], data.num_classes, torch.as_tensor(data.edges), len(data.labels)).to(dtype)


def local_problem(data: Prepared, model: GRUGraphNet, ids, rank: int = 0, world_size: int = 1,
                  order: str = "rcm", group=None) -> Local:
    """Rank ``rank``'s :class:`Local`; ``world_size=1`` is the one-process reference, on
    :mod:`.model`'s own step and numbering (no partition, no exchange, no sharding).

    Collective for ``world_size > 1``: the :class:`rbpsolve.Sharding` is made here, once
    (one all-reduce of the block sizes), and serves every step's solves."""
    train_ids, val_ids = (np.asarray(i, dtype=np.int64) for i in ids)
    dtype = model.out.weight.dtype
    if world_size == 1:
        rows, nodes, step, plan, cut = (train_ids, val_ids), np.arange(len(data.labels)), model.step, None, 0
    else:
        partition = Partition(data.edges, len(data.labels), world_size, node_order(data.edges, len(data.labels), order))
        plan = partition.plan(rank)
        rows = (partition.local(rank, train_ids)[1], partition.local(rank, val_ids)[1])
        nodes, step, cut = plan.owned, ShardedGRUGraphNet(model, plan, group).step, partition.cut_edges
    labels = torch.as_tensor(data.labels[nodes])
    h0 = torch.as_tensor(data.x[nodes]).to(dtype)
    weight = torch.zeros(len(nodes), dtype=dtype)
    weight[torch.as_tensor(rows[0])] = 1.0 / len(train_ids)
    return Local(step=step, h0=h0, labels=labels, weight=weight, train_rows=torch.as_tensor(rows[0]),
                 val_rows=torch.as_tensor(rows[1]), plan=plan, cut_edges=cut, group=group,
                 sharding=None if plan is None else make_sharding(h0, group=group))


def solve_state(step, h0, method: str, T: int, K: int, sharding=None):
    r"""``h^T`` of ``T`` propagations with an RBP backward: the one call into rbpsolve.

    ``T - 1`` graph-free Picard steps, one with a graph (as :func:`.methods.final_state`), and
    the adjoint solve of ``method`` in the backward: ``neumann``, ``z = sum_{k<=K} (J^T)^k g``
    (Neumann-RBP); ``gmres``, ``K`` GMRES steps on ``(I - J^T) z = g``.

    Parameters
    ----------
    sharding : rbpsolve.Sharding, optional
        With ``h0`` one rank's block: both solves complete their inner products and norms
        over all ranks (GMRES's iterates depend on them; Neumann's only its history and
        status), so every rank takes the same decisions and the same number of steps.

    Returns
    -------
    h, diagnostics
    """
    forward = rbpsolve.Picard(max_steps=T - 1, rtol=0.0, atol=0.0)
    return fixed_point(step, h0, forward=forward, backward=backward_solver(METHODS[method], K), on_failure="warn",
                       sharding=sharding)


def train_step(local: Local, model: GRUGraphNet, method: str, T: int, K: int) -> dict:
    """One forward and backward; leaves the gradient, summed over ranks, in each ``.grad``.

    Returns the step's figures, global (reduced over ranks): ``loss``, ``train_acc``,
    ``val_acc`` (of the state the loss saw, before the update); the backward's ``status`` and
    ``steps`` and whether every rank had the same (``agree``); ``reductions``, the
    all-reduces of the step: the forward solve's, the adjoint solve's, and the one of the
    gradients (with the figures) that this function makes.
    """
    distributed = local.plan is not None  # the one-process reference runs even inside a process group
    sharding = local.sharding
    for p in model.parameters():
        p.grad = None
    calls = sharding.reduce.calls if sharding is not None else 0
    h, diagnostics = solve_state(local.step, local.h0, method, T, K, sharding)
    forward_calls = sharding.reduce.calls if sharding is not None else 0
    logits = model.out(h)
    per_node = F.cross_entropy(logits, local.labels.clamp(min=0), reduction="none")
    loss = (local.weight * per_node).sum()
    loss.backward()
    backward_calls = sharding.reduce.calls if sharding is not None else 0
    backward = diagnostics.backward
    code, steps = float(STATUSES.index(backward.status.name)), float(backward.num_steps)
    with torch.no_grad():
        hit = logits.argmax(dim=1) == local.labels
        counts = [hit[local.train_rows].sum(), hit[local.train_rows].numel(),
                  hit[local.val_rows].sum(), hit[local.val_rows].numel()]
        # Squares let the sum tell whether all ranks had the same status and step count.
        figures = torch.tensor([float(loss), *map(float, counts), code, code ** 2, steps, steps ** 2],
                               dtype=torch.float64)
        params = [p for p in model.parameters()]
        flat = torch.cat([p.grad.reshape(-1).to(torch.float64) for p in params] + [figures])
        if distributed:
            dist.all_reduce(flat, group=local.group)  # the one all-reduce: gradients and figures together
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].reshape(p.shape))
            offset += p.numel()
        loss_sum, tr_hit, tr_n, va_hit, va_n, c, c2, s, s2 = flat[offset:].tolist()
    ranks = dist.get_world_size(local.group) if distributed else 1
    # All-reduces of the step: the forward solve's, the adjoint solve's, and the gradients' one.
    reductions = (forward_calls - calls, backward_calls - forward_calls, int(distributed))
    return dict(loss=loss_sum, train_acc=100 * tr_hit / max(tr_n, 1), val_acc=100 * va_hit / max(va_n, 1),
                status=backward.status.name, steps=backward.num_steps,
                agree=c2 * ranks == c * c and s2 * ranks == s * s, reductions=reductions, diagnostics=diagnostics)


def _arguments(argv):
    p = argparse.ArgumentParser(prog=PROG,
                                description="Train the citation GRU graph network with its nodes split over "
                                            "torchrun's processes (one process without WORLD_SIZE).")
    p.add_argument("--dataset", default="cora", choices=("cora", "citeseer", "synthetic"))
    p.add_argument("--steps", type=int, default=5, help="training steps (full-batch SGD)")
    p.add_argument("--method", default="neumann", choices=tuple(METHODS))
    p.add_argument("--K", type=int, default=20, help="adjoint solver steps")
    p.add_argument("--T", type=int, default=Config.steps, help="propagation steps")
    p.add_argument("--data", default=None, help="data directory (default $RBPSOLVE_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=Config.lr)
    p.add_argument("--order", default="rcm", choices=("rcm", "id"), help="node ordering split into blocks")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--hidden", type=int, default=None, help="PCA dimension (default the task's)")
    args = p.parse_args(argv)
    for name in ("steps", "K", "T"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.K >= args.T:
        p.error(f"--K ({args.K}) must be below --T ({args.T})")
    return args


def main(argv=None) -> list[dict]:
    """Train for ``--steps`` steps; rank 0 prints one line a step. Returns the steps' figures."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    started = False
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group("gloo")
        started = True
    try:
        return _train(args)
    finally:
        if started:
            dist.destroy_process_group()


def _train(args) -> list[dict]:
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    say = print if rank == 0 else (lambda *a, **k: None)
    try:
        data, ids = load(args.dataset, args.hidden, args.data, args.seed)
    except DataFileError as error:
        _cli.fail(PROG, _cli.data_message(error, args.data))
    model = build_model(data, args.seed, getattr(torch, args.dtype))
    local = local_problem(data, model, ids, rank, world, args.order)
    config = Config()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    say(f"{args.dataset}: {len(data.labels)} nodes, {data.edges.shape[1]} edges on {world} process(es); "
        f"cut edges {local.cut_edges} ({100 * local.cut_edges / max(data.edges.shape[1], 1):.1f} %), "
        f"rank 0 owns {local.h0.shape[0]} nodes + {local.plan.num_halo if local.plan else 0} halo; "
        f"{args.method} K={args.K}, T={args.T}, {args.dtype}")
    records = []
    for i in range(args.steps):
        before = (local.plan.messages, local.plan.bytes) if local.plan else (0, 0)
        r = train_step(local, model, args.method, args.T, args.K)
        opt.step()
        sent = (local.plan.messages - before[0], local.plan.bytes - before[1]) if local.plan else (0, 0)
        r.update(messages=sent[0], bytes=sent[1])
        records.append(r)
        say(f"step {i + 1}: loss {r['loss']:.6f}  train {r['train_acc']:.1f} %  val {r['val_acc']:.1f} %  "
            f"backward {r['status']} {r['steps']} steps (ranks {'agree' if r['agree'] else 'DISAGREE'})  "
            f"halo {sent[0]} msgs {sent[1] / 1e6:.3f} MB (rank 0)  all-reduces {'+'.join(map(str, r['reductions']))}")
    return records


if __name__ == "__main__":
    main()
