r"""A deep-equilibrium classifier trained with data parallelism: the adjoint solve needs no
communication.

Each rank holds a replica of the model inside
:class:`torch.nn.parallel.DistributedDataParallel` (gloo, CPU) and a slice of every
mini-batch. A sample's fixed point and its adjoint system involve that sample alone, so
the solves of :func:`rbpsolve.adapters.torch.fixed_point` (``batch_axis=0``) run on the
rank's local tensors; the communication a training step needs is DDP's allreduce of the
parameter gradients (one bucket here), which this module counts with a communication hook.

Run it with ``torchrun --nproc_per_node 2 -m rbpsolve.adapters.tasks.ddp_deq --steps 20``
(or without torchrun as one process). :func:`train` is what tests call.

Notes
-----
The model maps an input ``x`` to logits ``R h* + c``, where ``h*`` is the fixed point of
the cell

.. math:: h = f(h) = \tanh(W h + U x + b),

found per sample by Picard iteration. The gradient of a loss ``L(h*)`` with respect to a
parameter ``w`` of the cell is ``z^T df/dw`` with ``z`` solving the adjoint system
``(I - J^T) z = dL/dh*``, ``J = df/dh = diag(1 - h*^2) W`` (recurrent back-propagation,
Eq. 6 of Liao et al.). The Jacobian of a batch is block diagonal, one block ``J_i`` a
sample, so with ``batch_axis=0`` every sample has its own system
``(I - J_i^T) z_i = g_i`` and its own stopping test.

Why no communication is needed inside the solve: rank ``r`` holds samples ``S_r`` of the
global batch of ``B`` samples and minimises ``L_r = (1/|S_r|) sum_{i in S_r} l_i``. Its
gradient ``dL_r/dw = (1/|S_r|) sum_{i in S_r} z_i^T df_i/dw`` needs only the ``z_i`` of its
own samples, and those need only its own ``J_i`` and ``g_i``. With equal slices DDP's
average ``(1/P) sum_r dL_r/dw`` over ``P`` ranks is ``(1/B) sum_i z_i^T df_i/dw``, the
gradient of the full batch's mean loss on one process. Under ``on_failure="mask"`` a
failed sample's ``z_i`` is set to zero on its own rank, which changes no other term.

``W`` starts at spectral norm ``w_norm`` (0.5 by default), so ``||J_i|| <= 0.5`` at the
start and both the Picard forward and a Neumann backward converge; training may grow it
(a Jacobian regulariser, :func:`rbpsolve.adapters.torch.jacobian_frobenius`, would keep
it down on long runs; a few steps do not need one).

References
----------
R. Liao et al., "Reviving and Improving Recurrent Back-Propagation", ICML 2018.
S. Bai, J. Z. Kolter and V. Koltun, "Deep Equilibrium Models", NeurIPS 2019.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

import rbpsolve
from rbpsolve.adapters.torch import fixed_point

__all__ = ["Config", "DEQClassifier", "StepRecord", "TrainRecord", "global_batch", "local_slice", "train", "main"]


@dataclasses.dataclass(frozen=True)
class Config:
    """The settings of one run; every rank must get the same.

    ``backward`` is ``"gmres"`` (``rbpsolve.GMRES(rtol=backward_rtol)``) or ``"neumann"``
    (``rbpsolve.Neumann(rtol=backward_rtol, max_steps=neumann_steps)``). ``scale_sample``,
    ``(i, factor)``, multiplies the input of sample ``i`` of every global batch by
    ``factor``: with ``factor = 0`` and ``b = 0`` that sample's fixed point is ``h* = 0``,
    where ``J_i = W``, so a Neumann backward diverges on it when ``W``'s spectral radius
    exceeds 1 (the masked-sample check of the tests).
    """

    n_in: int = 6
    n_hidden: int = 12
    n_classes: int = 3
    batch_size: int = 8
    lr: float = 0.1
    seed: int = 0
    w_norm: float = 0.5  # spectral norm of W at the start: ||J_i|| <= w_norm
    u_gain: float = 1.0  # U starts with entries of standard deviation u_gain / sqrt(n_in)
    forward_rtol: float = 1e-12
    backward: str = "gmres"
    backward_rtol: float = 1e-10
    neumann_steps: int = 200
    on_failure: str = "raise"
    scale_sample: tuple | None = None
    dtype: str = "float64"

    def __post_init__(self):
        if self.backward not in ("gmres", "neumann"):
            raise ValueError(f"backward must be 'gmres' or 'neumann'; got {self.backward!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}")

    def solvers(self):
        forward = rbpsolve.Picard(rtol=self.forward_rtol, max_steps=500)
        if self.backward == "gmres":
            return forward, rbpsolve.GMRES(rtol=self.backward_rtol)
        return forward, rbpsolve.Neumann(rtol=self.backward_rtol, max_steps=self.neumann_steps)


class DEQClassifier(torch.nn.Module):
    r"""Logits ``R h* + c`` of the fixed point ``h* = tanh(W h* + U x + b)``, one a sample.

    The parameters are drawn from ``numpy.random.default_rng(config.seed)``, so every
    rank (and a process without torch.distributed) builds the same model bit for bit.
    After each forward, ``last_diagnostics`` holds the :class:`Diagnostics` of its
    :func:`fixed_point` call (the backward Result appears after ``loss.backward()``).
    """

    def __init__(self, config: Config):
        super().__init__()
        rng = np.random.default_rng(config.seed)
        n, m, k = config.n_hidden, config.n_in, config.n_classes
        W = rng.standard_normal((n, n))
        W *= config.w_norm / np.linalg.norm(W, 2)
        dtype = getattr(torch, config.dtype)

        def param(a):
            return torch.nn.Parameter(torch.tensor(a, dtype=dtype))

        self.W = param(W)
        self.U = param(rng.standard_normal((n, m)) * config.u_gain / np.sqrt(m))
        # b = 0: an input of zero then has the fixed point h* = 0 exactly (see Config).
        self.b = param(np.zeros(n))
        self.readout = torch.nn.Linear(n, k, dtype=dtype)
        with torch.no_grad():
            self.readout.weight.copy_(torch.tensor(rng.standard_normal((k, n)) / np.sqrt(n)))
            self.readout.bias.zero_()
        self.config = config
        self.last_diagnostics = None

    def forward(self, x):
        # U x + b once, with its graph: the cell's gradients reach U and b through it,
        # and the solver's many no-grad calls of f do not recompute it.
        injection = x @ self.U.T + self.b
        W = self.W
        forward, backward = self.config.solvers()
        h, diagnostics = fixed_point(
            lambda h: torch.tanh(h @ W.T + injection), torch.zeros_like(injection),
            forward=forward, backward=backward, on_failure=self.config.on_failure, batch_axis=0,
        )
        self.last_diagnostics = diagnostics
        return self.readout(h)


def global_batch(config: Config, step: int):
    """The ``step``-th global mini-batch ``(x, y)`` as numpy arrays, the same on every rank.

    Gaussian clusters: class ``c`` has centre ``mu_c`` (drawn once from the seed) and
    ``x = mu_y + noise``. Only numpy draws it, from ``default_rng([seed, step])``, so no
    rank needs another rank's data or torch's random state.
    """
    centres = 2.0 * np.random.default_rng([config.seed, 10**6]).standard_normal((config.n_classes, config.n_in))
    rng = np.random.default_rng([config.seed, step])
    y = rng.integers(0, config.n_classes, size=config.batch_size)
    x = centres[y] + rng.standard_normal((config.batch_size, config.n_in))
    if config.scale_sample is not None:
        i, factor = config.scale_sample
        x[i] *= factor
    return x, y


def local_slice(rank: int, world_size: int, batch_size: int) -> slice:
    """The rows of the global batch that ``rank`` trains on: equal contiguous slices.

    Equal slices are what make DDP's average of the ranks' mean losses the mean loss of
    the whole batch, so an uneven split raises.
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {world_size} ranks; "
                         f"pick a multiple of {world_size}")
    per = batch_size // world_size
    return slice(rank * per, (rank + 1) * per)


