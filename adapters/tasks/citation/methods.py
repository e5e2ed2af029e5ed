r"""How each method of Table 2 back-propagates through the ``T`` propagation steps.

With ``h^T = F^T(h^0)`` and loss ``L(h^T)``:

- ``bptt``: the graph of all ``T`` steps (``unroll(F, h0, T)``);
- ``tbptt``: the graph of the last ``K`` steps (``unroll(F, h0, T, truncate=K)``), as the
  original code detaches ``h^{T-K}``;
- the RBP family: ``h^{T-1}`` from ``T - 1`` graph-free steps (``Picard(max_steps=T-1,
  rtol=0, atol=0)``), one more step with a graph, and the adjoint
  ``(I - J^T) z = dL/dh^T`` (Eq. 7 of Liao et al.) solved by the method's solver:
  ``rbp`` FixedPoint (Alg. 1), ``cg_rbp`` CGNE (Eq. 16, Alg. 2), ``neumann_rbp`` Neumann
  (Alg. 3), and the core's further solvers ``gmres``, ``lsqr``, ``randomized_neumann``.

The solvers and their settings are the shared table of :mod:`rbpsolve.adapters.tasks.methods`
(a fixed budget of ``K`` steps, no tolerance; ``rbp`` and ``neumann_rbp`` with
``divergence_factor=inf``, as the original code, which sums its ``K`` terms whatever they do).
``rbp`` starts, as the original code's RBP does (``model/rbp.py`` of lrjconan/RBP), from
``z_0 ~ U(0, 1)`` drawn from torch's global generator (seeded by the run's seed):
``z_K = (J^T)^K z_0 + sum_{t<K} (J^T)^t g``.

Departures of this task from the table, stated where they are made: ``baseline`` (no
propagation at all, Table 2's first row) exists only here, ``fallback`` is not offered, and
``randomized_neumann`` keeps a head of ``K`` terms with continue probability 1/2 (see
:func:`backward_solver`).
"""

from __future__ import annotations

import dataclasses

import torch

import rbpsolve
from rbpsolve.adapters.torch import fixed_point, unroll

from .. import methods as _table
from .method_table import (  # re-exported; torch-free code imports them from method_table
    ALIASES,
    EXTRA_METHODS,
    GNN_METHODS,
    LABELS,
    METHODS,
    PAPER_METHODS,
    backward_solver,
    method_name,
)

__all__ = ["ALIASES", "method_name", "METHODS", "GNN_METHODS", "PAPER_METHODS", "EXTRA_METHODS", "LABELS",
           "backward_solver", "final_state", "StepReport"]

@dataclasses.dataclass
class StepReport:
    """What the backward of one training step did (RBP family only): the adjoint solve's status."""

    diagnostics: object = None

    @property
    def status(self) -> str | None:
        d = self.diagnostics
        return None if d is None or d.backward is None else d.backward.status.name


def final_state(step, h0, method: str, T: int, K: int):
    """``h^T`` with the gradient path of ``method``, and a :class:`StepReport` to read after backward.

    Parameters
    ----------
    step : callable
        ``F``, one propagation.
    h0 : torch.Tensor
        ``(N, d)`` initial states.
    method : str
        One of :data:`GNN_METHODS`.
    T, K : int
        Propagation steps and truncation (``T > K >= 1``).
    """
    method = _table.canonical(method, GNN_METHODS)
    if not (1 <= K < T):
        raise ValueError(f"need 1 <= truncate K < steps T; got K={K}, T={T}")
    if method == "bptt":
        return unroll(step, h0, T), StepReport()
    if method == "tbptt":
        return unroll(step, h0, T, truncate=K), StepReport()
    forward = rbpsolve.Picard(max_steps=T - 1, rtol=0.0, atol=0.0)
    start = (lambda g: torch.rand_like(g)) if method == "rbp" else None
    h, diagnostics = fixed_point(step, h0, forward=forward, backward=backward_solver(method, K), on_failure="warn",
                                 backward_x0=start)
    return h, StepReport(diagnostics)
