"""Restarted GMRES of Saad and Schultz (1986)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from .. import _backend
from .._verify import true_residual
from ._base import AbstractSolver, StepReport
from .._error_estimate import combine_sigma, record_update, triangular_sigma_min
from ._common import krylov_error_bound

__all__ = ["GMRES"]

_DGKS = 1.0 / math.sqrt(2.0)  # Daniel, Gragg, Kaufman and Stewart (1976)
_SINGULAR = 1e-13  # |R_kk| <= this * ||A v_k||: a singular Krylov space, a breakdown


class _State(NamedTuple):
    x: Any  # the start of the current cycle
    r: Any | None  # b - A x, known exactly at a cycle's start
    r_norm: float | None  # its norm; None while unknown
    basis: Any  # (restart + 1, n) rows: the cycle's orthonormal Arnoldi vectors, flattened
    size: int  # how many rows of `basis` are filled
    hessenberg: tuple  # columns of the rotated Hessenberg matrix (host float64)
    cosines: tuple
    sines: tuple
    rhs: tuple  # rotated beta * e_1 (host float64)
    estimate: float  # |rhs[-1]|: the residual of the cycle's best iterate
    tol: float  # the loop's tolerance, to decide when to verify the true residual
    sigma_min: float = math.inf  # smallest sigma_min(H_bar) of the finished cycles (>= sigma_min(A))
    settled: bool = False  # whether that cycle's sigma_min had stopped falling
    updates: tuple = (None, None)  # record_update of ||x_k - x_{k-1}|| over the finished cycles


@dataclasses.dataclass(frozen=True, kw_only=True)
class GMRES(AbstractSolver):
    r"""GMRES(m): minimal residual over a Krylov space, restarted every ``restart`` steps.

    Parameters
    ----------
    max_steps, rtol, atol : see :class:`AbstractSolver`
        Stopping test: ``norm(b - A x_k) <= max(rtol * norm(b), atol)``. The Arnoldi
        estimate is used inside a cycle; once it meets the tolerance the iterate is
        formed and its residual recomputed with one product, and only that true
        residual ends the solve (so ``Result.residual_norm`` is exact).
    restart : int
        Krylov vectors kept before a restart; memory is ``restart + 2`` state-sized arrays.
        Capped at the problem size ``n`` (a Krylov space has at most ``n`` dimensions).

    Notes
    -----
    Needs only products with ``A`` (for ``A = I - J^T``: VJPs), no contraction and no
    symmetry: the standard method for non-symmetric systems. Without restarts it finds
    the exact solution in at most ``n`` steps; restarted, it can stagnate on indefinite
    problems (raise ``restart``). Orthogonalisation is classical Gram-Schmidt with DGKS
    reorthogonalisation (a second pass only when the first cancelled more than
    1/sqrt(2) of the vector): as stable as modified Gram-Schmidt, and each pass is
    two matrix-vector products with the stored basis, friendlier to GPUs. The small least-squares problem is solved on
    the host in float64.

    References
    ----------
    Y. Saad and M. H. Schultz, "GMRES: a generalized minimal residual algorithm for
    solving nonsymmetric linear systems", SIAM J. Sci. Stat. Comput. 7(3), 1986.
    """

    restart: int = 50

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.restart, bool) or not isinstance(self.restart, int) or self.restart < 1:
            raise ValueError(f"restart must be an int >= 1; got {self.restart!r}")

    def init(self, a, b, x0, tol):
        if x0 is None:
            x = a.xp.zeros(a.in_shape, dtype=b.dtype, device=a.device)
            r = b
        else:
            x, r = x0, b - a.mv(x0)
        return _State(x, r, None, None, 0, (), (), (), (), math.inf, tol)

    @staticmethod
    def _cycle_sigma(state) -> tuple[float, bool]:
        """sigma_min of this cycle's H_bar (so far), combined with the earlier cycles'."""
        columns = state.hessenberg
        pair = [triangular_sigma_min(columns[:-1]), triangular_sigma_min(columns)] if columns else []
        return combine_sigma(pair, state.sigma_min, state.settled)

    def step(self, a, b, state):
        xp = a.xp
        tol = state.tol
        if state.size == 0:
            r_norm = _backend.to_float(_backend.norm(xp, state.r))
            if r_norm == 0 or not math.isfinite(r_norm):
                return state._replace(r_norm=r_norm, estimate=r_norm), StepReport(r_norm)
            # Rows already written are never changed within a cycle, so earlier states
            # that share this matrix stay valid; a restart allocates a new one.
            basis = xp.zeros((self._cycle(a) + 1, a.in_space.size), dtype=b.dtype, device=a.device)
            basis[0, :] = xp.reshape(state.r, (-1,)) * (1.0 / r_norm)
            state = state._replace(basis=basis, size=1, rhs=(r_norm,), r_norm=r_norm, estimate=r_norm)
        k = state.size - 1
        filled = state.basis[: state.size, :]
        w = xp.reshape(a.mv(xp.reshape(filled[k, :], a.in_shape)), (-1,))
        # Classical Gram-Schmidt (two matrix-vector products a pass), repeated only when
        # the pass cancelled most of w: the DGKS criterion, as stable as always
        # repeating and half the memory traffic when, as usual, no repeat is needed.
        coefficients = np.zeros(state.size)
        h = xp.matmul(filled, w)
        before = _backend.to_float(_backend.norm(xp, w))
        w = w - xp.matmul(h, filled)
        coefficients += _backend.to_numpy(h).astype(np.float64)
        w_norm = _backend.to_float(_backend.norm(xp, w))
        if w_norm < _DGKS * before:
            h = xp.matmul(filled, w)
            w = w - xp.matmul(h, filled)
            coefficients += _backend.to_numpy(h).astype(np.float64)
            w_norm = _backend.to_float(_backend.norm(xp, w))
        column = list(coefficients) + [w_norm]
        for i, (c, s) in enumerate(zip(state.cosines, state.sines)):
            column[i], column[i + 1] = c * column[i] + s * column[i + 1], -s * column[i] + c * column[i + 1]
        denom = math.hypot(column[k], column[k + 1])
        if not (math.isfinite(denom) and math.isfinite(before)):
            # The product (or its norm) overflowed: report it as non-finite, not as a
            # singular space (numpy >= 2.5 keeps some of these sums finite where older ones do not).
            return state, StepReport(math.nan, breakdown=True)
        if denom <= _SINGULAR * before:
            # The new Hessenberg column depends on the earlier ones to rounding: A is
            # singular on this Krylov space, and the least-squares update is meaningless.
            return state, StepReport(state.estimate, breakdown=True)
        c, s = column[k] / denom, column[k + 1] / denom
        column[k], column[k + 1] = denom, 0.0
        rhs = list(state.rhs)
        rhs.append(-s * rhs[k])
        rhs[k] = c * rhs[k]
        estimate = abs(rhs[-1])
        lucky = w_norm <= 1e-14 * denom  # the Krylov space is invariant: the cycle's answer is exact
        cycle = self._cycle(a)
        if not lucky and state.size < cycle:
            state.basis[state.size, :] = w * (1.0 / w_norm)
        state = state._replace(
            hessenberg=state.hessenberg + (np.asarray(column[: k + 1]),),
            cosines=state.cosines + (c,),
            sines=state.sines + (s,),
            rhs=tuple(rhs),
            estimate=estimate,
            size=state.size if lucky else state.size + 1,
        )
        if estimate <= tol or lucky or len(state.hessenberg) == cycle:
            x = self._form(xp, a, state)
            r, r_norm, floor = true_residual(a, b, x)
            # After a lucky breakdown (an invariant Krylov space) whose true residual still
            # misses the tolerance, rounding is what is left: restart from the better x. A
            # singular A shows up instead as a zero column (`denom == 0` above).
            sigma, settled = self._cycle_sigma(state)
            restarted = _State(x, r, r_norm, None, 0, (), (), (), (), r_norm, tol, sigma, settled,
                               _with_cycle_updates(state))
            return restarted, StepReport(r_norm, verified=True, floor=floor)
        return state, StepReport(estimate)

    def _cycle(self, a) -> int:
        """The restart length used: ``restart``, capped at the problem size."""
        return max(1, min(self.restart, a.in_space.size))

    def _form(self, xp, a, state):
        if not state.hessenberg:
            return state.x
        m = len(state.hessenberg)
        upper = np.zeros((m, m))
        for j, col in enumerate(state.hessenberg):
            upper[: len(col), j] = col
        y = scipy.linalg.solve_triangular(upper, np.asarray(state.rhs[:m]), lower=False)
        y = xp.asarray(y, dtype=state.x.dtype, device=a.device)
        return state.x + xp.reshape(xp.matmul(y, state.basis[:m, :]), a.in_shape)

    def solution(self, a, b, state):
        return self._form(a.xp, a, state)

    def finish(self, a, b, state):
        residual = state.r_norm if not state.hessenberg else state.estimate
        sigma, settled = self._cycle_sigma(state)
        return {
            "sigma_min": sigma,
            "sigma_settled": settled,
            "updates": _with_cycle_updates(state),
            "residual_norm": residual,
            "error_bound": krylov_error_bound(a, residual),
            "residual_kind": "recurrence" if state.hessenberg else "verified",
            "info": {"residual_is_estimate": bool(state.hessenberg)},
        }


def _with_cycle_updates(state) -> tuple:
    """The run's update record (:func:`record_update`) with the current cycle's steps folded in."""
    record = state.updates
    for norm in _cycle_updates(state):
        record = record_update(record, norm)
    return record


def _cycle_updates(state) -> tuple:
    """``||x_k - x_{k-1}||`` for every step of the current cycle: with an orthonormal basis
    it is ``||y_k - [y_{k-1}; 0]||`` of the small triangular solves (host, float64)."""
    m = len(state.hessenberg)
    if m == 0:
        return ()
    upper = np.zeros((m, m))
    for j, col in enumerate(state.hessenberg):
        upper[: len(col), j] = col
    rhs = np.asarray(state.rhs[:m])
    previous = np.zeros(0)
    norms = []
    for k in range(1, m + 1):
        with np.errstate(all="ignore"):
            y = scipy.linalg.solve_triangular(upper[:k, :k], rhs[:k], lower=False, check_finite=False)
        padded = np.concatenate([previous, np.zeros(k - previous.size)])
        norms.append(float(np.linalg.norm(y - padded)))
        previous = y
    return tuple(norms)

