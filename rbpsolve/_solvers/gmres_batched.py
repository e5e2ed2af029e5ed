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
from .._precision import product_eps
from .._verify import rounding_floor
from ._base import StepReport
from ._hessenberg import Rotated
from ._hessenberg_batch import RotatedBatch
from .gmres import GMRES, _State, _with_cycle

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
        self.rotated = RotatedBatch(size, basis.shape[1])  # each sample's cycle (host)
        self.solo = [_State(None, None, None, None, 0, Rotated.empty(), (), t, False) for t in tols]
        # Samples whose cycle ended: their new iterate's residual is recomputed in the next
        # step's batched product (their slot in it), not in a product of its own.
        self.verifying = [False] * size


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
        # A sample's dimension: of its whole state when the states are split over ranks
        # (the sharding counts the whole batch).
        cycle = self.solver._cycle(_SampleSize(a.in_space.global_size // max(batch, 1)))
        # Zeros, not empty: rows never written enter the products (times a zero coefficient,
        # which must not meet a NaN of uninitialised memory).
        basis = xp.zeros((batch, cycle, n), dtype=b.dtype, device=a.device)
        state = _Batch(x, r, basis, tols)
        state.eps = max(float(xp.finfo(b.dtype).eps), product_eps(a))  # the rounding floor's
        return state

    # ------------------------------------------------------------------ a step
    def step(self, a, b, state: _Batch, active) -> tuple[_Batch, list]:
        xp = a.xp
        batch, cycle = state.basis.shape[0], state.basis.shape[1]
        shifted = isinstance(a, IdentityMinus)
        reports = [None] * batch
        live = [bool(f) for f in active]
        checking = [i for i in range(batch) if live[i] and state.verifying[i]]
        starting = [i for i in range(batch) if live[i] and state.k[i] == 0 and not state.verifying[i]]
        if starting:
            self._start_cycles(xp, state, starting, reports, live)
        stepping = [i for i in range(batch) if live[i] and reports[i] is None and not state.verifying[i]]
        if not stepping and not checking:
            return state, reports
        flat = (batch, -1)
        rows = state.basis[_index(xp, state.basis, np.arange(batch)), _index(xp, state.basis, np.maximum(state.k - 1, 0))]
        if checking:
            rows = xp.where(mask_like(xp, state.verifying, rows), xp.reshape(state.x, flat), rows)
        rows = xp.where(mask_like(xp, live, rows), rows, 0.0)  # frozen samples ride along on zeros
        operator = a.op if shifted else a
        w = xp.reshape(operator.mv(xp.reshape(rows, a.in_shape)), flat)
        extra = self._residuals(a, b, state, w, shifted) if checking else []
        filled = int(state.k[stepping].max()) if stepping else 1
        w, coefficients, norms, before, checked = _orthogonalise(xp, state.basis[:, :filled, :], w, state.k, extra)
        if checking:
            self._checked(state, checking, checked, reports)
        ends, writes = [], []
        if stepping:
            verdicts = state.rotated.absorb(stepping, *_columns(coefficients, norms, before, state.k, stepping,
                                                                cycle, shifted))
        for i, verdict in zip(stepping, verdicts if stepping else ()):
            if verdict == "nonfinite":
                reports[i] = StepReport(math.nan, breakdown=True)
                continue
            if verdict == "singular":
                reports[i] = StepReport(state.rotated.estimate(i), breakdown=True)
                continue
            lucky = verdict == "lucky"
            if not lucky and state.k[i] < cycle:
                writes.append(i)
            estimate = state.rotated.estimate(i)
            if estimate <= state.solo[i].tol or lucky or state.rotated.width[i] == cycle:
                ends.append(i)
            else:
                reports[i] = StepReport(estimate)
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
                # Nothing to do from a zero residual; it is b - A x as computed (x0 exact).
                reports[i] = StepReport(r_norm, verified=r_norm == 0)
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
        """Form the ending samples' iterates; their residuals are recomputed in the next
        step's product (their step's report waits for it), their next cycles start then."""
        state.x = self.solution(a, b, state, only=ends)
        for i in ends:
            solo = state.solo[i]._replace(rotated=state.rotated[i], size=int(state.k[i]))
            sigma, settled, updates = _with_cycle(solo)
            state.solo[i] = solo._replace(sigma_min=sigma, settled=settled, updates=updates, rotated=Rotated.empty())
            state.k[i], state.rotated[i], state.verifying[i] = 0, Rotated.empty(), True
        # Their old rows stay: the Gram-Schmidt pass masks rows past a sample's position.

    def _residuals(self, a, b, state: _Batch, w, shifted):
        """``r = b - A x`` of every sample from this step's product (``M x`` or ``A x`` in the
        verifying samples' slots), kept for their next cycles; their norms (``r``, ``b``,
        ``A x``, ``x``: the rounding floor's) to move with the step's transfer."""
        xp = a.xp
        flat = (len(state.k), -1)
        x, b_flat = xp.reshape(state.x, flat), xp.reshape(b, flat)
        ax = x - w if shifted else w
        r = b_flat - ax
        kept = xp.where(mask_like(xp, state.verifying, r), r, xp.reshape(state.r, flat))
        state.r = xp.reshape(kept, a.in_shape)
        norms = [xp.linalg.vector_norm(v, axis=1) for v in (r, b_flat, ax)]
        if shifted:
            norms.append(xp.linalg.vector_norm(x, axis=1))
        return norms

    def _checked(self, state: _Batch, checking, values, reports) -> None:
        """The verifying samples' recomputed residuals: their steps' reports."""
        eps = state.eps
        for i in checking:
            residual = float(values[0][i])
            floor = rounding_floor(eps, [float(v[i]) for v in values[1:]])
            state.r_norm[i], state.verifying[i] = residual, False
            reports[i] = StepReport(residual, verified=True, floor=floor)

    # ------------------------------------------------------------------ iterates
    def solution(self, a, b, state: _Batch, only=None):
        """``x_0 + V y`` of every sample (or of the samples ``only``), ``y`` its cycle's
        least-squares solution (host, float64)."""
        xp = a.xp
        batch = len(state.k)
        chosen = range(batch) if only is None else only
        widths = {i: int(state.rotated.width[i]) for i in chosen if state.rotated.width[i]}
        if not widths:
            return state.x
        depth = max(widths.values())
        ys = np.zeros((batch, 1, depth))
        for i in widths:
            ys[i, 0, : widths[i]] = state.rotated.solve(i)
        y = xp.asarray(ys, dtype=state.x.dtype, device=_backend.device_of(state.x))
        step = xp.reshape(y @ state.basis[:, :depth, :], a.in_shape)
        return state.x + step

    def waiting(self, state: _Batch, i: int) -> bool:
        """Whether sample ``i``'s last step still waits for its recomputed residual."""
        return state.verifying[i]

    def sample_state(self, state: _Batch, i: int) -> _State:
        """Sample ``i`` as the unbatched solver's state (for its ``finish``)."""
        solo = state.solo[i]
        return solo._replace(x=state.x[i], r_norm=state.r_norm[i], basis=state.basis[i], size=int(state.k[i]),
                             rotated=state.rotated[i])


class _SampleSize:
    """What :meth:`GMRES._cycle` reads of an operator: its input's size."""

    def __init__(self, n):
        self.in_space = type("space", (), {"global_size": n})()


def _index(xp, like, values):
    return xp.asarray(values, device=_backend.device_of(like))


def _columns(coefficients, norms, before, positions, samples, cycle: int, shifted: bool):
    """The stepping samples' Hessenberg columns (rows of a ``(len(samples), cycle + 1)``
    array) and the scales of their singularity tests, as :func:`gmres._column` makes them
    one at a time: ``[h; ||w||]``, or on ``M`` (``A = I - M``) ``e_k - [h; ||w||]`` with
    scale ``1 + ||M v_k||``."""
    index = np.asarray(samples, dtype=np.int64)
    rows, k = np.arange(index.size), positions[index]
    col = np.zeros((index.size, cycle + 1))
    col[:, : coefficients.shape[1]] = coefficients[index]
    col[rows, k] = np.asarray(norms)[index]
    if not shifted:
        return col, np.zeros(index.size)
    col = -col
    col[rows, k - 1] += 1.0
    return col, 1.0 + np.asarray(before)[index]


def _project(xp, basis, w, valid):
    """One classical Gram-Schmidt pass of every sample: ``h_i = V_i w_i`` and
    ``w_i - V_i^T h_i`` for the rows ``V_i`` of ``basis`` (``(B, k, n)``), with the
    coefficients of rows past a sample's position (``valid``, a ``(B, k)`` device mask, or
    None when every row is in use) set to zero: those rows hold an earlier cycle's vectors."""
    batch = w.shape[0]
    # Row times transposed matrix: MKL's batched product is several times faster so than
    # the matrix times column form (torch, 64 x 25 x 512: 0.07 against 0.66 ms).
    h = xp.reshape(xp.reshape(w, (batch, 1, -1)) @ xp.matrix_transpose(basis), (batch, -1))
    h = _backend.completed(xp, h)  # over every rank's entries when the states are split
    if valid is not None:
        h = xp.where(valid, h, 0.0)
    return w - xp.reshape(xp.reshape(h, (batch, 1, -1)) @ basis, (batch, -1)), h


def _orthogonalise(xp, basis, w, positions, extra=()):
    """Classical Gram-Schmidt of each sample's ``w_i`` against its first ``positions[i]``
    rows of ``basis`` (``(B, k, n)``), with DGKS's second pass for the samples whose first
    cancelled. Returns ``w``, the coefficients (host, one array a sample), ``||w_i||``
    after and before (host lists), and ``extra`` (``(B,)`` device arrays) moved to the
    host in the same transfer (host arrays)."""
    batch, width = w.shape[0], basis.shape[1]
    valid = None
    if any(int(p) < width for p in positions):
        rows = np.arange(width)[None, :] < np.asarray(positions)[:, None]
        valid = xp.asarray(rows, device=_backend.device_of(w))
    w_sq = xp.sum(w * w, axis=1)
    w, h = _project(xp, basis, w, valid)
    values = np.reshape(np.asarray(_backend.to_host(xp, h, w_sq, *extra)), (-1,))
    coefficients = np.reshape(values[: batch * width], (batch, width))
    extra = np.reshape(values[batch * (width + 1):], (len(extra), batch))
    before_sq = values[batch * width: batch * (width + 1)]
    before = [math.sqrt(v) if v >= 0 else math.nan for v in before_sq]
    # One einsum for every sample (not a BLAS dot a sample: on a CPU shared with torch's
    # threads, each BLAS call wakes OpenBLAS's own pool, which then competes with torch's).
    squares = np.einsum("ij,ij->i", coefficients, coefficients)
    norms = [math.sqrt(max(v - c, 0.0)) for v, c in zip(before_sq, squares)]
    again = [not n >= DGKS * b for n, b in zip(norms, before)]
    if any(again):
        w2, h2 = _project(xp, basis, w, valid)
        w = xp.where(mask_like(xp, again, w), w2, w)
        values = np.reshape(np.asarray(_backend.to_host(xp, h2, xp.linalg.vector_norm(w, axis=1))), (-1,))
        second, after = np.reshape(values[: batch * width], (batch, width)), values[batch * width:]
        for i in range(batch):
            if again[i]:
                coefficients[i] = coefficients[i] + second[i]
                norms[i] = float(after[i])
    return w, coefficients, norms, before, extra


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