@dataclasses.dataclass
class _CommCount:
    """What the communication hook saw: gradient buckets allreduced and their bytes."""

    group: object = None
    buckets: int = 0
    bytes: int = 0


def _counting_allreduce(state, bucket):
    """DDP's default hook (divide by the world size, allreduce-sum), counting as it goes."""
    buffer = bucket.buffer()
    state.buckets += 1
    state.bytes += buffer.numel() * buffer.element_size()
    return default_hooks.allreduce_hook(state.group, bucket)


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """One training step on one rank. ``samples`` and ``masked`` hold global sample indices
    (rows of the global batch); ``summary`` is the adapter's, in this rank's local indices.

    ``comm_buckets`` and ``comm_bytes`` are DDP's gradient allreduces in this step (0 when
    the model is not wrapped in DDP).
    """

    step: int
    loss: float  # this rank's mean loss over its own samples
    samples: tuple
    forward_steps: np.ndarray
    backward_steps: np.ndarray
    backward_status: tuple
    summary: str
    masked: tuple
    comm_buckets: int
    comm_bytes: int


@dataclasses.dataclass(frozen=True)
class TrainRecord:
    """What :func:`train` returns: float64 numpy copies, keyed by parameter name."""

    rank: int
    world_size: int
    distributed: bool
    first_grads: dict
    final_params: dict
    steps: tuple


