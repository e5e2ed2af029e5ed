"""The module form of :func:`fixed_point`."""

from __future__ import annotations

import torch

import rbpsolve

from ._diagnostics import Diagnostics
from ._implicit import _check_solvers, _check_start_kind, fixed_point
from ._jacobian import JVP_MODES
from ._policy import check_batch_axis, check_batched_solver, policy

__all__ = ["FixedPointLayer"]


class FixedPointLayer(torch.nn.Module):
    """A module whose output is the fixed point ``h* = cell(h*, *inputs)``.

    Parameters
    ----------
    cell : torch.nn.Module
        ``cell(h, *inputs)`` returns the next state; its parameters are this module's.
    forward, backward, on_failure, jvp, batch_axis
        As in :func:`fixed_point`; ``batch_axis`` is checked against each call's ``h0``,
        and ``on_failure="mask"`` needs it.
    backward_x0 : callable or torch.Tensor, optional
        Start of the backward solve, as in :func:`fixed_point`; a callable ``g -> z0``
        suits a layer whose batch size changes from call to call (e.g. the original
        RBP's ``lambda g: torch.rand_like(g)``).

    Attributes
    ----------
    diagnostics : Diagnostics or None
        Those of the last call (the backward Result appears after ``loss.backward()``).

    Examples
    --------
    >>> import torch
    >>> from rbpsolve.adapters.torch import FixedPointLayer
    >>> class Cell(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(8, 8)
    ...     def forward(self, h, x):
    ...         return torch.tanh(0.5 * self.lin(h) + x)
    >>> layer = FixedPointLayer(Cell())
    >>> h = layer(torch.zeros(2, 8), torch.randn(2, 8))
    >>> h.sum().backward()
    >>> layer.diagnostics.backward.num_vjp
    20
    """

    def __init__(self, cell, *, forward=None, backward=None, on_failure="raise", jvp="double_backward",
                 backward_x0=None, batch_axis=None):
        super().__init__()
        if not callable(cell):
            raise TypeError(f"cell must be a module (or callable) cell(h, *inputs); got {type(cell).__name__}")
        if backward_x0 is not None and not callable(backward_x0):
            _check_start_kind(backward_x0, "backward_x0")  # its shape is checked against h0 at each call
        forward = rbpsolve.Picard() if forward is None else forward
        backward = rbpsolve.Neumann() if backward is None else backward
        _check_solvers(forward, backward)
        check_batch_axis(batch_axis)  # its range is checked against h0 at each call
        _, _, backward_chain = policy(on_failure, forward, backward, batch_axis)
        check_batched_solver(backward_chain, batch_axis)
        if jvp not in JVP_MODES:
            raise ValueError(f"jvp must be one of {JVP_MODES}; got {jvp!r}")
        self.cell = cell
        self.forward_solver = forward
        self.backward_solver = backward
        self.on_failure = on_failure
        self.jvp = jvp
        self.backward_x0 = backward_x0
        self.batch_axis = batch_axis
        self.diagnostics: Diagnostics | None = None

    def forward(self, h0, *inputs):
        h, self.diagnostics = fixed_point(
            lambda h: self.cell(h, *inputs),
            h0,
            forward=self.forward_solver,
            backward=self.backward_solver,
            on_failure=self.on_failure,
            jvp=self.jvp,
            backward_x0=self.backward_x0,
            batch_axis=self.batch_axis,
        )
        return h

    def extra_repr(self) -> str:
        batch = "" if self.batch_axis is None else f", batch_axis={self.batch_axis}"
        return (f"forward={self.forward_solver!r}, backward={self.backward_solver!r}, "
                f"on_failure={self.on_failure!r}{batch}")
