"""The tanh MLP's shapes and flat layout (torch-free: the numpy/cupy path needs only these)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PAPER_LAYERS", "MLPLayout"]

PAPER_LAYERS = (784, 50, 50, 50, 10)


@dataclass(frozen=True)
class MLPLayout:
    """Shapes of a fully connected tanh network (linear output layer) and its flat layout (no torch).

    Parameters
    ----------
    layers : tuple of int
        Widths from input to output, e.g. ``(784, 50, 50, 50, 10)``.
    """

    layers: tuple = PAPER_LAYERS

    def __post_init__(self):
        if len(self.layers) < 2 or any(int(n) < 1 for n in self.layers):
            raise ValueError(f"layers must list at least two positive widths, input to output; got {self.layers}")

    @property
    def shapes(self):
        """``[(n_in, n_out), (n_out,), ...]``: weight then bias of each layer."""
        out = []
        for n_in, n_out in zip(self.layers[:-1], self.layers[1:]):
            out += [(n_in, n_out), (n_out,)]
        return out

    @property
    def num_tensors(self) -> int:
        return len(self.shapes)

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)
