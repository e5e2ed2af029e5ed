"""LSQR of Paige and Saunders (1982)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from .. import _backend
from ._base import Finish, StepReport
from .._error_estimate import bidiagonal_sigma_min
from ._common import NormalEquationsSolver, krylov_error_bound, nonzero, segment_estimates

__all__ = ["LSQR"]


class _State(NamedTuple):
    # Scalars are 0-d arrays on the state's device: a step moves nothing to the host.
    x: Any
    u: Any
    v: Any
    w: Any
    alpha: Any
    beta: Any
    rhobar: Any
    phibar: Any
    lsq_rtol: float
    fresh: bool = True  # no step taken since the bidiagonalisation (re)started


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSQR(NormalEquationsSolver):
    r"""LSQR: Golub-Kahan bidiagonalisation of ``A``, solving ``min ||b - A x||``.

    Parameters
    ----------
    max_steps, rtol, atol : see :class:`AbstractSolver`
        Stopping test: ``norm(b - A x_k) <= max(rtol * norm(b), atol)``, with the
        residual norm estimated by the recurrence (``phibar``; no extra product) and
        verified, before ``CONVERGED`` is claimed, by one recomputation (see ``verify``);
        where ``phibar`` drifted, LSQR starts again from the true residual.
    lsq_rtol : float, optional
        Report ``Status.LEAST_SQUARES`` when ``norm(A^T r) <= lsq_rtol * ||A|| * norm(r)``
        (scipy's second test, its ``atol``) while the residual test fails: the system is
        inconsistent and ``x`` is a least-squares solution. Default ``max(1e-10, 100 eps)``.

    Notes
    -----
    Each step costs one product with ``A`` (for ``A = I - J^T``: a VJP) and one with
    ``A^T`` (a JVP). Mathematically equivalent to CGNE, with better rounding behaviour on
    ill-conditioned systems. ``Result.info`` carries the estimates ``anorm`` (Frobenius
    norm of the bidiagonal, a lower bound on ``||A||_F``), ``acond`` (estimate of
    ``cond(A)``), ``arnorm`` (``||A^T r||``) and ``xnorm`` (``||x||``).

    This differs from scipy.sparse.linalg.lsqr in: 1. no damping; 2. one stopping test on
    the residual shared with every rbpsolve solver, instead of scipy's ``btol`` test
    relative to ``||A|| ||x|| + ||b||``; 3. it works on arrays of any shape and backend.

    References
    ----------
    C. C. Paige and M. A. Saunders, "LSQR: An algorithm for sparse linear equations and
    sparse least squares", ACM TOMS 8(1), 1982.
    """

    def _begin(self, a, x, u, lsq):
        xp = a.xp
        beta = _backend.norm(xp, u)
        u = u / nonzero(xp, beta)
        v = a.rmv(u)
        alpha = _backend.norm(xp, v)
        v = v / nonzero(xp, alpha)
        return _State(x, u, v, v, alpha, beta, alpha, beta, lsq)

    def step(self, a, b, state):
        # The vectors, the norms and the plane rotation, on the device; the running
        # estimates and the stopping flags are in `judge`, on the host. Where the rotation
        # has nothing to turn (rho = 0: a finished or broken-down recurrence) it is taken
        # as c = 0, s = 1, which changes neither x nor phibar.
        xp = a.xp
        u = a.mv(state.v) - state.alpha * state.u
        # ||w|| rides with beta's reduction (one all-reduce on a split state); alpha's,
        # below, depends on beta and is the step's other.
        beta, w_norm = _backend.reductions(xp, (u,), (state.w,))
        u = u / nonzero(xp, beta)
        v = a.rmv(u) - beta * state.v
        alpha = _backend.norm(xp, v)
        v = v / nonzero(xp, alpha)
        # A plane rotation eliminates the subdiagonal beta of the bidiagonal.
        rho = _backend.hypot(xp, state.rhobar, beta)
        divisor = nonzero(xp, rho)
        c = state.rhobar / divisor
        s = _backend.select(xp, rho == 0, 1.0, beta / divisor)
        phi = c * state.phibar
        phibar = s * state.phibar
        step_length = phi / divisor
        x = state.x + step_length * state.w
        w = v - ((s * alpha) / divisor) * state.w
        new = _State(x, u, v, w, alpha, beta, -c * alpha, phibar, state.lsq_rtol, False)
        records = (state.alpha, state.beta, state.phibar, beta, alpha, rho, phi, step_length, w_norm, s,
                   state.lsq_rtol, state.fresh)
        return new, StepReport(phibar, records=records)

    def judge(self, report, memo):
        alpha_old, beta_old, phibar_old, beta, alpha, rho, phi, step_length, w_norm, s, lsq, fresh = report.records
        anorm, ddnorm = (0.0, 0.0) if (memo is None or fresh) else memo
        finished = alpha_old == 0 or beta_old == 0  # A^T r = 0 (or r = 0): x is a least-squares solution
        if beta > 0:
            anorm = math.sqrt(anorm**2 + alpha_old**2 + beta**2)
        if rho > 0:
            ddnorm += (w_norm / rho) ** 2
        arnorm = alpha * abs(s * phi)
        phibar = report.residual
        residual = phibar_old if (finished or rho == 0) else (phibar if rho > 0 else math.nan)
        least_squares = finished and phibar_old > 0
        if not self.fixed_budget and not finished:
            least_squares = anorm > 0 and arnorm <= lsq * anorm * phibar
        records = (alpha_old, beta, abs(step_length) * w_norm, anorm, ddnorm, arnorm)
        report = report._replace(residual=residual, breakdown=not finished and not rho > 0,
                                 least_squares=least_squares, records=records)
        return report, (anorm, ddnorm)

    def solution(self, a, b, state):
        return state.x

    def finish(self, a, b, state, trace):
        # (alpha_k, beta_{k+1}) of the lower bidiagonal B_k; each restart begins a new one.
        sigma, settled, updates = segment_estimates(trace, bidiagonal_sigma_min)
        xp = a.xp
        if trace.records:
            phibar, (_, _, _, anorm, ddnorm, arnorm) = trace.residuals[-1], trace.records[-1]
            xnorm = _backend.to_float(_backend.norm(xp, state.x))
        else:
            phibar, alpha, xnorm = _backend.to_host(xp, state.phibar, state.alpha, _backend.norm(xp, state.x))
            anorm, ddnorm, arnorm = 0.0, 0.0, alpha * phibar
        info = {"anorm": anorm, "acond": anorm * math.sqrt(ddnorm), "arnorm": arnorm, "xnorm": xnorm}
        return Finish(sigma_min=sigma, sigma_settled=settled, updates=updates, residual_norm=phibar,
                      error_bound=krylov_error_bound(a, phibar), info=info)
