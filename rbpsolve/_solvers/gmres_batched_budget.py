"""GMRES per sample on a fixed budget (``rtol = atol = 0``): no host transfer until a
restart cycle ends.

As the unbatched solver's deferred mode (:meth:`GMRES._deferred_step`): one classical
Gram-Schmidt pass a step (a second pass needs a host decision; where the first cancelled
more than a factor 1000, the returned residual is recomputed), each step's Hessenberg
column kept on the device, the cycle's columns read in one transfer at its end and
rotated on the host, one Krylov space a sample. With no tolerance to meet, every sample
is at the same place in the same cycle; a sample whose cycle broke down (a singular
column, a non-finite value) halts and is frozen, the others go on.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .._algebra import IdentityMinus
from .._batched import mask_like
from .._verify import residual_norms
from ._base import StepReport
from ._common import quotient
from ._hessenberg import Rotated
from .gmres import _SKEWED, _column, _with_cycle
from .gmres_batched import BatchedGMRES, _Batch, _project, _set_rows

__all__ = ["BudgetGMRES"]


class BudgetGMRES(BatchedGMRES):
    """:class:`BatchedGMRES` for a fixed budget: :meth:`step` moves nothing to the host
    before its cycle ends; :meth:`settle` gives each sample's reports afterwards."""

    def init(self, a, b, x0, tols) -> _Batch:
        state = super().init(a, b, x0, tols)
        state.pending = []  # this cycle's device columns: (h, ||w||, cancelled, ||w_before||^2)
        state.start_norm = _backend.norm(a.xp, state.r)  # (B, 1): read with the cycle
        state.history = [[] for _ in state.k]  # each sample's reports of finished cycles
        state.halted = [False] * len(state.k)
        state.skewed = [False] * len(state.k)
        return state

    def step(self, a, b, state: _Batch, active):
        xp = a.xp
        batch, cycle = state.basis.shape[0], state.basis.shape[1]
        live = [bool(f) and not h for f, h in zip(active, state.halted)]
        size = len(state.pending)
        if size == 0:
            v0 = xp.reshape(state.r, (batch, -1)) * xp.reshape(quotient(xp, 1.0, state.start_norm), (batch, 1))
            state.basis = _set_rows(xp, state.basis, list(range(batch)), np.zeros(batch, dtype=np.int64), v0, None)
        rows = state.basis[:, size, :]
        rows = xp.where(mask_like(xp, live, rows), rows, 0.0)  # halted samples ride along on zeros
        shifted = isinstance(a, IdentityMinus)
        w = xp.reshape((a.op if shifted else a).mv(xp.reshape(rows, a.in_shape)), (batch, -1))
        filled = state.basis[:, : size + 1, :]
        w_sq = xp.sum(w * w, axis=1)
        w, h = _project(xp, filled, w, None)  # every sample at the same place in its cycle
        # ||w - V h||^2 = ||w||^2 - ||h||^2 (Pythagoras): no second reduction.
        w_norm_sq = w_sq - _backend.local(xp).sum(h * h, axis=1)  # h is whole on every rank
        w_norm = xp.sqrt(xp.maximum(w_norm_sq, 0.0))
        if size + 1 < cycle:
            scaled = w * xp.reshape(quotient(xp, 1.0, w_norm), (batch, 1))  # v_{k+1} = w / ||w||
            state.basis = _set_rows(xp, state.basis, list(range(batch)), np.full(batch, size + 1), scaled, None)
        state.pending.append((h, w_norm, w_norm_sq < _SKEWED**2 * w_sq, w_sq))
        if len(state.pending) == cycle:
            self._close_cycle(a, b, state, live)
        return state, None

    def _read(self, a, state: _Batch, live):
        """The cycle's columns on the host (one transfer), rotated a sample."""
        xp, batch = a.xp, len(state.k)
        fields = [state.start_norm] + [v for column in state.pending for v in column]
        flat = np.asarray(_backend.to_host(xp, *fields))
        start, at, columns = flat[:batch], batch, [[] for _ in range(batch)]
        shifted = isinstance(a, IdentityMinus)
        for j in range(len(state.pending)):
            h = np.reshape(flat[at: at + batch * (j + 1)], (batch, j + 1))
            at += batch * (j + 1)
            w_norm, cancelled, w_sq = (flat[at + q * batch: at + (q + 1) * batch] for q in range(3))
            at += 3 * batch
            for i in range(batch):
                state.skewed[i] = state.skewed[i] or (live[i] and bool(cancelled[i]))
                columns[i].append(_column(h[i], w_norm[i], math.sqrt(max(w_sq[i], 0.0)), shifted))
        for i in range(batch):
            if live[i]:
                state.r_norm[i] = float(start[i])
                state.rotated[i] = Rotated.start(start[i]).absorb_all([c for c, _ in columns[i]],
                                                                      [s for _, s in columns[i]])
                state.k[i] = state.rotated[i].width
        state.pending = []

    def _close_cycle(self, a, b, state: _Batch, live) -> None:
        """Read and rotate the cycle, form each sample's iterate, recompute the residuals
        (one batched product) and start the next cycle."""
        self._read(a, state, live)
        going = [live[i] and (state.rotated[i].stop is None or state.rotated[i].stop[1] == "lucky")
                 for i in range(len(live))]
        state.x = self.solution(a, b, state, only=[i for i in range(len(live)) if going[i]])
        r, values, _ = residual_norms(a, b, state.x)
        ends = np.reshape(np.asarray(values), (-1, len(live)))[0]
        for i in range(len(live)):
            if not live[i]:
                continue
            if not going[i]:
                state.halted[i] = True
                continue
            solo = state.solo[i]._replace(rotated=state.rotated[i], size=int(state.k[i]))
            sigma, settled, updates = _with_cycle(solo)
            state.solo[i] = solo._replace(sigma_min=sigma, settled=settled, updates=updates)
            state.history[i].extend(state.rotated[i].reports(verified_end=True, end_residual=float(ends[i])))
            state.rotated[i], state.k[i], state.r_norm[i] = Rotated.empty(), 0, float(ends[i])
        state.r = r
        state.start_norm = _backend.norm(a.xp, r)

    def settle(self, a, b, state: _Batch, steps: int, active) -> list:
        """Each sample's reports of the ``steps`` steps taken (host), after the budget."""
        live = [bool(f) and not h for f, h in zip(active, state.halted)]
        if state.pending:
            self._read(a, state, live)
        out = []
        for i in range(len(state.k)):
            reports = list(state.history[i]) + list(state.rotated[i].reports(verified_end=False))
            out.append(reports[:steps] + [StepReport(math.nan)] * (steps - len(reports)))
        return out
