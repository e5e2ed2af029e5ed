"""GMRES on a batch of independent systems: one Krylov space, Hessenberg matrix and set of
rotations a sample, the Arnoldi products batched on the device.

Each sample runs the unbatched :class:`~rbpsolve._solvers.gmres.GMRES` recurrence: its own
basis ``V_i`` (rows of a ``(B, m, n)`` array, allocated once), its own position in its own
cycle (a sample whose estimate met its tolerance restarts, or stops, while the others go
on), its own rotations on the host (:class:`~rbpsolve._solvers._hessenberg.Rotated`). A
step is one batched product ``M V[:, k_i]``, one batched classical Gram-Schmidt pass
(``V_i w_i`` and ``w_i - V_i^T h_i`` as stacked matrix products; a sample's rows past its
position are zero and add nothing), and one host transfer of every sample's coefficients
(a second pass and a second transfer only where DGKS asks for it, as in the unbatched
solver). A step in which some samples end their cycle forms their iterates and
recomputes their residuals with one more batched product.
"""

from __future__ import annotations

import math
import numpy as np

from .. import _backend
from .._algebra import IdentityMinus
from .._batched import mask_like
from .._gram_schmidt import DGKS
from .._verify import residual_norms, rounding_floor
from ._base import StepReport
from ._hessenberg import Rotated
from .gmres import GMRES, _column, _State, _with_cycle

__all__ = ["BatchedGMRES"]


class _Batch:
    """The device arrays of the whole batch and each sample's host state."""

    def __init__(self, x, r, basis, tols):
        size = basis.shape[0]
        self.x = x  # (B, ...) each sample's cycle start
        self.r = r  # (B, ...) residuals of the samples about to start a cycle (None: read)
        self.basis = basis  # (B, m, n)
        self.k = np.zeros(size, dtype=np.int64)  # rows of its basis each sample has filled
        self.r_norm = [None] * size  # each sample's cycle-start residual norm (host)
        self.rotated = [Rotated.empty() for _ in range(size)]
        self.solo = [_State(None, None, None, None, 0, Rotated.empty(), (), t, False) for t in tols]


