"""``J = df/dh`` as an :class:`rbpsolve.JacobianOperator`, from one retained autograd graph."""

from __future__ import annotations

import warnings

import torch
import torch.autograd.forward_ad as fwAD

import rbpsolve
from rbpsolve.extending import check_map_output, space_like

__all__ = ["jacobian_operator", "JVP_MODES"]

JVP_MODES = ("double_backward", "forward")


def jacobian_operator(f, h, *, jvp: str = "double_backward", norm_bound: float | None = None,
                      sharding: rbpsolve.Sharding | None = None):
    r"""The Jacobian ``J = df/dh`` at ``h`` as an :class:`rbpsolve.JacobianOperator`.

    ``f(h)`` is evaluated once, with gradients enabled, and its graph is kept: every
    VJP ``J^T u`` is a backward pass through that graph (``f`` is not run again).

    Parameters
    ----------
    f : callable
        ``f(h)`` returns a tensor of the shape and dtype of ``h``; it may close over
        modules, parameters and inputs. It must be deterministic (no dropout in train
        mode): forward-mode JVPs run it again.
    h : torch.Tensor
        The point (any shape: a batch of states is one vector of all its elements).
    jvp : {"double_backward", "forward"}
        How ``J v`` is computed (needed by CGNE, LSQR and the norm estimates, never by
        Neumann, FixedPoint or GMRES):

        - ``"double_backward"`` (default): differentiate the VJP ``u -> J^T u`` (built once
          with ``create_graph=True`` at the first JVP) with respect to ``u``: about one VJP
          per JVP, on the same graph.
        - ``"forward"``: forward-mode AD (``torch.autograd.forward_ad``), which runs ``f``
          again for every product.

        Measured on CPU (2 cores, float32, tanh network n = 512 and ``nn.GRUCell``
        n = 512, batch 1 to 100; ``benchmarks/jvp_modes.py``): double backward cost
        0.9-1.04 VJPs per JVP plus 2-6 VJPs once to build its graph, forward mode
        3.7-7 VJPs per JVP. Either mode falls back to the other, once, when an operation
        lacks its rule (a ``once_differentiable`` function, an op without a forward-mode
        formula). The double-backward graph is kept until the operator is dropped
        (about the memory of one more graph of ``f``).
    norm_bound : float, optional
        A known bound ``q >= ||J||_2`` (see :class:`rbpsolve.JacobianOperator`).
    sharding : rbpsolve.Sharding, optional
        ``h`` is this process's block of a state split over processes
        (:func:`rbpsolve.adapters.torch.distributed.sharding`); see
        :class:`rbpsolve.JacobianOperator`.

    Returns
    -------
    rbpsolve.JacobianOperator
        On ``h``'s device and dtype; the products never leave the device.

    Examples
    --------
    >>> import torch, rbpsolve
    >>> from rbpsolve.adapters.torch import jacobian_operator
    >>> W = torch.tensor([[0.5, 0.2], [0.0, 0.3]], dtype=torch.float64)
    >>> J = jacobian_operator(lambda h: h @ W.T, torch.zeros(2, dtype=torch.float64))
    >>> torch.allclose(torch.tensor(J.to_dense()), W.double())
    True
    """
    if not callable(f):
        raise TypeError(f"f must be callable, a map h -> f(h); got {type(f).__name__}")
    space = _check_state(h, "h")
    leaf = h.detach().requires_grad_()
    with torch.enable_grad():
        out = f(leaf)
    check_output(out, space, "h")
    return GraphJacobian(out, leaf, f, jvp).operator(norm_bound=norm_bound, sharding=sharding)


def _check_state(h, name):
    """Check that ``h`` is a real floating-point tensor; return its space (for :func:`check_output`)."""
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(h).__name__}")
    return space_like(h, name)


def check_output(out, space, state):
    """Check ``f``'s output against the space of its state, which came from the argument ``state``."""
    return check_map_output(out, space, name="f", state=state, noun="tensor")


class GraphJacobian:
    """VJPs and JVPs of ``out = f(h)`` on its retained graph; ``mode`` says how JVPs were made."""

    def __init__(self, out, h, f, jvp: str):
        if jvp not in JVP_MODES:
            raise ValueError(f"jvp must be one of {JVP_MODES}; got {jvp!r}")
        self.out, self.h, self.f = out, h, f
        self.mode = jvp
        self.fell_back = False
        self._dual = None  # (u0, J^T u0 with its graph) for double backward

    def operator(self, norm_bound=None, sharding=None):
        return rbpsolve.JacobianOperator(self.vjp, self.jvp, like=self.h.detach(), norm_bound=norm_bound,
                                         sharding=sharding)

    def vjp(self, u):
        if not self.out.requires_grad:  # f does not depend on h
            return torch.zeros_like(self.h)
        (g,) = torch.autograd.grad(self.out, self.h, u, retain_graph=True, allow_unused=True, materialize_grads=True)
        return g

    def jvp(self, v):
        try:
            return self._jvp(self.mode, v)
        except (RuntimeError, NotImplementedError) as first:
            if self.fell_back:
                raise
            other = JVP_MODES[1 - JVP_MODES.index(self.mode)]
            try:
                result = self._jvp(other, v)
            except (RuntimeError, NotImplementedError) as second:
                raise RuntimeError(
                    f"neither JVP mode works for this f: {self.mode} failed with {first!r}; {other} failed "
                    f"with {second!r}. Use a solver that needs only VJPs (Neumann, FixedPoint, GMRES)"
                ) from second
            self.mode, self.fell_back = other, True
            return result

    def _jvp(self, mode, v):
        if not self.out.requires_grad:
            return torch.zeros_like(self.h)
        if mode == "double_backward":
            if self._dual is None:
                u0 = torch.zeros_like(self.out, requires_grad=True)
                with torch.enable_grad():
                    (w,) = torch.autograd.grad(
                        self.out, self.h, u0, retain_graph=True, create_graph=True, allow_unused=True
                    )
                self._dual = (u0, w)
            u0, w = self._dual
            if w is None:  # f does not use h: J = 0
                return torch.zeros_like(self.h)
            if not w.requires_grad:
                raise RuntimeError("the VJP of f has no graph in u, so it cannot be differentiated again")
            # No allow_unused: a backward that is not differentiable (once_differentiable)
            # leaves w disconnected from u0, an error here rather than a silent J v = 0.
            (jv,) = torch.autograd.grad(w, u0, v, retain_graph=True)
            return jv
        with torch.no_grad(), fwAD.dual_level(), warnings.catch_warnings():
            # torch's first forward-AD call scripts decompositions and warns about torch.jit.
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            dual = fwAD.make_dual(self.h.detach(), v)
            tangent = fwAD.unpack_dual(self.f(dual)).tangent
        return torch.zeros_like(self.h) if tangent is None else tangent
