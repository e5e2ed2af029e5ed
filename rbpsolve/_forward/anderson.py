"""Anderson acceleration (type II) of the fixed-point iteration ``h <- F(h)``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np

from .. import _backend
from .._protocol import StepReport
from ._base import AbstractForwardSolver

__all__ = ["Anderson"]


class _State(NamedTuple):
    x: Any  # the next iterate to evaluate
    prev_x: Any  # the last iterate evaluated, and its residual F(x) - x
    prev_g: Any
    dX: tuple  # differences of successive iterates, oldest first (at most `memory`)
    dG: tuple  # differences of successive residuals
    gram: Any  # dG^T dG: on the host in float64, or on the device (a fixed budget, a batch; (B, m, m))
    deferred: bool = False  # the small system is solved on the device (a fixed budget, a batch)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Anderson(AbstractForwardSolver):
    r"""Anderson acceleration of ``h <- F(h)`` (type II, Walker & Ni's difference form).

    Parameters
    ----------
    max_steps, rtol, atol, divergence_factor : see :class:`AbstractForwardSolver`
        Stopping test: ``norm(F(h_k) - h_k) <= max(rtol * norm(F(h_k)), atol)`` for the
        iterate ``h_k`` just evaluated; the returned iterate is the next one, ``h_{k+1}``.
    memory : int
        ``m``: how many past differences the extrapolation uses (``m >= 1``).
    mixing : float
        ``beta`` in (0, 1]: the damping of each step (1 is undamped).
    regularization : float, optional
        ``lambda``: Tikhonov weight, relative to ``||dG||_F^2``. None (the default) is
        ``sqrt(eps)`` of the state's dtype (3e-4 in float32, 1.5e-8 in float64): the
        Gram matrix is formed in that dtype, and a smaller weight lets its rounding
        errors steer the step.

    Notes
    -----
    With residuals ``g_k = F(h_k) - h_k`` and the matrices ``dX``, ``dG`` whose columns
    are the last ``m_k = min(m, k)`` differences ``h_{j+1} - h_j`` and ``g_{j+1} - g_j``,

    .. math::

        \gamma_k = \arg\min_\gamma \|g_k - dG\,\gamma\|^2 + \lambda \|dG\|_F^2 \|\gamma\|^2,
        \qquad h_{k+1} = h_k + \beta g_k - (dX + \beta\, dG)\,\gamma_k .

    Without regularisation this is the usual constrained form
    ``h_{k+1} = sum_i alpha_i ((1 - beta) h_i + beta F(h_i))`` with ``sum_i alpha_i = 1``
    minimising ``||sum_i alpha_i g_i||``; the first step is the damped Picard step
    ``h_1 = h_0 + beta g_0``. On a linear map with ``m`` at least the dimension it is
    essentially GMRES, so it can converge where Picard diverges (spectral radius of
    ``dF/dh`` above 1), though nothing guarantees it for nonlinear maps.

    Each step costs one evaluation of ``F`` and ``2 m + 2`` inner products, read from the
    device in one transfer with the two norms of the stopping test; the small
    ``m x m`` system is solved on the host in float64. A fixed budget solves it on the
    device, in the state's dtype (no transfer before the end); so does a batch
    (``fixed_point(..., batch_axis=k)``), whose samples each have their own ``gamma_k``:
    their ``B`` systems are solved in one batched call. The state holds ``2 m + 2``
    arrays of the state's size. ``Result.history`` holds ``norm(F(h_k) - h_k)``, which
    for Picard is the step length ``norm(h_{k+1} - h_k)``; with acceleration the two
    differ.

    References
    ----------
    D. G. Anderson, "Iterative procedures for nonlinear integral equations", J. ACM 12 (1965).
    H. F. Walker and P. Ni, "Anderson acceleration for fixed-point iterations",
    SIAM J. Numer. Anal. 49 (2011).

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> A = np.array([[0.0, 1.5], [-1.5, 0.0]])  # Picard diverges: spectral radius 1.5
    >>> res = rbpsolve.fixed_point(lambda h: A @ h + 1.0, np.zeros(2), rbpsolve.Anderson(rtol=1e-10))
    >>> res.status.name, bool(np.allclose(res.x, np.linalg.solve(np.eye(2) - A, np.ones(2))))
    ('CONVERGED', True)
    """

    memory: int = 5
    mixing: float = 1.0
    regularization: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.memory, bool) or not isinstance(self.memory, int):
            raise TypeError(f"memory must be an int; got {self.memory!r}")
        if self.memory < 1:
            raise ValueError(f"memory must be at least 1; got {self.memory} (memory=1 ... 10 is usual)")
        if isinstance(self.mixing, bool) or not isinstance(self.mixing, (int, float)):
            raise TypeError(f"mixing must be a float; got {self.mixing!r}")
        if not 0 < self.mixing <= 1:
            raise ValueError(f"mixing must lie in (0, 1]; got {self.mixing}")
        lam = self.regularization
        if lam is not None:
            if isinstance(lam, bool) or not isinstance(lam, (int, float)):
                raise TypeError(f"regularization must be a float or None; got {lam!r}")
            if not (lam >= 0 and math.isfinite(lam)):
                raise ValueError(f"regularization must be a finite number >= 0; got {lam}")

    def init(self, a, b, x0, tol, *, deferred=False):
        # A batch of fixed points (per-sample reductions) solves its small systems on the
        # device too, one a sample in one batched call: on the host they would cost a
        # second transfer a step.
        batch = x0.shape[:1] if _backend.is_per_sample(a.xp) else ()
        on_device = deferred or bool(batch)
        gram = a.xp.zeros(batch + (0, 0), dtype=x0.dtype, device=a.device) if on_device else np.zeros((0, 0))
        return _State(x0, None, None, (), (), gram, on_device)

    def step(self, a, b, state):
        xp = a.xp
        x = state.x
        f = a(x)
        g = f - x
        dX, dG, gram = state.dX, state.dG, state.gram
        if state.prev_g is not None:
            dX = (dX + (x - state.prev_x,))[-self.memory :]
            dG = (dG + (g - state.prev_g,))[-self.memory :]
            keep = len(dG) - 1  # the old columns still in memory
            gone = gram.shape[-1] - keep
            gram = gram[..., gone:, gone:]
        m = len(dG)
        if state.deferred:
            return self._device_step(xp, x, f, g, dX, dG, gram, m)
        requests = [(g,), (f,)] + [(dG[-1], c) for c in dG] + [(g, c) for c in dG]
        # The step's one host transfer, of reductions made in one all-reduce on a split state.
        values = _backend.to_host(xp, *_backend.reductions(xp, *requests))
        residual, scale = values[0], values[1]
        beta = float(self.mixing)
        x_new = x + beta * g
        if m:
            new_row = np.asarray(values[2 : 2 + m])
            grown = np.zeros((m, m))
            grown[: m - 1, : m - 1] = gram
            grown[m - 1, :] = new_row
            grown[:, m - 1] = new_row
            gram = grown
            gamma = self._coefficients(gram, np.asarray(values[2 + m :]), x.dtype, xp)
            for gi, dx, dg in zip(gamma, dX, dG):
                if gi != 0.0:
                    x_new = x_new - float(gi) * (dx + beta * dg)
        return _State(x_new, x, g, dX, dG, gram), StepReport(residual, scale=scale)

    def _device_step(self, xp, x, f, g, dX, dG, gram, m):
        """The step of a fixed budget or a batch: the same extrapolation with the small
        system solved on the device (``xp.linalg.solve``), so that nothing moves to the host.
        Where that system is unusable (a zero or non-finite Gram matrix, a non-finite
        solution) the coefficients are zero: a plain mixing step, as on the host.

        In a batch (per-sample reductions) every sample has its own ``m x m`` system: the
        Gram matrices are ``(B, m, m)``, the right-hand sides and coefficients ``(B, m)``,
        and ``xp.linalg.solve`` solves them all in one call (on dask too: see
        :func:`rbpsolve._backend.solve_small`); each sample's test of usability is its
        own, so that one sample's bad system changes no other's step."""
        beta = float(self.mixing)
        x_new = x + beta * g
        # Every inner product of the step in one all-reduce on a split state.
        residual, scale, *products = _backend.reductions(xp, (g,), (f,), *[(dG[-1], c) for c in dG],
                                                         *[(g, c) for c in dG])
        if m:
            # Each inner product as one value a sample: shape (B,) in a batch, () alone.
            batch = x.shape[:1] if _backend.is_per_sample(xp) else ()

            def scalars(v):
                return xp.reshape(v, batch)

            # The small systems are whole on every rank of a split state: local arithmetic.
            xp = _backend.local(xp)
            row = xp.stack([scalars(v) for v in products[:m]], axis=-1)
            grown = xp.concat([xp.concat([gram, row[..., : m - 1, None]], axis=-1), row[..., None, :]], axis=-2)
            rhs = xp.stack([scalars(v) for v in products[m:]], axis=-1)
            lam = self.regularization
            if lam is None:
                lam = math.sqrt(_backend.machine_eps(xp, x.dtype))
            trace = xp.sum(xp.linalg.diagonal(grown), axis=-1)
            usable = (trace > 0) & xp.isfinite(trace) & xp.all(xp.isfinite(rhs), axis=-1)
            eye = xp.eye(m, dtype=x.dtype, device=_backend.device_of(x))
            system = xp.where(usable[..., None, None], grown + (lam * trace)[..., None, None] * eye, eye)
            gamma = _backend.solve_small(xp, system, xp.where(usable[..., None], rhs, 0.0)[..., None])[..., 0]
            gamma = xp.where((usable & xp.all(xp.isfinite(gamma), axis=-1))[..., None], gamma, 0.0)
            # A sample's coefficient broadcast against its entries: (B, 1, ..., 1).
            spread = batch + (1,) * (x.ndim - len(batch))
            for i, (dx, dg) in enumerate(zip(dX, dG)):
                x_new = x_new - xp.reshape(gamma[..., i], spread) * (dx + beta * dg)
            gram = grown
        state = _State(x_new, x, g, dX, dG, gram, True)
        return state, StepReport(residual, scale=scale)

    def _coefficients(self, gram, rhs, dtype, xp):
        lam = self.regularization
        if lam is None:
            lam = math.sqrt(float(xp.finfo(dtype).eps))
        trace = float(np.trace(gram))
        if not (trace > 0 and math.isfinite(trace)) or not np.all(np.isfinite(rhs)):
            return np.zeros(len(rhs))
        try:
            gamma = np.linalg.solve(gram + lam * trace * np.eye(len(rhs)), rhs)
        except np.linalg.LinAlgError:
            gamma = np.linalg.lstsq(gram, rhs, rcond=None)[0]
        return gamma if np.all(np.isfinite(gamma)) else np.zeros(len(rhs))

    def solution(self, a, b, state):
        return state.x