class BatchedGMRES:
    """The batched loop's GMRES: :meth:`step` takes every active sample one step and returns
    one host :class:`StepReport` a sample (None for the others)."""

    def __init__(self, solver: GMRES):
        self.solver = solver

    def init(self, a, b, x0, tols) -> _Batch:
        xp = a.xp
        batch, n = a.in_shape[0], math.prod(a.in_shape[1:])
        if x0 is None:
            x, r = xp.zeros(a.in_shape, dtype=b.dtype, device=a.device), b
        else:
            x, r = x0, b - a.mv(x0)
        cycle = self.solver._cycle(_SampleSize(n))
        # Zeros, not empty: a sample's rows past its position enter every product.
        basis = xp.zeros((batch, cycle, n), dtype=b.dtype, device=a.device)
        return _Batch(x, r, basis, tols)

    # ------------------------------------------------------------------ a step
    def step(self, a, b, state: _Batch, active) -> tuple[_Batch, list]:
        xp = a.xp
        batch, cycle = state.basis.shape[0], state.basis.shape[1]
        shifted = isinstance(a, IdentityMinus)
        reports = [None] * batch
        live = [bool(f) for f in active]
        starting = [i for i in range(batch) if live[i] and state.k[i] == 0]
        if starting:
            self._start_cycles(xp, state, starting, reports, live)
        stepping = [i for i in range(batch) if live[i] and reports[i] is None]
        if not stepping:
            return state, reports
        flat = (batch, -1)
        rows = state.basis[_index(xp, state.basis, np.arange(batch)), _index(xp, state.basis, np.maximum(state.k - 1, 0))]
        rows = xp.where(mask_like(xp, live, rows), rows, 0.0)  # frozen samples ride along on zeros
        operator = a.op if shifted else a
        w = xp.reshape(operator.mv(xp.reshape(rows, a.in_shape)), flat)
        filled = int(state.k[stepping].max())
        w, coefficients, norms, before = _orthogonalise(xp, state.basis[:, :filled, :], w, state.k)
        ends, writes = [], []
        for i in stepping:
            column, scale = _column(coefficients[i][: state.k[i]], norms[i], before[i], shifted)
            rotated, verdict = state.rotated[i].absorb(column, scale)
            if verdict == "nonfinite":
                reports[i] = StepReport(math.nan, breakdown=True)
                continue
            if verdict == "singular":
                reports[i] = StepReport(state.rotated[i].estimate, breakdown=True)
                continue
            state.rotated[i] = rotated
            lucky = verdict == "lucky"
            if not lucky and state.k[i] < cycle:
                writes.append(i)
            if rotated.estimate <= state.solo[i].tol or lucky or rotated.width == cycle:
                ends.append(i)
            else:
                reports[i] = StepReport(rotated.estimate)
        if writes:
            # v_{k+1} = w / ||w|| into each writing sample's next row: one scatter.
            state.basis = _set_rows(xp, state.basis, writes, state.k[writes], w, [1.0 / norms[i] for i in writes])
            state.k[writes] += 1
        if ends:
            self._end_cycles(a, b, state, ends, reports)
        return state, reports

    def _start_cycles(self, xp, state: _Batch, starting, reports, live) -> None:
        """``v_0 = r / ||r||`` for the samples starting a cycle (their norms read once)."""
        unread = [i for i in starting if state.r_norm[i] is None]
        if unread:
            norms = _backend.to_host(xp, _backend.norm(xp, state.r))
            for i in unread:
                state.r_norm[i] = norms[i]
        scales = [0.0] * len(live)
        for i in starting:
            r_norm = state.r_norm[i]
            state.rotated[i] = Rotated.start(r_norm)
            if r_norm == 0 or not math.isfinite(r_norm):
                reports[i] = StepReport(r_norm)  # nothing to do from a zero residual
                continue
            scales[i] = 1.0 / r_norm
            state.k[i] = 1
        batch = len(live)
        v0 = xp.reshape(state.r, (batch, -1)) * xp.reshape(xp.asarray(scales, dtype=state.basis.dtype,
                                                                         device=_backend.device_of(state.basis)), (batch, 1))
        fresh = [i for i in range(batch) if scales[i] != 0.0]
        if fresh:
            state.basis = _set_rows(xp, state.basis, fresh, np.zeros(len(fresh), dtype=np.int64), v0, None)

    def _end_cycles(self, a, b, state: _Batch, ends, reports) -> None:
        """Form the ending samples' iterates, recompute their residuals (one batched
        product) and start their next cycles."""
        xp = a.xp
        state.x = self.solution(a, b, state, only=ends)
        r, values, eps = residual_norms(a, b, state.x)
        values = np.reshape(np.asarray(values), (-1, len(state.k)))
        floors = rounding_floor(eps, values[1:])
        restart = [False] * len(state.k)
        for i in ends:
            solo = state.solo[i]._replace(rotated=state.rotated[i], size=int(state.k[i]))
            sigma, settled, updates = _with_cycle(solo)
            state.solo[i] = solo._replace(sigma_min=sigma, settled=settled, updates=updates, rotated=Rotated.empty())
            state.r_norm[i], state.k[i], state.rotated[i] = float(values[0, i]), 0, Rotated.empty()
            restart[i] = True
            reports[i] = StepReport(float(values[0, i]), verified=True, floor=float(floors[i]))
        state.r = r
        # The restarted samples' old rows must not enter their next cycle's products.
        state.basis = _zero_samples(xp, state.basis, [i for i in range(len(restart)) if restart[i]])

    # ------------------------------------------------------------------ iterates
    def solution(self, a, b, state: _Batch, only=None):
        """``x_0 + V y`` of every sample (or of the samples ``only``), ``y`` its cycle's
        least-squares solution (host, float64)."""
        xp = a.xp
        batch = len(state.k)
        chosen = range(batch) if only is None else only
        widths = {i: state.rotated[i].width for i in chosen if state.rotated[i].width}
        if not widths:
            return state.x
        depth = max(widths.values())
        ys = np.zeros((batch, 1, depth))
        for i in widths:
            ys[i, 0, : widths[i]] = state.rotated[i].solve()
        y = xp.asarray(ys, dtype=state.x.dtype, device=_backend.device_of(state.x))
        step = xp.reshape(y @ state.basis[:, :depth, :], a.in_shape)
        return state.x + step

    def sample_state(self, state: _Batch, i: int) -> _State:
        """Sample ``i`` as the unbatched solver's state (for its ``finish``)."""
        solo = state.solo[i]
        return solo._replace(x=state.x[i], r_norm=state.r_norm[i], basis=state.basis[i], size=int(state.k[i]),
                             rotated=state.rotated[i])


