"""Running a solver with the failure policy: ``throw``, and :class:`Fallback` chains.

Shared by the linear entry points (:mod:`rbpsolve._solve`) and the forward one
(:mod:`rbpsolve._forward.solve`), which both import it and not each other.
"""

from __future__ import annotations

import dataclasses
import math

from ._forward._base import AbstractForwardSolver
from ._loop import iterate
from ._result import Result, SolveError, Status
from ._solvers._base import AbstractSolver
from ._space import ProductCounter
from ._verify import true_residual

__all__ = ["Fallback", "run"]


@dataclasses.dataclass(frozen=True)
class Fallback:
    """Try solvers in turn until one succeeds; the switch is recorded in the result.

    Each solver starts afresh from the caller's ``x0`` (a diverged iterate is a bad
    start). The returned :class:`Result` is the first successful one; when every solver
    fails, the best attempt, the one with the smallest verified residual
    ``norm(b - A x)`` (recomputed with one product where an attempt had no verified
    figure). ``attempts`` holds every other result in the chain's order,
    ``info["fallback_index"]`` the returned one's place, and the counts include them all.
    A callback that returns True stops the whole chain (``Status.STOPPED``).
    A chain holds linear solvers (for ``solve`` and ``solve_adjoint``) or forward solvers
    (``Picard``, ``Anderson``, for ``fixed_point``), not both.

    Examples
    --------
    >>> import rbpsolve
    >>> chain = rbpsolve.Fallback(rbpsolve.Neumann(max_steps=50, rtol=1e-8), rbpsolve.GMRES(rtol=1e-8))
    """

    solvers: tuple

    def __init__(self, *solvers):
        if len(solvers) == 1 and isinstance(solvers[0], (tuple, list)):
            solvers = tuple(solvers[0])
        if not solvers:
            raise ValueError("Fallback needs at least one solver, e.g. Fallback(Neumann(), GMRES())")
        for s in solvers:
            if not isinstance(s, (AbstractSolver, AbstractForwardSolver)):
                raise TypeError(f"Fallback takes rbpsolve solvers such as rbpsolve.GMRES(); got {s!r}")
        object.__setattr__(self, "solvers", tuple(solvers))


def run(solver, A, b, x0, callback, throw) -> Result:
    """``iterate`` (or the chain), raising :class:`SolveError` on failure when ``throw``."""
    if isinstance(solver, Fallback):
        result = _run_chain(solver, A, b, x0, callback)
    else:
        result = iterate(solver, A, b, x0, callback=callback)
    if throw and not result.ok:
        raise SolveError(result)
    return result


def _run_chain(chain, A, b, x0, callback) -> Result:
    """Each solver of the chain in turn until one is ok or the callback asks to stop.

    When every one fails, the best attempt is returned: the smallest verified residual
    ``norm(b - A x)`` (recomputed, one product each, where an attempt did not verify its
    own), every other attempt kept in ``attempts``.
    """
    results = []
    for s in chain.solvers:
        result = iterate(s, A, b, x0, callback=callback)
        results.append(result)
        # A stop request from the callback ends the whole chain, not just this member.
        if result.ok or result.status is Status.STOPPED:
            break
    chosen = len(results) - 1
    if not results[-1].ok and results[-1].status is not Status.STOPPED and len(results) > 1 and b is not None:
        results = [_verified(A, b, r) for r in results]
        chosen = min(range(len(results)), key=lambda i: _residual_key(results[i]))
    attempts = tuple(r for i, r in enumerate(results) if i != chosen)
    best = results[chosen]
    info = dict(best.info)
    info["fallback_index"] = chosen
    return dataclasses.replace(
        best,
        attempts=attempts,
        info=info,
        num_vjp=sum(r.num_vjp for r in results),
        num_jvp=sum(r.num_jvp for r in results),
    )


def _verified(A, b, result: Result) -> Result:
    """``result`` with its true residual, if it does not carry one (counted as a product)."""
    if result.residual_kind == "verified":
        return result
    xp = A.xp
    if not bool(xp.all(xp.isfinite(result.x))):
        return dataclasses.replace(result, residual_norm=math.inf, residual_kind="verified")
    counter = ProductCounter()
    _, residual, _ = true_residual(A.with_counter(counter), b, result.x)
    return dataclasses.replace(
        result,
        residual_norm=residual,
        residual_kind="verified",
        num_vjp=result.num_vjp + counter.vjp,
        num_jvp=result.num_jvp + counter.jvp,
    )


def _residual_key(result: Result) -> float:
    value = result.residual_norm
    return math.inf if value is None or not math.isfinite(value) else value
