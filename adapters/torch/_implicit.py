"""Implicit fixed-point layers: a graph-free forward solve, an rbpsolve adjoint solve backward."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

import rbpsolve
from rbpsolve.extending import check_solver_kind

from ._diagnostics import Diagnostics
from ._jacobian import JVP_MODES, GraphJacobian, _check_state, check_output
from ._policy import apply, batched_call, check_batch_axis, check_batched_solver, policy

__all__ = ["fixed_point"]


def fixed_point(
    f,
    h0,
    *,
    forward=None,
    backward=None,
    on_failure="raise",
    jvp: str = "double_backward",
    backward_x0=None,
    batch_axis: int | None = None,
    sharding: rbpsolve.Sharding | None = None,
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
    on_failure : "raise", "warn", "mask" or rbpsolve.Fallback
        What a failed solve (status not ok) does. With ``batch_axis`` a solve has failed
        when any sample has; messages then name the failing samples
        (``Result.batch_summary``, e.g. ``"6 converged, 2 diverged: samples 1, 5"``).

        - ``"raise"`` (default): raise :class:`rbpsolve.SolveError` carrying the Result,
          from the forward call or from ``loss.backward()``; no gradient of this layer
          reaches any ``.grad``.
        - ``"warn"``: warn (:class:`ConvergenceWarning`) and use the best iterate
          (smallest residual); a non-finite best iterate still raises.
        - ``"mask"`` (needs ``batch_axis``): drop the failed samples from the gradient
          and carry on with the others. A sample ``i`` whose forward or backward solve
          failed gets the adjoint ``z_i = 0``, so its contribution ``z_i^T df_i/dw`` to
          every ``dL/dw`` is exactly zero, while each other sample's contribution is the
          one it would have alone; its forward output (the best iterate) is still
          returned. A warning (:class:`ConvergenceWarning`) names the masked samples,
          and ``Diagnostics.masked`` holds their indices. The gradient is then that of
          the loss restricted to the ok samples' paths through this layer (a sample's
          loss still reaches parameters used outside this layer). A failed sample whose
          forward output is not finite still raises: its NaNs would reach every
          sample's loss. Samples already masked in the forward are not solved backward
          (their ``g_i`` is set to zero, which the solver meets in no step).
        - ``rbpsolve.Fallback(s1, s2, ...)``: try these solvers after ``forward`` (the
          forward solvers among them) or ``backward`` (the linear ones) failed, recording
          the switch in ``Result.attempts``; raise if the last fails too. With
          ``batch_axis`` the backward chain runs per sample where the core supports it
          (each member re-solves only the samples still failing); a chain the core cannot
          run per sample raises ``NotImplementedError`` at the call.
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
    batch_axis : int, optional
        The axis of ``h0`` that indexes independent samples (a deep-equilibrium model's
        batch: ``f`` must not couple samples, which is your assertion, not checked). Each
        sample ``i`` then has its own fixed point ``h_i* = f(h*)_i`` and its own adjoint
        system ``(I - J_i^T) z_i = g_i``, with ``J_i = df_i/dh_i`` the sample's block of
        the block-diagonal Jacobian: its own stopping tests, step counts, divergence and
        NaN checks (a sample that has converged is frozen while the others go on), while
        ``f`` and each VJP still run once a step on the whole batch. Both solves'
        per-sample records are in ``Diagnostics.forward_samples`` and
        ``backward_samples``. None (default): the whole state is one system, judged by
        one norm. Supported by the solvers the core runs per sample (Picard and Anderson
        forward; FixedPoint, Neumann, RandomizedNeumann, CGNE, LSQR and GMRES backward); others raise
        ``NotImplementedError`` at the call.
    sharding : rbpsolve.Sharding, optional
        ``h0`` is this process's block of a state split over processes (from
        :func:`rbpsolve.adapters.torch.distributed.sharding`), and ``f`` maps this rank's
        block to its block, exchanging neighbours' values with the other ranks itself
        (through autograd-aware communication, so that its VJPs exchange the transposed
        values). Both solves then complete their inner products and norms over all
        ranks: every rank gets its block of the one-process answer and stops at the same
        step. Call on every rank together. The gradient that reaches a parameter on a
        rank is that rank's term ``z_r^T df_r/dw``: sum it over ranks (an all-reduce of
        the gradients, as data parallelism does) for the whole ``z^T df/dw``.

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

    With ``batch_axis``, one VJP of the whole batch a step computes every sample's
    ``J_i^T u_i`` at once (the Jacobian is block diagonal), so a batched backward costs
    what the unbatched one does per step; it differs in stopping each sample at its own
    tolerance ``||g_i - (I - J_i^T) z_i|| <= rtol ||g_i||`` instead of the batch's
    ``||g - (I - J^T) z|| <= rtol ||g||``, in which one large sample can hide another's
    error.

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

    The same batch with one fixed point and one adjoint a sample:

    >>> lin.weight.grad = None
    >>> h, diag = fixed_point(lambda h: torch.tanh(lin(h) + x), torch.zeros(3, 4, dtype=torch.float64),
    ...                       forward=rbpsolve.Picard(rtol=1e-10), backward=rbpsolve.GMRES(rtol=1e-10),
    ...                       batch_axis=0)
    >>> h.square().sum().backward()
    >>> diag.backward.batch_summary, diag.backward_samples.num_steps.shape
    ('3 converged', (3,))
    """
    if not callable(f):
        raise TypeError(f"f must be callable, a map h -> f(h); got {type(f).__name__}")
    space = _check_state(h0, "h0")
    axis = check_batch_axis(batch_axis, h0)
    forward = rbpsolve.Picard() if forward is None else forward
    backward = rbpsolve.Neumann() if backward is None else backward
    _check_solvers(forward, backward)
    rule, forward_chain, backward_chain = policy(on_failure, forward, backward, axis)
    if jvp not in JVP_MODES:
        raise ValueError(f"jvp must be one of {JVP_MODES}; got {jvp!r}")
    if backward_x0 is not None and not callable(backward_x0):
        _check_start(backward_x0, h0, "backward_x0")
    # Before the forward solve: a backward that cannot run per sample would otherwise
    # fail only at loss.backward(), after the forward's work.
    check_batched_solver(backward_chain, axis)

    batch = {} if axis is None else {"batch_axis": axis}
    with torch.no_grad():
        result = batched_call(
            lambda: rbpsolve.fixed_point(f, h0.detach(), forward_chain, throw=False, sharding=sharding, **batch),
            axis, "forward"
        )
    masked = apply(rule, result, "forward", stacklevel=3, axis=axis)
    diagnostics = Diagnostics(forward=result, batch_axis=axis,
                              masked=np.array(masked, dtype=np.int64) if rule == "mask" else None)
    h = result.x
    if not torch.is_grad_enabled():
        return h, diagnostics
    leaf = h.detach().requires_grad_()
    with torch.enable_grad():
        out = f(leaf)
    check_output(out, space, "h0")
    if not out.requires_grad:
        return out, diagnostics
    spec = _Spec(f, backward_chain, rule, jvp, diagnostics, backward_x0, axis, masked, sharding)
    return _Implicit.apply(out, leaf, spec), diagnostics


