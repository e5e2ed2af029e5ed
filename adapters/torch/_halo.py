r"""Halo exchange for a node-partitioned graph state, differentiable, over ``torch.distributed``.

A graph's nodes are renumbered and split into ``P`` contiguous blocks, one per rank, so that
rank ``r``'s shard of the state ``H`` (``N x d``, flattened in C order) is the contiguous block
``H[offsets[r]:offsets[r+1]]``. A propagation step at rank ``r``'s nodes reads the states of
their in-neighbours; those owned elsewhere are the rank's *halo*. The exchange is the linear map

.. math::

    E_r : H \mapsto H[\mathrm{halo}_r], \qquad E = (E_0, \dots, E_{P-1}),

which only moves rows: every rank sends the rows of its shard that other ranks' nodes need
(its *boundary* rows, never the whole shard) and receives its halo. Its adjoint ``E^T`` sends
each halo row's gradient back to the row's owner, which adds it into its local gradient (a row
read by several ranks gets the sum). :func:`halo_exchange` is ``E`` as an autograd function
whose backward is ``E^T`` and vice versa, so reverse mode through any number of exchanges
(BPTT, the VJPs of an adjoint solve, double backward) sends exactly the transposed messages.

Communication is point-to-point (``isend``/``irecv``; gloo and NCCL support both), one message
a neighbouring rank per exchange, counted in :attr:`HaloPlan.messages` and
:attr:`HaloPlan.bytes` (sent by this rank, both directions of the autograd graph together).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Partition", "HaloPlan", "halo_exchange", "halo_transpose", "node_order"]


def node_order(edges, num_nodes: int, method: str = "rcm") -> np.ndarray:
    """A node ordering whose contiguous blocks cut few edges.

    Parameters
    ----------
    edges : (2, E) int array
    num_nodes : int
    method : {"rcm", "id"}
        ``"rcm"``: reverse Cuthill-McKee (scipy), a breadth-first ordering that keeps the
        bandwidth small, so a contiguous split cuts only edges near the block boundaries;
        ``"id"``: the nodes' own numbering.

    Returns
    -------
    numpy.ndarray
        ``order[i]`` is the original id of the node placed at position ``i``.
    """
    if method == "id":
        return np.arange(num_nodes, dtype=np.int64)
    if method != "rcm":
        raise ValueError(f"method must be 'rcm' or 'id'; got {method!r}")
    import scipy.sparse
    import scipy.sparse.csgraph

    edges = np.asarray(edges, dtype=np.int64)
    a = scipy.sparse.csr_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(num_nodes, num_nodes))
    a = ((a + a.T) > 0).astype(np.float64).tocsr()  # RCM wants a symmetric pattern
    return np.asarray(scipy.sparse.csgraph.reverse_cuthill_mckee(a, symmetric_mode=True), dtype=np.int64)


class Partition:
    r"""Nodes of a graph split into ``world_size`` contiguous blocks of a renumbering.

    Parameters
    ----------
    edges : (2, E) int array
        Directed pairs ``(source, target)`` in the original numbering: ``target`` reads
        ``source``'s state.
    num_nodes : int
    world_size : int
    order : array of int, optional
        ``order[i]`` is the original id of the node at new position ``i`` (a permutation;
        default the identity, see :func:`node_order`). Rank ``r`` owns positions
        ``offsets[r] <= i < offsets[r+1]``, ``offsets[r] = floor(r N / P)``.

    Attributes
    ----------
    order, position : numpy.ndarray
        The permutation and its inverse (``position[order[i]] == i``).
    offsets : numpy.ndarray
        ``P + 1`` block bounds in the new numbering.
    cut_edges : int
        Edges whose source and target have different owners (each one a halo read).

    Notes
    -----
    Every rank builds the whole partition from the whole edge list (``O(E)`` numpy work, no
    communication), so all ranks agree on it by construction; :meth:`plan` then keeps one
    rank's part. A graph too large for one host's memory would build the plans from a
    distributed edge list instead.
    """

    def __init__(self, edges, num_nodes: int, world_size: int, order=None):
        edges = np.asarray(edges, dtype=np.int64)
        if edges.ndim != 2 or edges.shape[0] != 2:
            raise ValueError(f"edges must have shape (2, E); got {edges.shape}")
        if not (isinstance(world_size, int) and 1 <= world_size <= max(num_nodes, 1)):
            raise ValueError(f"world_size must be an int in [1, {num_nodes}] (one node a rank at least); "
                             f"got {world_size!r}")
        n = int(num_nodes)
        order = np.arange(n, dtype=np.int64) if order is None else np.asarray(order, dtype=np.int64)
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(f"order must be a permutation of 0..{n - 1}")
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise ValueError(f"edges name nodes outside 0..{n - 1}")
        self.num_nodes, self.world_size, self.order = n, world_size, order
        self.position = np.empty(n, dtype=np.int64)
        self.position[order] = np.arange(n, dtype=np.int64)
        self.offsets = np.array([r * n // world_size for r in range(world_size + 1)], dtype=np.int64)
        self._src, self._dst = self.position[edges[0]], self.position[edges[1]]
        self._src_owner, self._dst_owner = self.owner(self._src), self.owner(self._dst)
        self.cut_edges = int(np.count_nonzero(self._src_owner != self._dst_owner))
        self.num_edges = int(edges.shape[1])

    def owner(self, positions) -> np.ndarray:
        """The rank owning each position (new numbering)."""
        return np.searchsorted(self.offsets, positions, side="right") - 1

    def local(self, rank: int, original_ids) -> tuple[np.ndarray, np.ndarray]:
        """``(which, rows)``: the entries of ``original_ids`` owned by ``rank`` and their local rows."""
        pos = self.position[np.asarray(original_ids, dtype=np.int64)]
        which = np.flatnonzero((pos >= self.offsets[rank]) & (pos < self.offsets[rank + 1]))
        return which, pos[which] - self.offsets[rank]

    def plan(self, rank: int) -> "HaloPlan":
        """The halo exchange and the local edge list of ``rank``."""
        if not (0 <= rank < self.world_size):
            raise ValueError(f"rank must be in [0, {self.world_size}); got {rank}")
        start, stop = int(self.offsets[rank]), int(self.offsets[rank + 1])
        mine = self._dst_owner == rank
        src, dst = self._src[mine], self._dst[mine]
        # Halo rows sorted by position are grouped by owner (blocks are contiguous), and each
        # sender sends its rows in the same ascending order: no index lists travel.
        remote = self.owner(src) != rank
        halo = np.unique(src[remote])
        halo_owner = self.owner(halo)
        recv = {int(q): int(np.count_nonzero(halo_owner == q)) for q in np.unique(halo_owner)}
        needed = (self._src_owner == rank) & (self._dst_owner != rank)
        send = {}
        for q in np.unique(self._dst_owner[needed]):
            rows = np.unique(self._src[needed & (self._dst_owner == q)]) - start
            send[int(q)] = torch.as_tensor(rows, dtype=torch.int64)
        # Local edges index the extended state [own rows; halo rows].
        ext = np.where(remote, stop - start + np.searchsorted(halo, src), src - start)
        return HaloPlan(rank=rank, world_size=self.world_size, start=start, stop=stop,
                        owned=self.order[start:stop].copy(), halo=halo, recv_counts=recv, send_rows=send,
                        src=torch.as_tensor(ext, dtype=torch.int64),
                        dst=torch.as_tensor(dst - start, dtype=torch.int64))


@dataclasses.dataclass(eq=False)
class HaloPlan:
    """One rank's part of a :class:`Partition`: what it sends, what it receives, its local edges.

    Attributes
    ----------
    rank, world_size : int
        Ranks of the process group the exchange runs in.
    start, stop : int
        Owned positions ``[start, stop)`` of the renumbered state; ``num_local = stop - start``.
    owned : numpy.ndarray
        Original ids of the owned nodes, in local-row order.
    halo : numpy.ndarray
        Positions (new numbering) of the halo rows, ascending, hence grouped by owner.
    recv_counts : dict
        Owner rank -> number of halo rows received from it.
    send_rows : dict
        Peer rank -> the local rows (int64 tensor, ascending position) that peer reads.
    src, dst : torch.Tensor
        The rank's edges (those whose target it owns): ``src`` indexes ``[own rows; halo
        rows]``, ``dst`` the own rows.
    messages, bytes : int
        Messages and payload bytes this rank has sent, forward and transposed exchanges
        together (counters; reset them with :meth:`reset_counts`).
    exchanges : int
        Exchanges run (either direction).
    """

    rank: int
    world_size: int
    start: int
    stop: int
    owned: np.ndarray
    halo: np.ndarray
    recv_counts: dict
    send_rows: dict
    src: torch.Tensor
    dst: torch.Tensor
    messages: int = 0
    bytes: int = 0
    exchanges: int = 0

    @property
    def num_local(self) -> int:
        return self.stop - self.start

    @property
    def num_halo(self) -> int:
        return int(self.halo.size)

    @property
    def boundary_rows(self) -> int:
        """Rows sent by one forward exchange (a row read by two peers counts twice)."""
        return sum(int(r.numel()) for r in self.send_rows.values())

    def reset_counts(self) -> None:
        self.messages = self.bytes = self.exchanges = 0


def halo_exchange(h_local: torch.Tensor, plan: HaloPlan, group=None) -> torch.Tensor:
    r"""The halo rows ``E_r H`` of the distributed state whose local shard is ``h_local``.

    Collective: every rank of ``group`` must call it, in the same order as its other
    exchanges.

    Parameters
    ----------
    h_local : (num_local, ...) torch.Tensor
        This rank's rows.
    plan : HaloPlan
    group : ProcessGroup, optional
        Default the global group; ``plan``'s ranks are ranks of this group.

    Returns
    -------
    (num_halo, ...) torch.Tensor
        The halo rows in ``plan.halo`` order. Differentiable: the backward is
        :func:`halo_transpose` of the incoming gradient.
    """
    _check(h_local, plan.num_local, "h_local", "plan.num_local")
    return _Gather.apply(h_local, plan, group)


def halo_transpose(g_halo: torch.Tensor, plan: HaloPlan, group=None) -> torch.Tensor:
    r"""``E_r^T``: halo rows' values sent back to their owners and summed into local rows.

    The adjoint of :func:`halo_exchange`: ``sum_r <E_r v, u_r> = sum_r <v_r, (E^T u)_r>``.
    Differentiable, with :func:`halo_exchange` as its backward. Collective.
    """
    _check(g_halo, plan.num_halo, "g_halo", "plan.num_halo")
    return _Scatter.apply(g_halo, plan, group)


def _check(x, rows, name, what):
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] != rows:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor with {what} = {rows} rows; got {shape}")


def _peer(group, q):
    return q if group is None else dist.get_global_rank(group, q)


def _swap(plan, group, outgoing: dict, incoming: dict, like):
    """Send ``outgoing[q]`` to each peer ``q`` and receive ``incoming[q]`` rows from each."""
    tail, opts = like.shape[1:], dict(dtype=like.dtype, device=like.device)
    bufs = {q: torch.empty((n, *tail), **opts) for q, n in incoming.items()}
    # All receives are posted before any send, so no pair of ranks waits on each other.
    requests = [dist.irecv(bufs[q], src=_peer(group, q), group=group) for q in sorted(bufs)]
    payloads = []  # alive until every send has completed
    for q in sorted(outgoing):
        payloads.append(outgoing[q].contiguous())
        requests.append(dist.isend(payloads[-1], dst=_peer(group, q), group=group))
        plan.messages += 1
        plan.bytes += payloads[-1].numel() * payloads[-1].element_size()
    for request in requests:
        request.wait()
    plan.exchanges += 1
    return bufs


def _gather(h_local, plan, group):
    outgoing = {q: h_local.index_select(0, rows.to(h_local.device)) for q, rows in plan.send_rows.items()}
    bufs = _swap(plan, group, outgoing, plan.recv_counts, h_local)
    if not bufs:
        return h_local.new_empty((0, *h_local.shape[1:]))
    return torch.cat([bufs[q] for q in sorted(bufs)])


def _scatter(g_halo, plan, group):
    pieces = torch.split(g_halo, [plan.recv_counts[q] for q in sorted(plan.recv_counts)])
    outgoing = dict(zip(sorted(plan.recv_counts), pieces))
    incoming = {q: int(rows.numel()) for q, rows in plan.send_rows.items()}
    bufs = _swap(plan, group, outgoing, incoming, g_halo)
    out = g_halo.new_zeros((plan.num_local, *g_halo.shape[1:]))
    for q in sorted(bufs):
        # index_add: a row read by several peers gets the sum of their gradients.
        out.index_add_(0, plan.send_rows[q].to(out.device), bufs[q])
    return out


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_local, plan, group):
        ctx.plan, ctx.group = plan, group
        return _gather(h_local.detach(), plan, group)

    @staticmethod
    def backward(ctx, g_halo):
        return _Scatter.apply(g_halo, ctx.plan, ctx.group), None, None


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g_halo, plan, group):
        ctx.plan, ctx.group = plan, group
        return _scatter(g_halo.detach(), plan, group)

    @staticmethod
    def backward(ctx, g_local):
        return _Gather.apply(g_local, ctx.plan, ctx.group), None, None
