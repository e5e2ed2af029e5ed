"""Fixed budgets of Picard, Neumann and FixedPoint as pure JAX: the core's iterates and its
status rules, with no host read, so that they run under ``jax.jit`` and ``jax.vmap``.

A fixed budget (``rtol = atol = 0``) decides nothing before its end, so its loop needs no
host: this module runs the core's steps in a ``jax.lax.fori_loop`` and decides the
status on the device, with the core's own rules, so that a traced solve returns what the
eager one would (the same iterate, status and step count). This differs from the core's
loop (``rbpsolve/_loop.py``, ``rbpsolve/_steps.py``) in:

1. Every figure stays an array; the status is an integer code (:mod:`._results`).
2. The core reads a long budget's reports at steps 64, 128, 256, ... and stops there when
   a failure was decided; here the steps after such a checkpoint are skipped (a
   ``lax.cond`` a step), so ``num_steps`` and the returned best iterate are the same.
3. No input check on values: a non-finite ``h0`` or cotangent, which the core refuses
   with a ValueError before solving, ends the solve ``NONFINITE`` here.
4. Only the figures :class:`TracedSolve` carries are kept: no error estimate or bound,
   no product counts, no history beyond the last norm.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

import rbpsolve

from ._results import TracedSolve, code

__all__ = ["picard", "series", "is_traceable_forward", "is_traceable_backward"]

_BUDGET_SPENT = code(rbpsolve.Status.BUDGET_SPENT)
_CONVERGED = code(rbpsolve.Status.CONVERGED)
_DIVERGED = code(rbpsolve.Status.DIVERGED)
_NONFINITE = code(rbpsolve.Status.NONFINITE)
# FIRST_CHECKPOINT of rbpsolve/_steps.py: a deferred run also reads its reports at 64, 128, ...
_FIRST_CHECKPOINT = 64


def _fixed_budget(solver) -> bool:
    return solver.rtol == 0 and solver.atol == 0


def is_traceable_forward(solver) -> bool:
    """A forward solver this module runs: a fixed budget of Picard."""
    return type(solver) is rbpsolve.Picard and _fixed_budget(solver)


def is_traceable_backward(solver) -> bool:
    """A backward solver this module runs: a fixed budget of Neumann or FixedPoint."""
    return type(solver) in (rbpsolve.Neumann, rbpsolve.FixedPoint) and _fixed_budget(solver)


class _Carry(NamedTuple):
    state: Any
    best_x: Any  # the iterate with the smallest residual so far (run_deferred's best_x)
    best_r: Any  # its residual, NaN-propagating as run_deferred's device minimum
    decided_best: Any  # _decide's best_residual, which stops moving once a status is decided
    status: Any  # 0 while undecided
    taken: Any  # steps taken
    frozen: Any  # a failure read at a checkpoint: the core stopped there
    history: Any  # one norm a step, for the series judgement


def _run(step: Callable, solution: Callable, state, max_steps: int, *, divergence_factor: float, tol_code: int):
    """The core's deferred run of a fixed budget (``run_deferred`` of ``rbpsolve/_steps.py`` with
    ``_decide`` of ``rbpsolve/_steps.py`` on each report), all on the device.

    ``step(state, k)`` returns ``(state, residual, scale_finite)``; the residual belongs to
    the iterate the step started from (every solver here has ``residual_lags``). A zero
    residual meets a fixed budget's tolerance (``tol_code``: CONVERGED for a forward
    solve, BUDGET_SPENT for a linear one, as ``_replay`` of ``rbpsolve/_steps.py`` decides),
    unless the tolerance's scale was not finite (``max(0 * inf, 0)`` is NaN there).
    """
    x0 = solution(state)
    real = jnp.zeros((), x0.dtype).real.dtype
    inf = jnp.asarray(jnp.inf, real)
    carry = _Carry(state, x0, inf, inf, jnp.int32(0), jnp.int32(0), jnp.asarray(False),
                   jnp.zeros(max_steps, real))

    def advance(k, c):
        new, r, scale_finite = step(c.state, k)
        better = r < c.best_r
        best_x = jnp.where(better, solution(c.state), c.best_x)
        best_r = jnp.minimum(c.best_r, r)
        undecided = c.status == 0
        decided_best = jnp.where(undecided & (r < c.decided_best), r, c.decided_best)
        decision = jnp.select(
            [~jnp.isfinite(r), (r <= 0) & scale_finite, r > divergence_factor * decided_best],
            [_NONFINITE, tol_code, _DIVERGED], 0,
        ).astype(jnp.int32)
        status = jnp.where(undecided, decision, c.status)
        n = k + 1
        checkpoint = (n >= _FIRST_CHECKPOINT) & ((n & (n - 1)) == 0)
        return _Carry(new, best_x, best_r, decided_best, status, n.astype(jnp.int32),
                      checkpoint & (status != 0), c.history.at[k].set(r))

    def body(k, c):
        return jax.lax.cond(c.frozen, lambda c: c, lambda c: advance(k, c), c)

    # A budget shorter than the first checkpoint is never read before its end.
    return jax.lax.fori_loop(0, max_steps, body if max_steps >= _FIRST_CHECKPOINT else advance, carry)


def _conclude(solver, c: _Carry, solution, start_norm, eps):
    """Status and returned iterate, as ``conclude`` of ``rbpsolve/_loop.py`` decides them."""
    status = jnp.where(c.status == 0, _BUDGET_SPENT, c.status)
    if getattr(solver, "series", False) and math.isfinite(solver.divergence_factor):
        norms = c.history if start_norm is None else jnp.concatenate([start_norm[None], c.history])
        diverging = _series_not_converging(norms, eps)
        status = jnp.where((status == _BUDGET_SPENT) & diverging, _DIVERGED, status)
    # Failures hand back the best iterate seen, not the one that blew up.
    failed = (status == _DIVERGED) | (status == _NONFINITE)
    x = jnp.where(failed, c.best_x, solution(c.state))
    ok = (status == _BUDGET_SPENT) | (status == _CONVERGED)
    status = jnp.where(ok & ~jnp.all(jnp.isfinite(x)), _NONFINITE, status)
    return x, status


def _series_not_converging(norms, eps):
    """``series_not_converging`` of ``rbpsolve/_verify.py`` on a device array of norms (the
    start's residual, if any, then one a step): the rule that a fixed budget whose last
    term is no smaller than the start's residual, or larger than the term half-way
    through the budget, was not converging (``Status.DIVERGED``).

    The core computes in Python floats (float64); here in the default float dtype (float64
    with ``jax_enable_x64``), summing in the same order (left to right, as ``sum()``).
    """
    n = norms.shape[0]
    if n < 2:
        return jnp.asarray(False)
    norms = norms.astype(jnp.result_type(float))
    total = jax.lax.fori_loop(1, n, lambda i, t: t + norms[i], norms[0])
    first, last = norms[0], norms[-1]
    at_rounding = last <= 16.0 * eps * total
    slack = 1.0 - 4.0 * n * eps
    grows = last >= first * slack
    if n >= 3:
        grows = grows | (last > norms[(n - 1) // 2] * slack)
    return jnp.all(jnp.isfinite(norms)) & ~at_rounding & grows


def _eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps)


def picard(F: Callable, h0, solver) -> tuple:
    """``Picard(max_steps=T, rtol=0, atol=0)`` from ``h0`` (flat): ``(h, TracedSolve)``.

    ``h_{k+1} = F(h_k)``, residual ``norm(h_{k+1} - h_k)``, scale ``norm(h_{k+1})``;
    on failure the iterate with the smallest residual (as :class:`rbpsolve.Picard`).
    """
    def step(h, k):
        h_new = F(h)
        return h_new, jnp.linalg.vector_norm(h_new - h), jnp.isfinite(jnp.linalg.vector_norm(h_new))

    c = _run(step, lambda h: h, h0, solver.max_steps, divergence_factor=solver.divergence_factor,
             tol_code=_CONVERGED)
    x, status = _conclude(solver, c, lambda h: h, None, _eps(h0.dtype))
    return x, TracedSolve(status, c.taken, c.history[c.taken - 1])


def series(Jt: Callable, b, x0, solver) -> tuple:
    """A fixed budget of Neumann or FixedPoint on ``(I - J^T) z = b`` from ``x0`` (None:
    zero), with ``Jt(u) = J^T u``: ``(z, TracedSolve)``, as
    ``rbpsolve.solve_adjoint(J, b, solver, x0=x0)`` returns them.

    As ``iterate`` of ``rbpsolve/_loop.py``: ``b = 0`` returns ``z = 0`` (CONVERGED, no step),
    and a ``b`` whose largest entry leaves the range where its norm is safe is solved
    scaled by a power of two (exact) and the answer scaled back.
    """
    dtype = b.dtype
    k, amax = _scale_exponent(b)
    bs = _scale(b, -k)
    x0s = None if x0 is None else _scale(x0, -k)
    eps = _eps(dtype)
    if type(solver) is rbpsolve.Neumann:
        x, solve = _neumann(Jt, bs, x0s, solver, eps)
    else:
        x, solve = _fixed_point(Jt, bs, x0s, solver, eps)
    x = _scale(x, k)
    status = jnp.where((solve.status == _BUDGET_SPENT) & (k != 0) & ~jnp.all(jnp.isfinite(x)), _NONFINITE,
                       solve.status)
    solve = TracedSolve(status, solve.num_steps, _scale(solve.last_norm, k))
    # b = 0: z = 0 solves it exactly, with no step (the core returns before iterating).
    zero = amax == 0
    x = jnp.where(zero, jnp.zeros_like(x), x)
    nan = jnp.asarray(jnp.nan, solve.last_norm.dtype)
    solve = TracedSolve(jnp.where(zero, _CONVERGED, solve.status).astype(jnp.int32),
                        jnp.where(zero, 0, solve.num_steps).astype(jnp.int32),
                        jnp.where(zero, nan, solve.last_norm))
    return x, solve


def _neumann(Jt, b, x0, solver, eps):
    """:class:`rbpsolve.Neumann`: ``z = x0 + sum_t (J^T)^t r0``, ``r0 = b - (x0 - J^T x0)``."""
    if x0 is None:
        r0, start = b, b + 0.0
    else:
        r0 = b - (x0 - Jt(x0))
        start = x0 + r0
    start_norm = jnp.linalg.vector_norm(r0)
    b_finite = jnp.isfinite(jnp.linalg.vector_norm(b))  # the tolerance's scale

    def step(state, k):
        partial_sum, term = state
        term = Jt(term)
        return (partial_sum + term, term), jnp.linalg.vector_norm(term), b_finite

    c = _run(step, lambda s: s[0], (start, r0), solver.max_steps, divergence_factor=solver.divergence_factor,
             tol_code=_BUDGET_SPENT)
    x, status = _conclude(solver, c, lambda s: s[0], start_norm, eps)
    return x, TracedSolve(status, c.taken, c.history[c.taken - 1])


def _fixed_point(Jt, b, x0, solver, eps):
    """:class:`rbpsolve.FixedPoint`: ``z <- J^T z + b``; from zero the first step is ``b``
    itself, without a product."""
    from_zero = x0 is None
    x0 = jnp.zeros_like(b) if from_zero else x0
    b_finite = jnp.isfinite(jnp.linalg.vector_norm(b))  # the tolerance's scale

    def step(x, k):
        def general(x):
            x_new = Jt(x) + b
            return x_new, x_new - x

        if from_zero:
            x_new, update = jax.lax.cond(k == 0, lambda x: (b + 0.0, b), general, x)
        else:
            x_new, update = general(x)
        return x_new, jnp.linalg.vector_norm(update), b_finite

    c = _run(step, lambda x: x, x0, solver.max_steps, divergence_factor=solver.divergence_factor,
             tol_code=_BUDGET_SPENT)
    x, status = _conclude(solver, c, lambda x: x, None, eps)
    return x, TracedSolve(status, c.taken, c.history[c.taken - 1])


# ---------------------------------------------------------------------------- scaling
def _half_range(dtype) -> int:
    """The bound of ``right_hand_side_scale`` (``rbpsolve/_scaling.py``): ``max |b_i|`` within
    ``2**(+-half)`` is solved as it is (float64: 255, float32: 31)."""
    return int(math.log2(float(jnp.finfo(dtype).max))) // 2 // 2


def _scale_exponent(b):
    """``(k, max |b_i|)``: the core solves with ``b * 2**-k`` (``k = 0`` when ``b`` is safe)."""
    amax = jnp.max(jnp.abs(b)) if b.size else jnp.zeros((), jnp.abs(b).dtype)
    exponent = jnp.frexp(amax)[1]
    half = _half_range(b.dtype)
    safe = (amax == 0) | ~jnp.isfinite(amax) | ((-half <= exponent) & (exponent <= half))
    return jnp.where(safe, 0, exponent).astype(jnp.int32), amax


def _scale(x, k):
    """``x * 2**k``, exact, in steps whose factors the dtype holds (as
    ``scale_array`` of ``rbpsolve/_scaling.py``); ``k = 0`` multiplies by nothing."""
    dtype = jnp.zeros((), x.dtype).real.dtype
    step = max(1, int(math.log2(float(jnp.finfo(dtype).max))) // 2 - 1)
    # |k| is at most the dtype's exponent range plus its mantissa: a few steps at most.
    finfo = jnp.finfo(dtype)
    steps = math.ceil((finfo.maxexp - finfo.minexp + finfo.nmant + 2) / step)
    remaining = k
    out = x
    for _ in range(steps):
        part = jnp.clip(remaining, -step, step)
        out = jnp.where(part == 0, out, out * jnp.ldexp(jnp.ones((), dtype), part))
        remaining = remaining - part
    return out
