"""Implicit fixed points: an rbpsolve forward solve, an rbpsolve adjoint solve in a ``jax.custom_vjp``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import rbpsolve
from rbpsolve.extending import check_solver_kind

from ._diagnostics import Diagnostics
from ._jacobian import Linearisation
from ._policy import apply, batched_call, check_batch_axis, check_batched_solver, failed_samples, policy
from ._results import TracedSolve, code, probe_cotangent
from ._state import BatchedState, FlatState, check_jax_leaves, host_readable, refuse_tracers
from ._traced import supports, traced_fixed_point

__all__ = ["fixed_point"]

_TRACED_CALL = (" (fixed_point was called inside jax.jit, jax.vmap or a second jax.grad: higher-order gradients "
                "are not supported)")


def fixed_point(f, h0, params, *, forward=None, backward=None, on_failure="raise", backward_x0=None,
                backward_probe=None, batch_axis=None):
    r"""The fixed point ``h* = f(h*, params)`` as a differentiable function of ``params``.

    Parameters
    ----------
    f : callable
        ``f(h, params)`` returns the next state, a pytree of ``h``'s structure with each
        leaf of its leaf's shape and dtype. It must be a pure function of its arguments.
        Everything a gradient should reach goes in ``params``: JAX differentiates
        arguments, not closures, and a traced array in ``f``'s closure (e.g. an input
        under ``jax.grad``) is refused with an error saying so. Closing over constants
        is fine. (The traced fixed budgets below hoist traced arrays out of ``f``'s
        closure with ``jax.closure_convert``, so there they do get their gradients.)
    h0 : jax.Array or pytree of jax.Array
        The start of the forward iteration. It gets a zero cotangent: ``h*`` does not
        depend on where the iteration started.
    params : pytree
        The parameters and inputs of ``f`` (any pytree of arrays); gradients flow to it.
    forward : forward solver or rbpsolve.Fallback, optional
        ``rbpsolve.Picard()`` (default: at most 1000 steps, rtol 1e-5) or
        ``rbpsolve.Anderson(...)``. ``Picard(max_steps=T, rtol=0, atol=0)`` runs exactly
        ``T`` steps, as an unroll of BPTT would.
    backward : linear solver or rbpsolve.Fallback, optional
        Solves ``(I - J^T) z = dL/dh*``; ``rbpsolve.Neumann(max_steps=20)`` by default
        (Neumann-RBP with ``K = 20``, equal to TBPTT through 21 steps at a converged
        state). ``rbpsolve.GMRES(rtol=...)`` or ``rbpsolve.LSQR(...)`` for accurate
        gradients; ``rbpsolve.RandomizedNeumann(...)`` for an unbiased estimate.
    on_failure : "raise", "warn", "mask" or rbpsolve.Fallback
        What a failed solve (status not ok) does. With ``batch_axis`` a solve has failed
        when any sample has; messages then name the failing samples
        (``Result.batch_summary``, e.g. ``"6 converged, 2 diverged: samples 1, 5"``).

        - ``"raise"`` (default): raise :class:`rbpsolve.SolveError` carrying the Result,
          from this call (forward) or from the backward pass (``jax.grad``, ``jax.vjp``'s
          pullback); no gradient is returned.
        - ``"warn"``: warn (:class:`ConvergenceWarning`) and use the best iterate
          (smallest residual); a non-finite best iterate still raises.
        - ``"mask"`` (needs ``batch_axis``; eager only): drop the failed samples from the
          gradient and carry on with the others. A sample ``i`` whose forward or backward
          solve failed gets the adjoint ``z_i = 0``, so its contribution
          ``z_i^T df_i/dparams`` to the gradient is exactly zero, while each other
          sample's contribution is the one it would have alone; its forward output (the
          best iterate) is still returned. A warning (:class:`ConvergenceWarning`) names
          the masked samples, and ``Diagnostics.masked`` holds their indices. A failed
          sample whose forward output is not finite still raises. Samples masked in the
          forward are not solved backward (their ``g_i`` is set to zero).
        - ``rbpsolve.Fallback(s1, s2, ...)``: try these solvers after ``forward`` (the
          forward solvers among them) or ``backward`` (the linear ones) failed, recording
          the switch in ``Result.attempts``; raise if the last fails too. With
          ``batch_axis`` the backward chain runs per sample where the core supports it; a
          chain the core cannot run per sample raises ``NotImplementedError`` at the call.
    backward_x0 : pytree of jax.Array or callable, optional
        Where the adjoint solve starts: ``None`` (default) starts at ``z_0 = 0``; a state
        of ``h0``'s structure, shapes and dtypes starts there; a callable ``g -> z_0`` is
        called at each backward with the incoming cotangent ``g = dL/dh*`` (a pytree like
        ``h0``). The start matters only to truncated solves.
    backward_probe : jax.Array, optional
        A zero vector from :func:`backward_probe`. Differentiate with respect to it too
        (e.g. ``jax.grad(loss, argnums=(0, 1))(params, probe)``): its gradient is the
        backward solve's status code, step count and last norm, which
        :func:`backward_report` decodes. This is how the backward's status leaves a
        ``jax.jit``/``jax.vmap`` (per sample); eager calls fill it too. Pass a probe to
        one call only: two calls would add their codes.
    batch_axis : int, optional
        The axis of ``h0`` that indexes independent samples (``f`` must not couple
        samples, which is your assertion, not checked); ``h0`` must then be a single
        ``jax.Array``, not a pytree. Each sample ``i`` has its own fixed point
        ``h_i* = f(h*, params)_i`` and its own adjoint system ``(I - J_i^T) z_i = g_i``,
        ``J_i`` the sample's block of the block-diagonal Jacobian, judged by the core per
        sample (its own stopping test, step count, divergence and NaN checks; a finished
        sample is frozen while the others go on), while ``f`` and each VJP still run once
        a step on the whole batch. The per-sample records are in
        ``Diagnostics.forward_samples`` and ``backward_samples``. Supported by the solvers
        the core runs per sample (Picard and Anderson forward; FixedPoint, Neumann,
        RandomizedNeumann, CGNE, LSQR and GMRES backward); others raise
        ``NotImplementedError`` at the call. Eager only: inside ``jax.jit``/``jax.vmap``
        it raises ``ValueError``; there, ``jax.vmap`` over samples with fixed budgets
        gives each sample its own solve and status.

    Returns
    -------
    h_star : pytree of jax.Array
        The forward solver's fixed point (its best iterate under ``"warn"``), of ``h0``'s
        structure.
    diagnostics : Diagnostics or TracedDiagnostics
        Eager: the forward Result now; the backward Result once the backward pass has
        run. Traced (inside ``jax.jit``/``jax.vmap``): a :class:`TracedDiagnostics` of
        arrays, the forward's status code, steps and last norm (see Notes).

    Raises
    ------
    TypeError, ValueError
        Bad input: ``h0`` not jax arrays, ``f``'s output of another structure, shape or
        dtype, solvers of the wrong kind, an unknown ``on_failure``, a ``batch_axis`` that
        is not an axis of ``h0`` (or with a pytree ``h0``, or under tracing), ``"mask"``
        without ``batch_axis``.
    NotImplementedError
        ``batch_axis`` with a solver the core cannot run per sample.
    rbpsolve.SolveError
        A failed solve under ``"raise"`` (or the last member of a Fallback failing).
    jax.errors.ConcretizationTypeError
        Inside ``jax.jit``, ``jax.vmap`` or another tracing transformation with any
        solver but the fixed budgets below (a tolerance, GMRES, CGNE, LSQR, Anderson, a
        Fallback): those read their residual on the host at each step to decide when to
        stop. Call ``fixed_point`` eagerly, use the fixed budgets, or use
        ``optimistix.fixed_point`` for a tolerance-driven solve inside a traced program.

    Notes
    -----
    The forward solve runs on concrete values, outside differentiation: its memory does
    not grow with the number of steps. The map is wrapped in a ``jax.custom_vjp`` whose
    backward receives ``g = dL/dh*``, linearises ``f(., params)`` at ``h*`` once
    (``jax.vjp``; ``jax.linearize`` too, at the first JVP, for CGNE and LSQR), solves
    ``(I - J^T) z = g`` with the backward solver on the raveled state, and returns
    ``z^T df/dparams`` from one ``jax.vjp`` of ``f`` at ``h*`` with respect to
    ``params`` (Eq. 6 of Liao et al.). Cost of a backward: the solver's products plus
    two linearisations of ``f``.

    What lineax cannot do here: under ``optimistix.ImplicitAdjoint`` the lineax solve
    runs inside the backward pass, and its outcome (``lineax.Solution``'s result and
    stats) never reaches the caller, who gets only the gradient. Here the backward
    solve's :class:`rbpsolve.Result` (status, steps, residual, error estimate, fallback
    attempts) does: it is stored in the :class:`Diagnostics` returned by this call,
    which the caller keeps (e.g. as the ``has_aux`` output of ``jax.value_and_grad``).
    A failed backward raises (or warns) from the backward pass itself.

    Forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) of a ``custom_vjp`` is
    refused by JAX; higher-order gradients are not supported.

    **Under jax.jit and jax.vmap.** A fixed budget decides nothing before its end, so
    ``forward=rbpsolve.Picard(max_steps=T, rtol=0, atol=0)`` with
    ``backward=rbpsolve.Neumann(max_steps=K, rtol=0, atol=0)`` or
    ``rbpsolve.FixedPoint(max_steps=K, rtol=0, atol=0)`` run as pure JAX
    (``jax.lax.fori_loop``) when ``h0`` or ``params`` is traced: the same iterates and the
    same status, step count and returned (best) iterate as the eager call, the statuses
    decided on the device by the core's rules (a series' fixed budget is ``DIVERGED``
    when its last term is no smaller than the start's residual or larger than the term
    half-way through, ``series_not_converging`` of ``rbpsolve/_verify.py``). Under
    ``jax.vmap`` each sample is its own solve with its own status. What differs:

    - ``diagnostics`` is a :class:`TracedDiagnostics` of status codes, step counts and
      last norms (``.forward.statuses()`` turns the codes into :class:`rbpsolve.Status`
      on the host), not Results: no iterate history, error estimate or bound, product
      counts.
    - The backward's status: a ``custom_vjp``'s backward cannot return auxiliary data,
      and a host callback writing into a Python object would run once per sample, in no
      promised order, or not at all where JAX drops it. So it travels as the cotangent of
      ``backward_probe``: pure, per sample under ``jax.vmap``, but only when the caller
      differentiates with respect to the probe; without one the status is applied by
      the policy and not returned.
    - ``on_failure="raise"`` raises at run time through ``equinox.branched_error_if``
      (an ``equinox`` runtime error carrying the status's message; under ``jax.vmap``,
      the message of the batch's largest failing code); ``"warn"`` warns from a
      ``jax.debug.callback`` when the program runs (``jax.effects_barrier()`` waits for
      it; JAX may drop or repeat it under further transformations) and raises only
      where the best iterate is not finite; ``"mask"`` and Fallback chains are refused.
    - Values are not checked before the solve: a non-finite ``h0`` or cotangent (a
      ValueError eagerly) ends the solve ``NONFINITE``. float16/bfloat16 states are
      refused. Unrolling is by ``fori_loop``: compile time does not grow with the budget.

    References
    ----------
    R. Liao et al., "Reviving and Improving Recurrent Back-Propagation", ICML 2018.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, rbpsolve
    >>> from rbpsolve.adapters.jax import fixed_point
    >>> W = 0.5 * jnp.eye(3)
    >>> def loss(x):
    ...     h, diag = fixed_point(lambda h, x: jnp.tanh(W @ h + x), jnp.zeros(3), x,
    ...                           forward=rbpsolve.Picard(rtol=1e-10), backward=rbpsolve.GMRES(rtol=1e-10))
    ...     return jnp.sum(h ** 2), diag
    >>> grad, diag = jax.grad(loss, has_aux=True)(jnp.ones(3))
    >>> diag.forward.status.name, diag.backward.status.name, grad.shape
    ('CONVERGED', 'CONVERGED', (3,))

    Inside ``jax.jit``, fixed budgets, and a probe that brings the backward's status out:

    >>> from rbpsolve.adapters.jax import backward_probe, backward_report
    >>> budgets = dict(forward=rbpsolve.Picard(max_steps=15, rtol=0, atol=0),
    ...                backward=rbpsolve.Neumann(max_steps=20, rtol=0, atol=0))
    >>> def loss(x, probe):
    ...     h, diag = fixed_point(lambda h, x: jnp.tanh(W @ h + x), jnp.zeros(3), x, backward_probe=probe, **budgets)
    ...     return jnp.sum(h ** 2), diag
    >>> step = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    >>> (grad, probe_grad), diag = step(jnp.ones(3), backward_probe())
    >>> diag.forward.statuses().name, backward_report(probe_grad).statuses().name, grad.shape
    ('BUDGET_SPENT', 'BUDGET_SPENT', (3,))
    """
    if not callable(f):
        raise TypeError(f"f must be callable, a map (h, params) -> next h; got {type(f).__name__}")
    check_jax_leaves(h0, "h0")  # tracers pass here (eager jax.grad); the solve refuses them
    axis = check_batch_axis(batch_axis, h0)
    forward = rbpsolve.Picard() if forward is None else forward
    backward = rbpsolve.Neumann(max_steps=20) if backward is None else backward
    _check_solvers(forward, backward)
    rule, forward_chain, backward_chain = policy(on_failure, forward, backward, axis)
    if backward_x0 is not None and not callable(backward_x0):
        check_jax_leaves(backward_x0, "backward_x0")
    if backward_probe is not None:
        _check_probe(backward_probe)
    traced = not host_readable((h0, params, None if callable(backward_x0) else backward_x0, backward_probe))
    if traced and axis is not None:
        raise ValueError(
            f"batch_axis={batch_axis} runs the core's per-sample solves, which read each sample's residual on the "
            "host at every step: it is for eager calls only, not inside jax.jit or jax.vmap. Inside a traced "
            "program, leave batch_axis=None and jax.vmap fixed_point over the samples with fixed budgets "
            "(forward=rbpsolve.Picard(max_steps=T, rtol=0, atol=0), backward=rbpsolve.Neumann(max_steps=K, rtol=0, "
            "atol=0)): each sample is then its own solve with its own status"
        )
    # Before the forward solve: a backward that cannot run per sample would otherwise
    # fail only at the backward pass, after the forward's work.
    check_batched_solver(backward_chain, axis)
    if traced and supports(forward, backward, on_failure):
        return traced_fixed_point(f, h0, params, forward=forward, backward=backward, rule=rule,
                                  backward_x0=backward_x0, probe=backward_probe)
    # Any other traced call goes on and is refused by the solve, with the alternatives.
    run = _Run(f, forward_chain, backward_chain, rule, backward_x0, axis)
    h_star = run.implicit(h0, params, backward_probe)
    # Outside the custom_vjp so that the warning points at the caller's line.
    masked = apply(rule, run.diagnostics.forward, "forward", axis)
    if rule == "mask":
        run.diagnostics.masked = np.array(masked, dtype=np.int64)
    return h_star, run.diagnostics


class _Run:
    """One call of :func:`fixed_point`: its settings, and what its solves leave behind
    (the state's layout, the Diagnostics) for the backward pass."""

    def __init__(self, f, forward, backward, rule, x0, axis=None):
        self.f, self.forward, self.backward, self.rule, self.x0 = f, forward, backward, rule, x0
        self.axis = axis
        self.batch = {} if axis is None else {"batch_axis": axis}
        self.state = self.diagnostics = None
        self.start = None  # backward_x0 raveled, once checked against h0
        implicit = jax.custom_vjp(lambda h0, params, probe: self.solve(h0, params, probe)[0])
        implicit.defvjp(self.solve, self.pullback)
        self.implicit = implicit

    def solve(self, h0, params, probe):
        """The forward solve on concrete values; returns ``(h*, residuals for the pullback)``."""
        # Batched: the state keeps its shape, so that the core sees the samples' axis.
        kind = FlatState if self.axis is None else BatchedState
        self.state = state = kind(h0, "h0", _TRACED_CALL)  # refuses traced states
        refuse_tracers(params, "params", _TRACED_CALL)
        if self.x0 is not None and not callable(self.x0):
            self.start = state.check_like(self.x0, "backward_x0")  # at the call, not at the backward
        F = state.flat_map(self.f, params)

        def step(x):
            flat, out = F(x)
            state.check_output(out)
            return flat

        result = batched_call(
            lambda: rbpsolve.fixed_point(step, state.flat, self.forward, throw=False, **self.batch),
            self.axis, "forward",
        )
        self.diagnostics = Diagnostics(forward=result, batch_axis=self.axis)
        return state.unravel(result.x), (result.x, params, probe)

    def pullback(self, residuals, g):
        """``(0, z^T df/dparams)`` with ``(I - J^T) z = g``, ``J = df/dh`` at ``h*``."""
        x, params, probe = residuals
        state, diagnostics = self.state, self.diagnostics
        refuse_tracers(g, "the cotangent dL/dh*", " (the backward pass is being traced: jax.jit(jax.grad(...)), "
                       "jax.jacrev (which vmaps the pullback) or a higher-order gradient, which fixed_point does "
                       "not support)")
        lin = Linearisation(state.flat_map(self.f, params), x, state.check_output)
        x0 = state.check_like(self.x0(g), "backward_x0(g)") if callable(self.x0) else self.start
        g = state.ravel(g)
        forward = diagnostics.forward
        forward_masked = failed_samples(forward) if self.rule == "mask" and not forward.ok else ()
        if forward_masked:
            # Their z is zeroed below whatever the solve finds; with g_i = 0 the solver
            # counts them solved before its first step.
            g = _zero_samples(g, forward_masked, self.axis)
        result = batched_call(
            lambda: rbpsolve.solve_adjoint(lin.operator(), g, self.backward, x0=x0, throw=False, **self.batch),
            self.axis, "backward",
        )
        diagnostics.backward = result
        diagnostics.backward_calls += 1
        diagnostics.jvp_mode = "linearize" if result.num_jvp else None
        failed = apply(self.rule, result, "backward", self.axis)
        z = result.x
        if self.rule == "mask":
            dropped = sorted(set(forward_masked) | set(failed))
            diagnostics.masked = np.array(dropped, dtype=np.int64)
            if dropped:
                # z_i = 0 removes sample i's term z_i^T df_i/dparams from the gradient
                # (where, not a product: a diverged z_i may hold inf or NaN).
                z = _zero_samples(z, dropped, self.axis)
        h_star = state.unravel(x)
        _, pull_params = jax.vjp(lambda p: self.f(h_star, p), params)
        (params_bar,) = pull_params(state.unravel(z))
        return state.unravel(jnp.zeros_like(x)), params_bar, _probe_bar(result, probe)


def _zero_samples(x, samples, axis):
    """``x`` with the given samples (indices along ``axis``) set to zero."""
    keep = np.ones(x.shape[axis], dtype=bool)
    keep[list(samples)] = False
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return jnp.where(jnp.asarray(keep.reshape(shape)), x, jnp.zeros((), dtype=x.dtype))


def _probe_bar(result, probe):
    """A backward probe's cotangent from an eager Result (None without a probe)."""
    if probe is None:
        return None
    last = result.history[-1] if result.history else float("nan")
    return probe_cotangent(TracedSolve(code(result.status), result.num_steps, last), probe)


def _check_probe(probe):
    if not isinstance(probe, jax.Array) or probe.shape != (3,) or not jnp.issubdtype(probe.dtype, jnp.floating):
        raise TypeError(
            f"backward_probe must be the float vector of shape (3,) that backward_probe() makes; got "
            f"{type(probe).__name__} of shape {getattr(probe, 'shape', None)}"
        )


def _check_solvers(forward, backward):
    check_solver_kind(forward, "forward", argument="forward=", other="backward=")
    check_solver_kind(
        backward, "linear", argument="backward=", example="rbpsolve.Neumann(max_steps=20) or rbpsolve.GMRES()",
        other="forward=",
    )