def train(rank: int, world_size: int, config: Config = Config(), steps: int = 3, log=None) -> TrainRecord:
    r"""Run ``steps`` SGD steps of :class:`DEQClassifier` on ``rank``'s slice of each batch.

    Parameters
    ----------
    rank, world_size : int
        This process's place. With torch.distributed initialised the model is wrapped in
        DistributedDataParallel (gradients averaged over the group, counted by a
        communication hook); without it, ``world_size`` must be 1 and the model runs
        alone, with no process group at all, so a collective inside the solve would raise.
    config : Config
    steps : int
    log : callable, optional
        Called with each :class:`StepRecord` as soon as its step is done.

    Returns
    -------
    TrainRecord
        The gradients of the first step (DDP-averaged: ``(1/B) sum_i dl_i/dw`` over the
        global batch), the parameters after the last step, and every step's record.

    Notes
    -----
    Each step computes ``L_r = (1/|S_r|) sum_{i in S_r} cross_entropy(logits_i, y_i)``,
    calls ``L_r.backward()`` (the per-sample adjoint solves, then DDP's allreduce), and
    updates ``w <- w - lr dL/dw``.
    """
    distributed = dist.is_available() and dist.is_initialized()
    if distributed and (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
        raise ValueError(f"rank {rank} of {world_size} given, but the process group says rank {dist.get_rank()} "
                         f"of {dist.get_world_size()}")
    if not distributed and (rank, world_size) != (0, 1):
        raise ValueError(f"rank {rank} of {world_size} without torch.distributed initialised; call "
                         f"torch.distributed.init_process_group('gloo') first, or run as rank 0 of 1")
    rows = local_slice(rank, world_size, config.batch_size)
    model = DEQClassifier(config)
    count = _CommCount()
    net = model
    if distributed:
        # DDP broadcasts rank 0's parameters once here (a no-op in value: every rank drew
        # the same ones); after that, the hook below sees all of its gradient traffic.
        net = DistributedDataParallel(model)
        net.register_comm_hook(count, _counting_allreduce)
    optimiser = torch.optim.SGD(model.parameters(), lr=config.lr)
    dtype = getattr(torch, config.dtype)
    records, first_grads = [], None
    for step in range(steps):
        x, y = global_batch(config, step)
        x, y = torch.tensor(x[rows], dtype=dtype), torch.tensor(y[rows])
        optimiser.zero_grad(set_to_none=True)
        before = (count.buckets, count.bytes)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        loss = loss.detach()
        if first_grads is None:
            first_grads = _numpy(model, grads=True)
        record = _step_record(step, float(loss), model.last_diagnostics, rows, count, before)
        optimiser.step()
        records.append(record)
        if log is not None:
            log(record)
    return TrainRecord(rank, world_size, distributed, first_grads, _numpy(model, grads=False), tuple(records))


def _numpy(model, grads):
    out = {}
    for name, p in model.named_parameters():
        t = p.grad if grads else p
        out[name] = t.detach().to(torch.float64).numpy().copy()
    return out


def _step_record(step, loss, diagnostics, rows, count, before):
    fwd, bwd = diagnostics.forward_samples, diagnostics.backward_samples
    masked = () if diagnostics.masked is None else tuple(int(i) + rows.start for i in diagnostics.masked)
    return StepRecord(
        step=step, loss=loss, samples=tuple(range(rows.start, rows.stop)),
        forward_steps=np.asarray(fwd.num_steps), backward_steps=np.asarray(bwd.num_steps),
        backward_status=tuple(s.name for s in bwd.status), summary=bwd.summary, masked=masked,
        comm_buckets=count.buckets - before[0], comm_bytes=count.bytes - before[1],
    )


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m rbpsolve.adapters.tasks.ddp_deq",
        description="Train a deep-equilibrium classifier with DistributedDataParallel (gloo, CPU); "
                    "run under torchrun for several ranks, or alone as one process.",
    )
    p.add_argument("--steps", type=int, default=20, help="SGD steps")
    p.add_argument("--batch-size", type=int, default=8, help="global mini-batch, split evenly over the ranks")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backward", choices=("gmres", "neumann"), default="gmres")
    return p


def main(argv=None) -> int:
    """Command line: train, printing each step's loss and solver records on rank 0."""
    args = _parser().parse_args(argv)
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")  # RANK, WORLD_SIZE, MASTER_ADDR/PORT from torchrun
    else:
        # One process, still through DDP and its hook: a group of one in memory.
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    rank, world = dist.get_rank(), dist.get_world_size()
    config = Config(batch_size=args.batch_size, lr=args.lr, seed=args.seed, backward=args.backward)

    def log(r):
        if rank == 0:
            print(f"step {r.step:3d}  rank-0 loss {r.loss:.6f} (samples {r.samples[0]}-{r.samples[-1]})  "
                  f"forward steps {r.forward_steps.tolist()}  backward steps {r.backward_steps.tolist()}  "
                  f"backward: {r.summary}  DDP allreduce: {r.comm_buckets} bucket(s), {r.comm_bytes} bytes",
                  flush=True)

    try:
        record = train(rank, world, config, steps=args.steps, log=log)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        buckets = sum(r.comm_buckets for r in record.steps)
        sent = sum(r.comm_bytes for r in record.steps)
        n_params = sum(v.size for v in record.final_params.values())
        print(f"{world} rank(s), {args.steps} steps: DDP's hook allreduced {buckets} bucket(s), {sent} bytes "
              f"({n_params} parameters x {np.dtype(config.dtype).itemsize} bytes a step), its only gradient "
              f"traffic; the forward and adjoint solves use each rank's local tensors alone (the tests run "
              f"them with no process group, where a collective would raise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