class _SampleSize:
    """What :meth:`GMRES._cycle` reads of an operator: its input's size."""

    def __init__(self, n):
        self.in_space = type("space", (), {"size": n})()


def _index(xp, like, values):
    return xp.asarray(values, device=_backend.device_of(like))


def _orthogonalise(xp, basis, w, positions):
    """Classical Gram-Schmidt of each sample's ``w_i`` against its rows of ``basis``
    (``(B, k, n)``; rows past a sample's position are zero), with DGKS's second pass for
    the samples whose first cancelled. Returns ``w``, the coefficients (host, one array a
    sample), ``||w_i||`` after and before (host lists)."""
    batch = w.shape[0]
    w_sq = xp.sum(w * w, axis=1)
    h = xp.reshape(basis @ xp.reshape(w, (batch, -1, 1)), (batch, -1))
    w = w - xp.reshape(xp.reshape(h, (batch, 1, -1)) @ basis, (batch, -1))
    values = np.reshape(np.asarray(_backend.to_host(xp, h, w_sq)), (-1,))
    width = basis.shape[1]
    coefficients = np.reshape(values[: batch * width], (batch, width))
    before_sq = values[batch * width:]
    before = [math.sqrt(v) if v >= 0 else math.nan for v in before_sq]
    norms = [math.sqrt(max(v - float(c[: positions[i]] @ c[: positions[i]]), 0.0))
             for i, (v, c) in enumerate(zip(before_sq, coefficients))]
    again = [not n >= DGKS * b for n, b in zip(norms, before)]
    if any(again):
        h2 = xp.reshape(basis @ xp.reshape(w, (batch, -1, 1)), (batch, -1))
        w2 = w - xp.reshape(xp.reshape(h2, (batch, 1, -1)) @ basis, (batch, -1))
        w = xp.where(mask_like(xp, again, w), w2, w)
        values = np.reshape(np.asarray(_backend.to_host(xp, h2, xp.linalg.vector_norm(w, axis=1))), (-1,))
        second, after = np.reshape(values[: batch * width], (batch, width)), values[batch * width:]
        for i in range(batch):
            if again[i]:
                coefficients[i] = coefficients[i] + second[i]
                norms[i] = float(after[i])
    return w, coefficients, norms, before


def _set_rows(xp, basis, samples, rows, values, scales):
    """``basis[samples[j], rows[j]] = values[samples[j]] * scales[j]``: one scatter (in
    place where the library allows it; a functional update on JAX)."""
    device = _backend.device_of(basis)
    index = (xp.asarray(np.asarray(samples, dtype=np.int64), device=device),
             xp.asarray(np.asarray(rows, dtype=np.int64), device=device))
    picked = values[index[0]]
    if scales is not None:
        picked = picked * xp.reshape(xp.asarray(scales, dtype=basis.dtype, device=device), (-1, 1))
    if _backend.array_api_compat.is_jax_array(basis):
        return basis.at[index].set(picked)
    basis[index] = picked
    return basis


def _zero_samples(xp, basis, samples):
    """Every row of the samples ``samples`` set to zero."""
    index = xp.asarray(np.asarray(samples, dtype=np.int64), device=_backend.device_of(basis))
    if _backend.array_api_compat.is_jax_array(basis):
        return basis.at[index].set(0.0)
    basis[index] = 0.0
    return basis
