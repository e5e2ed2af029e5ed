"""Conjugate gradients on the normal equations: CG-RBP (Eq. 16 of Liao et al. 2018)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from .. import _backend
from ._base import Finish, StepReport
from .._error_estimate import lanczos_sigma_min
from ._common import NormalEquationsSolver, krylov_error_bound, nonzero, segment_estimates

__all__ = ["CGNE"]


class _State(NamedTuple):
    # Scalars are 0-d arrays on the state's device: a step moves nothing to the host.
    x: Any
    r: Any  # b - A x, by recurrence
    s: Any  # A^T r
    p: Any
    gamma: Any  # ||s||^2
    r_norm: Any
    lsq_rtol: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class CGNE(NormalEquationsSolver):
    r"""CG on the normal equations ``A^T A x = A^T b`` (CGLS form).

    For the adjoint system ``A = I - J^T`` these are Eq. 16 of the paper,
    ``(I - J)(I - J^T) z = (I - J) g``. Each step costs one product with ``A`` (a VJP)
    and one with ``A^T`` (a JVP).

    Parameters
    ----------
    max_steps, rtol, atol : see :class:`AbstractSolver`
        Stopping test: ``norm(b - A x_k) <= max(rtol * norm(b), atol)``, with the residual
        carried by recurrence (no extra product) and verified, before ``CONVERGED`` is
        claimed, by one recomputation (see ``verify``); where the recurrence drifted, CG
        restarts from the true residual.
    lsq_rtol : float, optional
        Report ``Status.LEAST_SQUARES`` when ``norm(A^T r) <= lsq_rtol * ||A|| * norm(r)``
        while the residual test fails: an inconsistent, singular system whose
        least-squares solution is reached. Default ``max(1e-10, 100 eps)``.

    Notes
    -----
    This differs from CG applied to the normal operator in that it updates the residual
    ``r = b - A x`` as well as ``A^T r`` (Björck's CGLS), so the common stopping test
    costs no extra product and rounding errors are smaller. CGNE squares the condition
    number of ``I - J``: its error contracts like ``(kappa - 1) / (kappa + 1)`` per step
    with ``kappa = cond(I - J)``, slower than GMRES on the same system. It needs no
    contraction and always reduces ``||x - x_*||_{A^T A}``.

    References
    ----------
    Liao et al., ICML 2018, Eq. 16 (CG-RBP). Björck, "Numerical Methods for Least
    Squares Problems", SIAM 1996, Sec. 7.4 (CGLS).
    """

    def _begin(self, a, x, r, lsq):
        xp = a.xp
        s = a.rmv(r)
        return _State(x, r, s, s, *_backend.reductions(xp, (s, s), (r,)), lsq)

    def step(self, a, b, state):
        # The vectors and the raw inner products, on the device; the scalar logic is in
        # `judge`, on the host. A finished recurrence (gamma = 0: p = 0, delta = 0) takes
        # a step of length zero; a breakdown (delta = 0 < gamma) is flagged there, and
        # the loop keeps the state the step started from.
        xp = a.xp
        q = a.mv(state.p)
        delta = _backend.vdot(xp, q, q)
        alpha = state.gamma / nonzero(xp, delta)
        x = state.x + alpha * state.p
        r = state.r - alpha * q
        s = a.rmv(r)
        # Three independent reductions, one all-reduce on a split state (delta's, above,
        # is the step's other: alpha needs it before r and s exist).
        gamma, r_norm, p_norm2 = _backend.reductions(xp, (s, s), (r,), (state.p, state.p))
        beta = gamma / nonzero(xp, state.gamma)
        p = s + beta * state.p
        records = (state.gamma, state.r_norm, delta, gamma, p_norm2, alpha, beta, state.lsq_rtol)
        return _State(x, r, s, p, gamma, r_norm, state.lsq_rtol), StepReport(r_norm, records=records)

    def judge(self, report, anorm):
        gamma_old, r_old, delta, gamma, p_norm2, alpha, beta, lsq = report.records
        anorm = anorm or 0.0
        finished = gamma_old == 0  # A^T r = 0 already: x solves the (least-squares) problem
        moved = delta > 0
        if moved and p_norm2 > 0:
            # ||A p|| / ||p|| is a lower bound on ||A||; skipped where ||p||^2 underflows to
            # zero (float32 with a tiny direction).
            anorm = max(anorm, math.sqrt(delta / p_norm2))
        r_norm = report.residual
        residual = r_old if (finished or delta == 0) else (r_norm if moved else math.nan)
        least_squares = finished and r_old > 0
        if not self.fixed_budget and not finished:
            least_squares = math.sqrt(gamma) <= lsq * anorm * r_norm
        step = alpha * math.sqrt(p_norm2) if math.isfinite(alpha * p_norm2) else math.nan
        report = report._replace(residual=residual, breakdown=not finished and not moved,
                                 least_squares=least_squares, records=(alpha, beta, step, anorm, gamma))
        return report, anorm

    def solution(self, a, b, state):
        return state.x

    def finish(self, a, b, state, trace):
        # CG's step lengths alpha_j and ratios beta_j = gamma_{j+1} / gamma_j give the
        # Lanczos matrix of A^T A; each restart begins a new one.
        sigma, settled, updates = segment_estimates(trace, lanczos_sigma_min)
        if trace.records:
            r_norm, (_, _, _, anorm, gamma) = trace.residuals[-1], trace.records[-1]
        else:
            anorm, (r_norm, gamma) = 0.0, _backend.to_host(a.xp, state.r_norm, state.gamma)
        return Finish(sigma_min=sigma, sigma_settled=settled, updates=updates, residual_norm=r_norm,
                      error_bound=krylov_error_bound(a, r_norm),
                      info={"anorm": anorm, "arnorm": math.sqrt(gamma)})
