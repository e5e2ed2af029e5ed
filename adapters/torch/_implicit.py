"""Implicit fixed-point layers: a graph-free forward solve, an rbpsolve adjoint solve backward."""

from __future__ import annotations

import dataclasses
import warnings

import torch

import rbpsolve
from rbpsolve.extending import check_solver_kind

from ._jacobian import JVP_MODES, GraphJacobian, _check_state, check_output

__all__ = ["fixed_point", "Diagnostics", "FixedPointLayer", "ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """A forward or backward solve failed and ``on_failure="warn"`` used its best iterate."""


@dataclasses.dataclass(eq=False)
class Diagnostics:
    """What the solves of one :func:`fixed_point` call did; filled in by ``loss.backward()``.

    Attributes
    ----------
    forward : rbpsolve.Result
        The forward solve: ``history`` is ``||h_{k+1} - h_k||`` per step (Picard; the
        fixed-point residual for Anderson), the curve of Fig. 1c/3c of Liao et al.;
        ``info["num_evaluations"]`` counts calls of ``f`` without a graph.
    backward : rbpsolve.Result or None
        The adjoint solve ``(I - J^T) z = dL/dh*`` of the last backward pass through this
        call (None before any); ``num_vjp`` and ``num_jvp`` are its products,
        ``error_estimate`` an estimate of the adjoint's error (also
        ``backward_error_estimate``, and in ``repr``) and ``attempts`` the failed solvers
        of a fallback chain.
    jvp_mode : str or None
        How the backward's JVPs were made (``"double_backward"`` or ``"forward"``, after
        any fallback); None when the backward solver needed none.
    backward_calls : int
        How many backward passes went through this call.
    """

    forward: rbpsolve.Result
    backward: rbpsolve.Result | None = None
    jvp_mode: str | None = None
    backward_calls: int = 0

    @property
    def forward_history(self) -> tuple:
        return self.forward.history

    @property
    def backward_error_estimate(self) -> float | None:
        """``Result.error_estimate`` of the last backward solve: an estimate of
        ``||z - z*||`` for the adjoint ``z`` (None before any backward)."""
        return None if self.backward is None else self.backward.error_estimate

    def __repr__(self) -> str:
        fwd = self.forward
        parts = [f"forward={fwd.status.name} in {fwd.num_steps} steps"]
        bwd = self.backward
        if bwd is None:
            parts.append("backward=not run")
        else:
            reliable = "" if bwd.estimate_reliable else ", unreliable"
            residual = "unknown" if bwd.residual_norm is None else f"{bwd.residual_norm:.3g} ({bwd.residual_kind})"
            estimate = "none" if bwd.error_estimate is None else f"{bwd.error_estimate:.3g}"
            parts.append(
                f"backward={bwd.status.name} in {bwd.num_steps} steps, residual {residual}, "
                f"error estimate {estimate}{reliable}"
            )
        return "Diagnostics(" + "; ".join(parts) + ")"


def fixed_point(
    f,
    h0,
    *,
    forward=None,
    backward=None,
    on_failure="raise",
    jvp: str = "double_backward",
    backward_x0=None,
):
    r"""The fixed point ``h* = f(h*)`` as a differentiable function of everything ``f`` uses.

    Parameters
    ----------
    f : callable
        ``f(h)`` returns the next state, a tensor of ``h``'s shape, dtype and device. It
        may close over modules, parameters and inputs (outputs of earlier layers):
        gradients reach all of them. It must be deterministic.
    h0 : torch.Tensor
        The start of the forward iteration. No gradient flows to it: ``h*`` does not
        depend on where the iteration started.
    forward : forward solver or rbpsolve.Fallback, optional
        ``rbpsolve.Picard()`` (default: at most 1000 steps, rtol 1e-5) or
        ``rbpsolve.Anderson(...)``. ``Picard(max_steps=T, rtol=0, atol=0)`` runs exactly
        ``T`` steps, as an unroll of BPTT would.
    backward : linear solver or rbpsolve.Fallback, optional
        Solves ``(I - J^T) z = dL/dh*``; ``rbpsolve.Neumann(max_steps=20)`` by default
        (Neumann-RBP with ``K = 20``, equal to TBPTT through 21 steps at a converged state).
        ``rbpsolve.GMRES(rtol=...)`` or ``rbpsolve.LSQR(...)`` for accurate gradients;
        ``rbpsolve.RandomizedNeumann(...)`` for an unbiased estimate.
    on_failure : "raise", "warn" or rbpsolve.Fallback
        What a failed solve (status not ok) does:

        - ``"raise"`` (default): raise :class:`rbpsolve.SolveError` carrying the Result,
          from the forward call or from ``loss.backward()``; no gradient of this layer
          reaches any ``.grad``.
        - ``"warn"``: warn (:class:`ConvergenceWarning`) and use the best iterate
          (smallest residual); a non-finite best iterate still raises.
        - ``rbpsolve.Fallback(s1, s2, ...)``: try these solvers after ``forward`` (the
          forward solvers among them) or ``backward`` (the linear ones) failed, recording
          the switch in ``Result.attempts``; raise if the last fails too.
    jvp : {"double_backward", "forward"}
        How JVPs are made when the backward solver needs them (CGNE, LSQR); see
        :func:`jacobian_operator`.
    backward_x0 : torch.Tensor or callable, optional
        Where the adjoint solve starts: ``None`` (default) starts at ``z_0 = 0``; a tensor
        of ``h0``'s shape, dtype and device starts there; a callable ``g -> z_0`` is called
        at each backward with the incoming gradient ``g = dL/dh*`` (e.g.
        ``lambda g: torch.rand_like(g)``, the ``z_0 ~ U(0, 1)`` start of the original RBP
        code, Algorithm 1 of Liao et al.). The start matters only to truncated solves: a
        fixed budget of ``FixedPoint`` keeps a ``(J^T)^K z_0`` term in its answer.

    Returns
    -------
    h_star : torch.Tensor
        ``f(h)`` applied once, with a graph, to the solver's fixed point ``h``; its backward
        solves the adjoint system and sends ``z`` through that application of ``f``.
    diagnostics : Diagnostics
        The forward Result now; the backward Result after ``loss.backward()``.

    Notes
    -----
    The forward solve runs under ``torch.no_grad()``: its memory does not grow with the
    number of steps. ``f`` is then applied once more, with gradients, to ``h`` (a
    detached leaf); the returned tensor's backward receives ``g = dL/dh*``, builds
    :func:`jacobian_operator` from that one graph (VJPs by reverse mode, retained), solves
    ``(I - J^T) z = g`` and returns ``z`` to that application of ``f``, so autograd
    computes ``z^T df/dw`` for every parameter and input ``w`` (Eq. 6 of Liao et al.).
    Cost of a backward: the solver's products plus one backward pass through ``f``.
    Every product and norm stays on ``h0``'s device; the solvers read one scalar per
    step. Under ``torch.no_grad()`` the forward solve alone runs and ``h`` is returned.
    Higher-order gradients (``create_graph=True``) through this layer raise an error.

    References
    ----------
    R. Liao et al., "Reviving and Improving Recurrent Back-Propagation", ICML 2018.

    Examples
    --------
    >>> import torch, rbpsolve
    >>> from rbpsolve.adapters.torch import fixed_point
    >>> lin = torch.nn.Linear(4, 4).double()
    >>> with torch.no_grad():
    ...     _ = lin.weight.mul_(0.5 / torch.linalg.matrix_norm(lin.weight, 2))
    >>> x = torch.randn(3, 4, dtype=torch.float64)
    >>> h, diag = fixed_point(lambda h: torch.tanh(lin(h) + x), torch.zeros(3, 4, dtype=torch.float64),
    ...                       forward=rbpsolve.Picard(rtol=1e-10), backward=rbpsolve.GMRES(rtol=1e-10))
    >>> h.square().sum().backward()
    >>> diag.forward.status.name, diag.backward.status.name, lin.weight.grad.shape
    ('CONVERGED', 'CONVERGED', torch.Size([4, 4]))
    """
    if not callable(f):
        raise TypeError(f"f must be callable, a map h -> f(h); got {type(f).__name__}")
    space = _check_state(h0, "h0")
    forward = rbpsolve.Picard() if forward is None else forward
    backward = rbpsolve.Neumann() if backward is None else backward
    _check_solvers(forward, backward)
    policy, forward_chain, backward_chain = _policy(on_failure, forward, backward)
    if jvp not in JVP_MODES:
        raise ValueError(f"jvp must be one of {JVP_MODES}; got {jvp!r}")
    if backward_x0 is not None and not callable(backward_x0):
        _check_start(backward_x0, h0, "backward_x0")

    with torch.no_grad():
        result = rbpsolve.fixed_point(f, h0.detach(), forward_chain, throw=False)
    _apply(policy, result, "forward", stacklevel=3)
    diagnostics = Diagnostics(forward=result)
    h = result.x
    if not torch.is_grad_enabled():
        return h, diagnostics
    leaf = h.detach().requires_grad_()
    with torch.enable_grad():
        out = f(leaf)
    check_output(out, space, "h0")
    if not out.requires_grad:
        return out, diagnostics
    spec = _Spec(f, backward_chain, policy, jvp, diagnostics, backward_x0)
    return _Implicit.apply(out, leaf, spec), diagnostics


@dataclasses.dataclass(frozen=True, eq=False)
class _Spec:
    f: object
    solver: object
    policy: str
    jvp: str
    diagnostics: Diagnostics
    x0: object = None


class _Implicit(torch.autograd.Function):
    """Identity forward; backward returns ``z`` solving ``(I - J^T) z = g``."""

    @staticmethod
    def forward(ctx, out, leaf, spec):
        ctx.save_for_backward(out, leaf)
        ctx.spec = spec
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "fixed_point does not support higher-order gradients (backward with create_graph=True): "
                "its adjoint solve is not differentiable. Differentiate an unroll instead"
            )
        out, leaf = ctx.saved_tensors
        spec = ctx.spec
        graph = GraphJacobian(out, leaf, spec.f, spec.jvp)
        J = graph.operator()
        with torch.no_grad():
            g = grad.detach()
            x0 = spec.x0
            if callable(x0):
                x0 = x0(g)
                _check_start(x0, g, "backward_x0(g)")
            result = rbpsolve.solve_adjoint(J, g, spec.solver, x0=x0, throw=False)
        spec.diagnostics.backward = result
        spec.diagnostics.backward_calls += 1
        spec.diagnostics.jvp_mode = graph.mode if result.num_jvp else None
        _apply(spec.policy, result, "backward", stacklevel=2)
        return result.x, None, None


def _check_start_kind(x0, name):
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"{name} must be a tensor shaped like h0 (or a callable g -> tensor); got {type(x0).__name__}")


def _check_start(x0, like, name):
    _check_start_kind(x0, name)
    if x0.shape != like.shape or x0.dtype != like.dtype or x0.device != like.device:
        raise ValueError(
            f"{name} must match h0: shape {tuple(like.shape)}, {like.dtype}, on {like.device}; got shape "
            f"{tuple(x0.shape)}, {x0.dtype}, on {x0.device}. Make it with torch.rand_like(h0) or similar"
        )
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"{name} contains NaN or inf; the adjoint solve needs a finite start (None starts at 0)")


def _check_solvers(forward, backward):
    check_solver_kind(forward, "forward", argument="forward=", other="backward=")
    check_solver_kind(
        backward, "linear", argument="backward=", example="rbpsolve.Neumann(max_steps=20) or rbpsolve.GMRES()",
        other="forward=",
    )


def _chain(first, extra):
    solvers = first.solvers if isinstance(first, rbpsolve.Fallback) else (first,)
    return first if not extra else rbpsolve.Fallback(*solvers, *extra)


def _policy(on_failure, forward, backward):
    if isinstance(on_failure, rbpsolve.Fallback):
        fwd = tuple(s for s in on_failure.solvers if isinstance(s, rbpsolve.AbstractForwardSolver))
        bwd = tuple(s for s in on_failure.solvers if isinstance(s, rbpsolve.AbstractSolver))
        return "raise", _chain(forward, fwd), _chain(backward, bwd)
    if on_failure in ("raise", "warn"):
        return on_failure, forward, backward
    raise ValueError(
        f"on_failure must be 'raise', 'warn' or an rbpsolve.Fallback of solvers to try next; got {on_failure!r}"
    )


def _apply(policy, result, which, stacklevel):
    if result.ok:
        return
    finite = bool(torch.isfinite(result.x).all())
    if policy == "warn" and finite:
        warnings.warn(
            f"rbpsolve: the {which} solve ended {result.status.name} after {result.num_steps} steps; "
            f"using its best iterate. {result.status.value}",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )
        return
    raise rbpsolve.SolveError(result)


class FixedPointLayer(torch.nn.Module):
    """A module whose output is the fixed point ``h* = cell(h*, *inputs)``.

    Parameters
    ----------
    cell : torch.nn.Module
        ``cell(h, *inputs)`` returns the next state; its parameters are this module's.
    forward, backward, on_failure, jvp
        As in :func:`fixed_point`.
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
                 backward_x0=None):
        super().__init__()
        if not callable(cell):
            raise TypeError(f"cell must be a module (or callable) cell(h, *inputs); got {type(cell).__name__}")
        if backward_x0 is not None and not callable(backward_x0):
            _check_start_kind(backward_x0, "backward_x0")  # its shape is checked against h0 at each call
        forward = rbpsolve.Picard() if forward is None else forward
        backward = rbpsolve.Neumann() if backward is None else backward
        _check_solvers(forward, backward)
        _policy(on_failure, forward, backward)
        if jvp not in JVP_MODES:
            raise ValueError(f"jvp must be one of {JVP_MODES}; got {jvp!r}")
        self.cell = cell
        self.forward_solver = forward
        self.backward_solver = backward
        self.on_failure = on_failure
        self.jvp = jvp
        self.backward_x0 = backward_x0
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
        )
        return h

    def extra_repr(self) -> str:
        return f"forward={self.forward_solver!r}, backward={self.backward_solver!r}, on_failure={self.on_failure!r}"
