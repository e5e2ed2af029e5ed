"""Restarted GMRES of Saad and Schultz (1986)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import _backend
from .._algebra import IdentityMinus
from .._error_estimate import combine_sigma, record_update
from .._gram_schmidt import orthogonalise, project_out
from .._verify import true_residual
from ._base import AbstractSolver, Finish, StepReport
from ._common import krylov_error_bound, quotient
from ._hessenberg import Rotated, cycle_updates

__all__ = ["GMRES"]

# A fixed budget cannot decide on a second pass; one pass leaves v_{k+1} orthogonal to
# V to about eps * ||w|| / ||w - V h||, harmless unless the pass cancelled this much.
_SKEWED = 1e-3


class _State(NamedTuple):
    x: Any  # the start of the current cycle
    r: Any  # b - A x, known exactly at a cycle's start (None once it is v_0)
    r_norm: Any  # its norm (0-d array; a host float once read)
    basis: Any  # (m, n) rows, allocated once per solve: the cycle's orthonormal vectors
    size: int  # how many rows of `basis` the cycle has filled
    rotated: Rotated  # the cycle's Hessenberg matrix, rotated (host)
    pending: tuple  # deferred run: this cycle's device columns, read at its end
    tol: float
    deferred: bool
    sigma_min: float = math.inf  # smallest sigma_min(H_bar) of the finished cycles (>= sigma_min(A))
    settled: bool = False  # whether that cycle's sigma_min had stopped falling
    updates: tuple = (None, None)  # record_update of ||x_k - x_{k-1}|| over the finished cycles
    history: tuple = ()  # deferred run: the host residuals of the finished cycles' steps
    skewed: bool = False  # deferred run: a step's single Gram-Schmidt pass cancelled below _SKEWED
    halted: bool = False  # deferred run: a cycle broke down; the remaining steps do nothing


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
        Krylov vectors kept before a restart. The basis, ``restart`` state-sized
        arrays (the cycle's last vector is never stored: only its norm is used), is allocated once per solve and reused by every cycle (written in place
        where the array library allows it; JAX arrays get functional updates). Capped at
        the problem size ``n`` (a Krylov space has at most ``n`` dimensions).

    Notes
    -----
    Needs only products with ``A`` (for ``A = I - J^T``: VJPs), no contraction and no
    symmetry: the standard method for non-symmetric systems. Without restarts it finds
    the exact solution in at most ``n`` steps; restarted, it can stagnate on indefinite
    problems (raise ``restart``).

    For ``A = I - M`` (every adjoint system, ``M = J^T``) the Arnoldi process runs on
    ``M`` itself: the Krylov spaces of ``A`` and ``M`` are the same and ``A``'s
    Hessenberg matrix is ``[I; 0] - H_M``. On ``A`` the vector ``A v = v - M v`` is
    dominated by ``v`` whenever ``||M|| < 1``, so a first Gram-Schmidt pass would
    always cancel most of it and need a second; on ``M`` it rarely does.
    Orthogonalisation is classical Gram-Schmidt (two matrix-vector products with the
    stored basis) with DGKS reorthogonalisation: a second pass only when the first
    cancelled more than ``1/sqrt(2)`` of the vector, detected from the first pass's own
    coefficients (``||w - V h||^2 = ||w||^2 - ||h||^2``). Each step moves its Hessenberg
    column to the host in one transfer (a second only with that second pass); the small
    least-squares problem is solved there in float64. On a fixed budget
    (``rtol = atol = 0``) the columns stay on the device until the cycle ends (at the
    end of the solve for ``max_steps <= restart``): no transfer a step. No host decision
    is possible then, so a pass is never repeated: one pass leaves the new vector
    orthogonal to about ``eps ||w|| / ||w - V h||``, harmless unless the pass cancelled
    more than a factor 1000; where one did, the returned residual is recomputed (one more
    product, ``info["reorthogonalisation_skipped"]``) so that it stays true.

    References
    ----------
    Y. Saad and M. H. Schultz, "GMRES: a generalized minimal residual algorithm for
    solving nonsymmetric linear systems", SIAM J. Sci. Stat. Comput. 7(3), 1986.
    J. W. Daniel, W. B. Gragg, L. Kaufman and G. W. Stewart, "Reorthogonalization and
    stable algorithms for updating the Gram-Schmidt QR factorization", Math. Comp. 30, 1976.
    """

    restart: int = 50

    # The iterate is formed from the basis only at a cycle's end (or on demand).
    forms_iterate: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.restart, bool) or not isinstance(self.restart, int) or self.restart < 1:
            raise ValueError(f"restart must be an int >= 1; got {self.restart!r}")

    def _cycle(self, a) -> int:
        """The restart length used: ``restart``, capped at the problem size (the whole
        state's, when it is split over processes)."""
        return max(1, min(self.restart, a.in_space.global_size))

    def init(self, a, b, x0, tol, *, deferred=False):
        xp = a.xp
        if x0 is None:
            x, r = xp.zeros(a.in_shape, dtype=b.dtype, device=a.device), b
        else:
            x, r = x0, b - a.mv(x0)
        # The basis is allocated once (never zeroed: only filled rows are ever read).
        # m rows: v_m itself is never needed (only its norm, h_{m, m-1}, which is on the host).
        basis = xp.empty((self._cycle(a), a.in_space.size), dtype=b.dtype, device=a.device)
        return _State(x, r, _backend.norm(xp, r), basis, 0, Rotated.empty(), (), tol, deferred)

    def step(self, a, b, state):
        xp = a.xp
        if state.halted:
            return state, StepReport(None)
        first = state.size == 0
        if first and not state.deferred:
            # A cycle starts from ||r||: read once (the first cycle's; a restart's is on
            # the host already), and nothing to do from a zero residual.
            r_norm = state.r_norm if isinstance(state.r_norm, float) else _backend.to_float(state.r_norm)
            state = state._replace(r_norm=r_norm, rotated=Rotated.start(r_norm))
            if r_norm == 0 or not math.isfinite(r_norm):
                return state, StepReport(r_norm)
        if first:
            # v_0 = r / ||r||, on the device (in a fixed budget ||r|| = 0 gives v_0 = 0 and
            # zero columns, read at the cycle's end).
            v0 = xp.reshape(state.r, (-1,)) * quotient(xp, 1.0, state.r_norm)
            # r lives on as v_0: the solve holds x and the basis, restart + 2 arrays.
            state = state._replace(basis=_backend.set_row(xp, state.basis, 0, v0), size=1, r=None)
        k = state.size - 1
        filled = state.basis[: k + 1, :]
        shifted = isinstance(a, IdentityMinus)
        operator = a.op if shifted else a
        w = xp.reshape(operator.mv(xp.reshape(filled[k, :], a.in_shape)), (-1,))
        if state.deferred:
            return self._deferred_step(a, b, state, w, filled, shifted)
        w, coefficients, w_norm, before = orthogonalise(xp, filled, w)  # the step's transfer
        rotated, verdict = state.rotated.absorb(*_column(coefficients, w_norm, before, shifted))
        if verdict == "nonfinite":
            return state, StepReport(math.nan, breakdown=True)
        if verdict == "singular":
            # The new column depends on the earlier ones to rounding: A is singular on this
            # Krylov space, and the least-squares update is meaningless.
            return state, StepReport(state.rotated.estimate, breakdown=True)
        lucky = verdict == "lucky"  # the Krylov space is invariant: the cycle's answer is exact
        cycle = self._cycle(a)
        basis = state.basis
        if not lucky and state.size < cycle:
            basis = _backend.set_row(xp, basis, state.size, w, 1.0 / w_norm)
        state = state._replace(basis=basis, rotated=rotated, size=state.size if lucky else state.size + 1)
        if rotated.estimate <= state.tol or lucky or rotated.width == cycle:
            state, r_norm, floor = self._restart(a, b, state)
            return state, StepReport(r_norm, verified=True, floor=floor)
        return state, StepReport(rotated.estimate)

    def _deferred_step(self, a, b, state, w, filled, shifted):
        """A step of a fixed budget: nothing leaves the device until the cycle ends."""
        xp = a.xp
        k = state.size - 1
        w, h, w_sq = project_out(xp, filled, w, (w, w))
        # ||w - V h||^2 = ||w||^2 - ||h||^2 (Pythagoras; V orthonormal): no second reduction
        # (h is whole on every rank of a split state: its norm is this rank's own).
        w_norm_sq = w_sq - _backend.vdot(_backend.local(xp), h, h)
        w_norm = _backend.sqrt_nonnegative(xp, w_norm_sq)
        cancelled = w_norm_sq < _SKEWED**2 * w_sq  # ||w|| < _SKEWED ||w_before||, without two roots
        cycle = self._cycle(a)
        basis = state.basis
        if state.size < cycle:
            basis = _backend.set_row(xp, basis, state.size, w, quotient(xp, 1.0, w_norm))
        pending = state.pending + ((h, w_norm, cancelled, w_sq, *((state.r_norm,) if k == 0 else ())),)
        state = state._replace(basis=basis, size=state.size + 1, pending=pending)
        if len(pending) == cycle:
            state = self._read_cycle(a, state, shifted)
            stop = state.rotated.stop
            if stop is None or stop[1] == "lucky":
                state, _, _ = self._restart(a, b, state)
            else:
                state = state._replace(halted=True)
        return state, StepReport(None)

    def _read_cycle(self, a, state, shifted):
        """The cycle's device columns on the host (one transfer) and rotated."""
        values = _backend.to_host(a.xp, *[v for column in state.pending for v in column])
        r_norm, columns, scales, skewed, at = None, [], [], state.skewed, 0
        for j, column in enumerate(state.pending):
            size = j + 1
            coefficients = np.asarray(values[at: at + size])
            w_norm, cancelled, w_sq = values[at + size], values[at + size + 1], values[at + size + 2]
            at += size + 3
            if j == 0:
                r_norm = values[at]
                at += 1
            skewed = skewed or bool(cancelled)
            column, scale = _column(coefficients, w_norm, math.sqrt(max(w_sq, 0.0)), shifted)
            columns.append(column)
            scales.append(scale)
        rotated = Rotated.start(r_norm).absorb_all(columns, scales)
        return state._replace(r_norm=r_norm, rotated=rotated, pending=(), skewed=skewed)

    def settle(self, a, b, state, reports):
        """A deferred run's residual estimates: the finished cycles' from the state, the
        current cycle's from its columns (one transfer)."""
        if state.pending:
            state = self._read_cycle(a, state, isinstance(a, IdentityMinus))
        steps = list(state.history) + list(state.rotated.reports(verified_end=False))
        return state, steps[: len(reports)] + [StepReport(math.nan)] * (len(reports) - len(steps))

    def _restart(self, a, b, state):
        """Form the cycle's iterate, recompute its residual (one product) and start a new
        cycle from it."""
        x = self._form(a, state)
        r, r_norm, floor = true_residual(a, b, x)
        rotated = state.rotated
        sigma, settled, updates = _with_cycle(state)
        history = state.history
        if state.deferred:
            # The cycle's last step reports the recomputed residual, as a tolerance run does.
            history = history + tuple(rotated.reports(verified_end=True, end_residual=r_norm))
        restarted = _State(x, r, r_norm, state.basis, 0, Rotated.start(r_norm), (), state.tol, state.deferred,
                           sigma, settled, updates, history, state.skewed, state.halted)
        return restarted, r_norm, floor

    def _form(self, a, state):
        """``x_0 + V_m y`` with ``y`` the cycle's least-squares solution (host, float64)."""
        y = state.rotated.solve()
        if y is None:
            return state.x
        xp = a.xp
        y = xp.asarray(y, dtype=state.x.dtype, device=a.device)
        return state.x + xp.reshape(y @ state.basis[: y.shape[0], :], a.in_shape)

    def solution(self, a, b, state):
        if state.pending:
            state = self._read_cycle(a, state, isinstance(a, IdentityMinus))
        return self._form(a, state)

    def finish(self, a, b, state, trace):
        rotated = state.rotated
        sigma, settled, updates = _with_cycle(state)
        info = {"residual_is_estimate": rotated.width > 0}
        if rotated.width == 0:
            residual, kind = _backend.to_float(state.r_norm), "verified"
        elif state.skewed:
            # A fixed budget whose single Gram-Schmidt pass cancelled: the estimate may
            # have drifted from the truth, so the returned residual is recomputed.
            _, residual, info["attainable"] = true_residual(a, b, self._form(a, state))
            kind, info["residual_is_estimate"], info["reorthogonalisation_skipped"] = "verified", False, True
        else:
            residual, kind = rotated.estimate, "recurrence"
        return Finish(sigma_min=sigma, sigma_settled=settled, updates=updates, residual_norm=residual,
                      error_bound=krylov_error_bound(a, residual), residual_kind=kind, info=info)


def _column(coefficients, w_norm: float, before: float, shifted: bool) -> tuple:
    """Hessenberg column ``k`` of ``A`` (host) from Arnoldi's coefficients, and the scale
    its singularity test reads (:meth:`Rotated.absorb`).

    On ``M`` (``shifted``, ``A = I - M``): ``A v_k = v_k - M v_k``, so the column is
    ``e_k - [h; ||w||]``, whose entries carry rounding of size ``1 + ||M v_k||``.
    """
    column = np.append(coefficients, w_norm)
    if not shifted:
        return column, 0.0
    column = -column
    column[len(coefficients) - 1] += 1.0
    return column, 1.0 + before


def _with_cycle(state) -> tuple:
    """``(sigma_min, settled, updates)`` of the run with the current cycle folded in."""
    rotated = state.rotated
    sigma, settled = combine_sigma(rotated.sigma_pair(), state.sigma_min, state.settled)
    updates = state.updates
    for norm in cycle_updates(rotated):
        updates = record_update(updates, norm)
    return sigma, settled, updates

