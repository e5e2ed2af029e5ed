"""The citation task's methods by name, and their adjoint solvers (torch-free: the numpy/cupy path
reads them too). See :mod:`.methods` for how each back-propagates."""

from __future__ import annotations

from .. import methods as _table

__all__ = ["ALIASES", "method_name", "METHODS", "GNN_METHODS", "PAPER_METHODS", "EXTRA_METHODS", "LABELS",
           "backward_solver"]

#: Table 2's rows: a baseline without propagation (this task only), then the paper's five.
PAPER_METHODS = ("baseline",) + _table.PAPER_METHODS
EXTRA_METHODS = ("gmres", "lsqr", "randomized_neumann")
METHODS = PAPER_METHODS + EXTRA_METHODS
GNN_METHODS = tuple(m for m in METHODS if m != "baseline")
ALIASES = _table.ALIASES


def method_name(name: str) -> str:
    """The canonical name of any spelling of a method (``neumann`` -> ``neumann_rbp``); ValueError if unknown."""
    return _table.canonical(name, METHODS)


LABELS = {"baseline": "Baseline", **{m: _table.label(m) for m in GNN_METHODS}}


def backward_solver(method: str, K: int):
    """The rbpsolve solver of an RBP-family method with budget ``K`` (the shared table's)."""
    method = _table.canonical(method, GNN_METHODS[2:])
    if method == "randomized_neumann":
        # Departure from the table (K products on average): the runs of this task keep a head of
        # K terms, then Russian roulette with continue probability 1/2 (one more product on average),
        # so its gradient is never cheaper than Neumann-RBP's with the same K.
        return _table.solver(method, K, min_steps=K, continue_prob=0.5)
    return _table.solver(method, K)