@dataclasses.dataclass(frozen=True, eq=False)
class _Spec:
    f: object
    solver: object
    policy: str
    jvp: str
    diagnostics: Diagnostics
    x0: object = None
    axis: int | None = None
    forward_masked: tuple = ()  # samples the "mask" policy dropped in the forward
    sharding: object = None  # rbpsolve.Sharding of a state split over processes


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
        J = graph.operator(sharding=spec.sharding)
        axis = spec.axis
        batch = {} if axis is None else {"batch_axis": axis}
        with torch.no_grad():
            g = grad.detach()
            x0 = spec.x0
            if callable(x0):
                x0 = x0(g)
                _check_start(x0, g, "backward_x0(g)")
            if spec.forward_masked:
                # Their z is zeroed below whatever the solve finds; with g_i = 0 the
                # solver counts them solved before its first step.
                g = _zero_samples(g, spec.forward_masked, axis)
            result = batched_call(
                lambda: rbpsolve.solve_adjoint(J, g, spec.solver, x0=x0, throw=False, **batch), axis, "backward"
            )
        diagnostics = spec.diagnostics
        diagnostics.backward = result
        diagnostics.backward_calls += 1
        diagnostics.jvp_mode = graph.mode if result.num_jvp else None
        failed = apply(spec.policy, result, "backward", stacklevel=2, axis=axis)
        z = result.x
        if spec.policy == "mask":
            dropped = sorted(set(spec.forward_masked) | set(failed))
            diagnostics.masked = np.array(dropped, dtype=np.int64)
            if dropped:
                # z_i = 0 removes sample i's term z_i^T df_i/dw from every parameter's
                # gradient (where, not a product: a diverged z_i may hold inf or NaN).
                z = _zero_samples(z, dropped, axis)
        return z, None, None


def _zero_samples(x, samples, axis):
    """``x`` with the given samples (indices along ``axis``) set to zero."""
    keep = torch.ones(x.shape[axis], dtype=torch.bool, device=x.device)
    keep[list(samples)] = False
    shape = [1] * x.dim()
    shape[axis] = x.shape[axis]
    return torch.where(keep.reshape(shape), x, torch.zeros((), dtype=x.dtype, device=x.device))


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
