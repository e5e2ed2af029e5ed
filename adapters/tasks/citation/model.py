r"""The GRU graph network of the citation task and its per-node logistic-regression baseline.

Gated graph network (Li et al. 2016) as in ``model/gnn.py`` of the paper's code: the state of
node ``v`` starts at its PCA features, ``h_v^0 = x_v``, and one propagation step is

.. math::

    m_v^t = \sum_{u \in N(v)} h_u^t, \qquad h_v^{t+1} = \mathrm{GRUCell}(m_v^t, h_v^t),

(sum aggregation, one edge type), the map ``h^{t+1} = F(h^t)`` whose steady state RBP
differentiates (Sec. 4.2 of Liao et al. 2018). After ``T`` steps a linear layer maps each
``h_v^T`` to class logits.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GRUGraphNet", "LogisticBaseline"]


class GRUGraphNet(nn.Module):
    """GRU message passing on a fixed graph, then a per-node linear classifier.

    Parameters
    ----------
    hidden : int
        State size; the inputs (PCA features) have this size too, since they are ``h^0``
        (64 for Cora and 16 for Pubmed in the original configs).
    num_classes : int
    edges : (2, E) int64 tensor
        Directed pairs ``(source, target)``: ``target`` receives ``source``'s state.
    num_nodes : int

    Notes
    -----
    Messages are summed with ``index_add_`` over the edge list, ``O(E d)`` per step, never a
    dense ``N x N`` matrix. Initialisation as the original: Kaiming-normal GRU and output
    weights, zero biases.
    """

    def __init__(self, hidden: int, num_classes: int, edges: torch.Tensor, num_nodes: int):
        super().__init__()
        if edges.ndim != 2 or edges.shape[0] != 2:
            raise ValueError(f"edges must have shape (2, E); got {tuple(edges.shape)}")
        self.num_nodes = int(num_nodes)
        self.register_buffer("src", edges[0].long().contiguous())
        self.register_buffer("dst", edges[1].long().contiguous())
        self.gru = nn.GRUCell(hidden, hidden)
        self.out = nn.Linear(hidden, num_classes)
        for w in (self.gru.weight_ih, self.gru.weight_hh, self.out.weight):
            nn.init.kaiming_normal_(w)
        for b in (self.gru.bias_ih, self.gru.bias_hh, self.out.bias):
            nn.init.zeros_(b)

    def step(self, h: torch.Tensor) -> torch.Tensor:
        """One propagation ``h^{t+1} = F(h^t)``: sum the neighbours' states, GRU update."""
        msg = torch.zeros_like(h).index_add_(0, self.dst, h.index_select(0, self.src))
        return self.gru(msg, h)

    def propagate(self, h0: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[float]]:
        """``steps`` propagations without a graph, and ``||h^t - h^{t-1}|| / (N d)`` after each (Fig. 3c)."""
        diffs = []
        h = h0
        with torch.no_grad():
            for _ in range(steps):
                new = self.step(h)
                diffs.append(float(torch.linalg.vector_norm(new - h)) / h.numel())
                h = new
        return h, diffs


class LogisticBaseline(nn.Module):
    """The baseline of Table 2: multinomial logistic regression on each node's PCA features alone."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.out = nn.Linear(in_features, num_classes)
        nn.init.kaiming_normal_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x)
