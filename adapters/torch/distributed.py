r"""States split over processes with ``torch.distributed``: the all-reduce of rbpsolve's solves.

When each rank holds a block of the state (a graph's nodes partitioned over GPUs, say), an
rbpsolve solve needs one thing beyond local arithmetic: its inner products and norms summed
over the blocks, so that every rank sees the same scalars and takes the same decisions.
:func:`sharding` makes the :class:`rbpsolve.Sharding` that does this with
``torch.distributed.all_reduce`` on a process group; pass it as ``sharding=`` to
:class:`rbpsolve.JacobianOperator`, :func:`rbpsolve.fixed_point`,
:func:`rbpsolve.adapters.torch.fixed_point` or :func:`~rbpsolve.adapters.torch.jacobian_operator`.

Each rank's products are its own business (the user's ``f`` exchanges neighbour values,
e.g. by a halo exchange); the solvers add only the all-reduces of their scalars, counted
by :class:`AllReduce` (``calls`` and ``bytes``): per step one for FixedPoint, Neumann,
Picard and Anderson, two for CGNE and LSQR (their second reduction depends on the first),
one for a GMRES step whose classical Gram-Schmidt pass kept ``w`` (DGKS), two when it
reorthogonalises. Scalars of one step that do not depend on each other travel together.

DTensor is not used: with torch 2.13 every ``float()`` of a DTensor reduction is its own
all-reduce, and the plain tensors the solvers allocate (``zeros(shape)``) do not mix with
DTensor arithmetic; a block of a plain tensor per rank and one explicit all-reduce a step
is both simpler and the communication a solve needs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

import rbpsolve

__all__ = ["sharding", "AllReduce"]

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


class AllReduce:
    """``reduce(values, op)`` of :class:`rbpsolve.Sharding` by ``torch.distributed.all_reduce``.

    Counts what it sends: ``calls`` all-reduces, ``bytes`` in their payloads (the values
    of one rank; a ring all-reduce moves about twice that per rank), ``values`` scalars.
    ``reset()`` sets the counts to zero.
    """

    def __init__(self, group=None):
        self.group = group
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.bytes = 0
        self.values = 0

    def __call__(self, values: torch.Tensor, op: str) -> torch.Tensor:
        if op not in _OPS:
            raise ValueError(f"op must be one of {sorted(_OPS)}; got {op!r}")
        # A copy: all_reduce works in place, and the caller's partial sums are not ours to change.
        out = values.detach().clone()
        dist.all_reduce(out, op=_OPS[op], group=self.group)
        self.calls += 1
        self.bytes += out.numel() * out.element_size()
        self.values += out.numel()
        return out

    def __repr__(self) -> str:
        return f"AllReduce(calls={self.calls}, bytes={self.bytes})"


def sharding(like: torch.Tensor, group=None) -> rbpsolve.Sharding:
    """The :class:`rbpsolve.Sharding` of a state of which this rank holds the block ``like``.

    A collective: every rank of ``group`` calls it, with its own block. The blocks are
    taken in rank order as consecutive runs of the flattened whole state (rank 0's
    elements first), which is a split by rows of an ``(N, d)`` state whose rows each rank
    holds contiguously. One all-gather of the block sizes gives every rank its offset and
    the whole state's size; blocks may differ in size, and may be empty.

    Parameters
    ----------
    like : torch.Tensor
        This rank's block (only its size is read).
    group : ProcessGroup, optional
        The ranks that share the state; the default group when None.

    Returns
    -------
    rbpsolve.Sharding
        Its ``reduce`` is an :class:`AllReduce`, whose ``calls`` and ``bytes`` count the
        solves' communication.

    Raises
    ------
    RuntimeError
        If ``torch.distributed`` is not initialised (``init_process_group`` first).
    """
    if not isinstance(like, torch.Tensor):
        raise TypeError(f"like must be this rank's block of the state, a torch.Tensor; got {type(like).__name__}")
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "torch.distributed is not initialised: call torch.distributed.init_process_group(...) on every "
            "rank first (torchrun sets the environment it reads)"
        )
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    # Sizes as int64 on the state's device (NCCL reduces only device tensors).
    sizes = torch.zeros(world, dtype=torch.int64, device=like.device)
    sizes[rank] = like.numel()
    dist.all_reduce(sizes, group=group)
    sizes = sizes.tolist()
    return rbpsolve.Sharding(AllReduce(group), offset=sum(sizes[:rank]), global_size=sum(sizes))
