"""LSQR of Paige and Saunders (1982)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

from .. import _backend
from ._base import AbstractSolver, StepReport
from .._error_estimate import bidiagonal_sigma_min, combine_sigma, push, record_update, unroll
from ._common import check_lsq_rtol, default_lsq_rtol, krylov_error_bound, start

__all__ = ["LSQR"]


class _State(NamedTuple):
    x: Any
    u: Any
    v: Any
    w: Any
    alpha: float
    beta: float
    rhobar: float
    phibar: float
    anorm: float
    ddnorm: float
    arnorm: float
    lsq_rtol: float
    # (alpha_k, beta_{k+1}) of the bidiagonal B_k, a chain of pairs (see _error_estimate.push)
    coefficients: tuple = ()
    sigma_min: float = math.inf  # from bidiagonalisations before a restart
    updates: tuple = (None, None)  # (last ||x_k - x_{k-1}||, largest ratio of them): record_update


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSQR(AbstractSolver):
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

    lsq_rtol: float | None = None

    needs_rmv: ClassVar[bool] = True
    needs_square: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        check_lsq_rtol(self.lsq_rtol)

    def init(self, a, b, x0, tol):
        x, u = start(a, b, x0)
        lsq = self.lsq_rtol if self.lsq_rtol is not None else default_lsq_rtol(a)
        return self._begin(a, x, u, lsq)

    def restart(self, a, b, state, x, r):
        # The recurrence's phibar drifted below the true residual: bidiagonalise again
        # from b - A x (the estimates anorm and ddnorm start afresh).
        sigma, _ = self._sigma(state)
        return self._begin(a, x, r, state.lsq_rtol)._replace(sigma_min=sigma, updates=state.updates)

    def _begin(self, a, x, u, lsq):
        xp = a.xp
        beta = _backend.to_float(_backend.norm(xp, u))
        if beta > 0:
            u = (1.0 / beta) * u
        v = a.rmv(u)
        alpha = _backend.to_float(_backend.norm(xp, v))
        if alpha > 0:
            v = (1.0 / alpha) * v
        return _State(x, u, v, v, alpha, beta, alpha, beta, 0.0, 0.0, alpha * beta, lsq)

    def step(self, a, b, state):
        xp = a.xp
        if state.alpha == 0.0 or state.beta == 0.0:
            # A^T r = 0 (or r = 0): x solves the least-squares problem already.
            return state, StepReport(state.phibar, least_squares=state.phibar > 0)
        alpha, beta, v = state.alpha, state.beta, state.v
        u = a.mv(v) - alpha * state.u
        beta, w_norm = _backend.to_floats(xp, _backend.norm(xp, u), _backend.norm(xp, state.w))
        anorm = state.anorm
        if beta > 0:
            u = (1.0 / beta) * u
            anorm = math.sqrt(anorm**2 + alpha**2 + beta**2)
            v = a.rmv(u) - beta * v
            alpha = _backend.to_float(_backend.norm(xp, v))
            if alpha > 0:
                v = (1.0 / alpha) * v
        # A plane rotation eliminates the subdiagonal beta of the bidiagonal.
        rho = math.hypot(state.rhobar, beta)
        if not rho > 0:
            return state, StepReport(state.phibar if rho == 0 else math.nan, breakdown=True)
        c, s = state.rhobar / rho, beta / rho
        theta = s * alpha
        rhobar = -c * alpha
        phi = c * state.phibar
        phibar = s * state.phibar
        x = state.x + (phi / rho) * state.w
        w = v - (theta / rho) * state.w
        ddnorm = state.ddnorm + (w_norm / rho) ** 2
        arnorm = alpha * abs(s * phi)
        new = _State(x, u, v, w, alpha, beta, rhobar, phibar, anorm, ddnorm, arnorm, state.lsq_rtol,
                     push(state.coefficients, (state.alpha, beta)), state.sigma_min,
                     record_update(state.updates, abs(phi / rho) * w_norm))
        least_squares = not self.fixed_budget and anorm > 0 and arnorm <= state.lsq_rtol * anorm * phibar
        return new, StepReport(phibar, least_squares=least_squares)

    def solution(self, a, b, state):
        return state.x

    @staticmethod
    def _sigma(state) -> tuple[float, bool]:
        """sigma_min of B_k (>= sigma_min(A): A V_k = U_{k+1} B_k), and whether it settled."""
        d, e = unroll(state.coefficients)
        return combine_sigma([bidiagonal_sigma_min(d[:-1], e[:-1]), bidiagonal_sigma_min(d, e)] if d else [],
                             state.sigma_min)

    def finish(self, a, b, state):
        xnorm = _backend.to_float(_backend.norm(a.xp, state.x))
        info = {
            "anorm": state.anorm,
            "acond": state.anorm * math.sqrt(state.ddnorm),
            "arnorm": state.arnorm,
            "xnorm": xnorm,
        }
        sigma, settled = self._sigma(state)
        return {
            "sigma_min": sigma,
            "sigma_settled": settled,
            "updates": state.updates,
            "residual_norm": state.phibar,
            "error_bound": krylov_error_bound(a, state.phibar),
            "info": info,
        }
