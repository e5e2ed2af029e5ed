"""Conjugate gradients on the normal equations: CG-RBP (Eq. 16 of Liao et al. 2018)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

from .. import _backend
from ._base import AbstractSolver, StepReport
from .._error_estimate import combine_sigma, lanczos_sigma_min, push, record_update, unroll
from ._common import check_lsq_rtol, default_lsq_rtol, krylov_error_bound, start

__all__ = ["CGNE"]


class _State(NamedTuple):
    x: Any
    r: Any  # b - A x, by recurrence
    s: Any  # A^T r
    p: Any
    gamma: float  # ||s||^2
    r_norm: float
    anorm: float  # running lower estimate of ||A||
    lsq_rtol: float
    # CG's step lengths alpha_j and ratios beta_j = gamma_{j+1} / gamma_j (host), for the
    # Lanczos matrix of A^T A: a chain of pairs (see _error_estimate.push)
    coefficients: tuple = ()
    sigma_min: float = math.inf  # from the CG runs before a restart
    updates: tuple = (None, None)  # (last ||x_k - x_{k-1}||, largest ratio of them): record_update


@dataclasses.dataclass(frozen=True, kw_only=True)
class CGNE(AbstractSolver):
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

    lsq_rtol: float | None = None

    needs_rmv: ClassVar[bool] = True
    needs_square: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        check_lsq_rtol(self.lsq_rtol)

    def init(self, a, b, x0, tol):
        x, r = start(a, b, x0)
        lsq = self.lsq_rtol if self.lsq_rtol is not None else default_lsq_rtol(a)
        return self._begin(a, x, r, 0.0, lsq)

    def restart(self, a, b, state, x, r):
        # The recurrence for r drifted from b - A x: start CG again from the true residual.
        sigma, _ = self._sigma(state)
        return self._begin(a, x, r, state.anorm, state.lsq_rtol)._replace(sigma_min=sigma, updates=state.updates)

    def _begin(self, a, x, r, anorm, lsq):
        xp = a.xp
        s = a.rmv(r)
        gamma, r_norm2 = _backend.to_floats(xp, _backend.vdot(xp, s, s), _backend.vdot(xp, r, r))
        return _State(x, r, s, s, gamma, math.sqrt(r_norm2), anorm, lsq)

    def step(self, a, b, state):
        xp = a.xp
        if state.gamma == 0.0:
            # A^T r = 0: x already solves the (least-squares) problem.
            return state, StepReport(state.r_norm, least_squares=state.r_norm > 0)
        q = a.mv(state.p)
        delta = _backend.to_float(_backend.vdot(xp, q, q))
        if not delta > 0:
            return state, StepReport(state.r_norm if delta == 0 else math.nan, breakdown=True)
        alpha = state.gamma / delta
        x = state.x + alpha * state.p
        r = state.r - alpha * q
        s = a.rmv(r)
        gamma, r_norm2, p_norm2 = _backend.to_floats(
            xp, _backend.vdot(xp, s, s), _backend.vdot(xp, r, r), _backend.vdot(xp, state.p, state.p)
        )
        r_norm = math.sqrt(r_norm2)
        p = s + (gamma / state.gamma) * state.p
        # ||A p|| / ||p|| is a lower bound on ||A||; skip it when ||p||^2 underflows to zero
        # (float32 with a tiny direction), which would otherwise divide by zero.
        anorm = max(state.anorm, math.sqrt(delta / p_norm2)) if p_norm2 > 0 else state.anorm
        least_squares = not self.fixed_budget and math.sqrt(gamma) <= state.lsq_rtol * anorm * r_norm
        new = _State(x, r, s, p, gamma, r_norm, anorm, state.lsq_rtol,
                     push(state.coefficients, (alpha, gamma / state.gamma)), state.sigma_min,
                     record_update(state.updates, alpha * math.sqrt(p_norm2)))
        return new, StepReport(r_norm, least_squares=least_squares)

    def solution(self, a, b, state):
        return state.x

    @staticmethod
    def _sigma(state) -> tuple[float, bool]:
        """sqrt(lambda_min) of CG's Lanczos matrix of A^T A (>= sigma_min(A)), and whether it settled."""
        st, ra = unroll(state.coefficients)
        return combine_sigma([lanczos_sigma_min(st[:-1], ra[:-1]), lanczos_sigma_min(st, ra)] if st else [],
                             state.sigma_min)

    def finish(self, a, b, state):
        sigma, settled = self._sigma(state)
        return {
            "sigma_min": sigma,
            "sigma_settled": settled,
            "updates": state.updates,
            "residual_norm": state.r_norm,
            "error_bound": krylov_error_bound(a, state.r_norm),
            "info": {"anorm": state.anorm, "arnorm": math.sqrt(state.gamma)},
        }
