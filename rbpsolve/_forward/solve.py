"""The entry point of the forward problem, ``fixed_point(F, h0, solver)``."""

from __future__ import annotations

from typing import Callable

from .._batched_checks import check_batch, run_batched
from .._checks import check_solver_kind
from .._fallback import Fallback, run
from .._space import _Space
from .._sharding import Sharding
from .._result import Result
from ._base import Map

__all__ = ["fixed_point"]


def fixed_point(F, h0, solver, *, callback: Callable | None = None, throw: bool = True,
                batch_axis: int | None = None, sharding: Sharding | None = None) -> Result:
    r"""Find a fixed point ``h* = F(h*)`` by iterating from ``h0``.

    Parameters
    ----------
    F : callable
        ``F(h)`` returns an array of the library, shape and dtype of ``h`` (a state of any
        shape: a batch of hidden states, a graph's node states, ...).
    h0 : array
        The start; never modified.
    solver : Picard, Anderson or Fallback of them
        e.g. ``rbpsolve.Picard(max_steps=500, rtol=1e-6)``.
    callback : callable, optional
        ``callback(info)`` after every step with an :class:`~rbpsolve.StepInfo`
        (``info.residual_norm`` is ``norm(F(h_k) - h_k)``); returning True stops the
        solve with ``Status.STOPPED``.
    throw : bool
        Raise :class:`~rbpsolve.SolveError` (carrying the Result) when the iteration
        did not converge; with False, return the Result whatever happened.
    batch_axis : int, optional
        Find one independent fixed point per slice along this axis of ``h0``: with
        ``h_i`` the slice ``i``, each sample solves ``h_i* = F(h*)_i`` (you assert that
        ``F`` does not couple samples, as in a deep-equilibrium model). Each sample has
        its own stopping test ``norm(F(h_k)_i - h_{k,i}) <= max(rtol * norm(F(h_k)_i), atol)``,
        its own divergence and NaN checks and, for Anderson, its own mixing coefficients
        (its small least-squares problem, all of them solved in one batched call on the
        device); a sample that has stopped is frozen while the others go on. ``F`` is
        still called once a step on the whole batch. The Result holds per-sample records
        (``sample_status``, ``sample_num_steps``, ``sample_residual_norm``,
        ``sample_error_estimate``): see :class:`~rbpsolve.Result`. Supported by Picard
        and Anderson (not by a Fallback chain); float32 or float64 states.
    sharding : Sharding, optional
        ``h0`` is this process's block of a state split over processes, and ``F`` maps
        blocks to blocks (exchanging what it needs with the other ranks itself). Every
        norm is then over the whole state and every rank stops at the same step: call
        ``fixed_point`` on every rank together. See :class:`~rbpsolve.Sharding`.

    Returns
    -------
    Result
        ``x`` is the fixed point (on failure: the iterate with the smallest residual);
        ``history`` the residual ``norm(F(h_k) - h_k)`` per step (for Picard, the step
        length ``norm(h_{k+1} - h_k)``); ``info["num_evaluations"]`` counts calls of
        ``F`` (with ``batch_axis``, batched calls: one a step for the whole batch, not one
        a sample); ``num_vjp = num_jvp = 0``. With ``batch_axis``, ``history`` holds the
        root-sum-square over samples of each one's latest residual, and ``b_norm`` that of
        each one's last scale ``norm(F(h_k)_i)``.

    Raises
    ------
    TypeError, ValueError
        Bad input, with the problem and the fix named.
    SolveError
        With ``throw=True``, when the iteration did not converge.

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> res = rbpsolve.fixed_point(lambda h: 0.5 * h + 1.0, np.zeros(3), rbpsolve.Picard(rtol=1e-12))
    >>> res.x.round(9), res.info["num_evaluations"]
    (array([2., 2., 2.]), 40)
    """
    if not callable(F):
        raise TypeError(f"F must be callable, a map h -> F(h); got {type(F).__name__}")
    space = _Space.like(h0, "h0", sharding)
    if not bool(space.xp.all(space.xp.isfinite(h0))):
        raise ValueError("h0 contains NaN or inf; start the iteration from a finite state (zeros, say)")
    check_solver_kind(solver, "forward")
    if batch_axis is not None:
        if isinstance(solver, Fallback):
            # Refused here, not only by check_batch: a batched chain re-solves a linear
            # system's failed samples, and has no forward counterpart yet.
            raise NotImplementedError(
                "a Fallback chain of forward solvers does not take batch_axis yet; run its first solver with "
                "batch_axis and re-solve the samples whose sample_status is not ok"
            )
        F = Map(F, space)
        return run_batched(solver, F, None, h0, callback, throw, check_batch(solver, F, batch_axis, array="h0"))
    return run(solver, Map(F, space), None, h0, callback, throw)
