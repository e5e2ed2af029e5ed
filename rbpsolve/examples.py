"""The built-in example: a random steady-state network ``x = tanh(W x + b)``.

A continuous-time network in the style of Seung's recurrent back-propagation lectures:
its steady state ``x*`` solves ``x = tanh(W x + b)``, the Jacobian of the update at
``x*`` is ``J = D W`` with ``D = diag(1 - x*^2)``, and a loss
``L = 1/2 ||x* - y||^2`` has ``g = dL/dx* = x* - y``. ``W`` is rescaled until
``||J||_2`` equals the requested value, so the contraction of the adjoint system is
the user's choice. Everything is dense numpy in float64 so that exact answers can be
printed beside the matrix-free ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._operator import JacobianOperator

__all__ = ["TanhNetwork", "tanh_network"]


@dataclasses.dataclass(frozen=True)
class TanhNetwork:
    """A steady state of ``x = tanh(W x + b)`` and its adjoint problem.

    Attributes
    ----------
    W, b : ndarray
        Weights (n, n) and bias (n,).
    x_star : ndarray
        The steady state.
    jacobian : ndarray
        ``J = diag(1 - x*^2) W``, dense.
    g : ndarray
        ``x* - y`` for a random target ``y``.
    norm_J, spectral_radius : float
        Exact ``||J||_2`` and ``rho(J)``.
    """

    W: np.ndarray
    b: np.ndarray
    x_star: np.ndarray
    jacobian: np.ndarray
    g: np.ndarray
    norm_J: float
    spectral_radius: float

    @property
    def n(self) -> int:
        return self.W.shape[0]

    def operator(self, *, declare_norm: bool = False, xp=None, dtype=None, device=None) -> JacobianOperator:
        """J as a matrix-free JacobianOperator (VJP ``u -> W^T (d * u)``, JVP ``v -> d * (W v)``).

        ``xp``, ``dtype`` and ``device`` place it on another backend (e.g.
        ``array_api_compat.torch``); ``declare_norm`` declares the exact ``||J||_2``.
        """
        d = 1.0 - self.x_star**2
        W, like = self.W, self.g
        if xp is not None:
            dtype = dtype if dtype is not None else xp.float64
            d = xp.asarray(d, dtype=dtype, device=device)
            W = xp.asarray(W, dtype=dtype, device=device)
            like = xp.asarray(self.g, dtype=dtype, device=device)
            WT = xp.asarray(np.ascontiguousarray(self.W.T), dtype=dtype, device=device)

            def vjp(u):
                return xp.matmul(WT, d * u)

            def jvp(v):
                return d * xp.matmul(W, v)

        else:

            def vjp(u):
                return W.T @ (d * u)

            def jvp(v):
                return d * (W @ v)

        return JacobianOperator(vjp, jvp, like=like, norm_bound=self.norm_J if declare_norm else None)

    def exact_adjoint(self) -> np.ndarray:
        """``z = (I - J^T)^{-1} g`` by a dense LU solve."""
        return np.linalg.solve(np.eye(self.n) - self.jacobian.T, self.g)


def _steady_state(W, b, x0, iterations=200):
    """Damped Newton's method on ``G(x) = x - tanh(W x + b) = 0`` from ``x0``.

    Backtracking on ``||G||`` keeps it from wandering off when ``||W||`` is large and
    the network has several steady states.
    """
    n = W.shape[0]
    x = x0.copy()

    def residual(x):
        return x - np.tanh(W @ x + b)

    r = residual(x)
    for _ in range(iterations):
        if np.linalg.norm(r) <= 1e-13 * max(1.0, np.linalg.norm(x)):
            return x
        t = np.tanh(W @ x + b)
        step = np.linalg.solve(np.eye(n) - (1 - t**2)[:, None] * W, r)
        size = 1.0
        while size > 1e-6:
            trial = x - size * step
            r_trial = residual(trial)
            if np.linalg.norm(r_trial) < (1 - 1e-4 * size) * np.linalg.norm(r):
                break
            size /= 2
        x, r = trial, r_trial
    raise RuntimeError("Newton's method found no steady state; try another seed or a smaller norm")


def tanh_network(
    n: int = 512, norm: float = 0.9, *, seed: int = 0, bias_scale: float = 0.5, on_step=None
) -> TanhNetwork:
    """A random ``x = tanh(W x + b)`` network whose Jacobian at its steady state has ``||J||_2 = norm``.

    Parameters
    ----------
    n : int
        Number of neurons.
    norm : float
        The wanted ``||J||_2``: below 1 a contraction (every solver converges), above 1
        FixedPoint and Neumann may diverge.
    seed : int
        Seed of ``W``, ``b`` and the target ``y``.
    bias_scale : float
        Standard deviation of ``b``; larger biases saturate more neurons.
    on_step : callable, optional
        Called as ``on_step(k, achieved)`` after the ``k``-th steady state (each a dense Newton
        solve and an SVD, O(n^3)), ``achieved`` its ``||J||_2``; ``rbpsolve compare`` shows it
        in its progress bar, since at n of a few thousand these take minutes.

    Examples
    --------
    >>> net = tanh_network(64, 0.9, seed=1)
    >>> round(net.norm_J, 6)
    0.9
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    if not (norm > 0 and np.isfinite(norm)):
        raise ValueError(f"norm must be a positive finite number; got {norm!r}")
    rng = np.random.default_rng(seed)
    W0 = rng.standard_normal((n, n)) / np.sqrt(n)
    W0 /= np.linalg.norm(W0, 2)
    b = bias_scale * rng.standard_normal(n)
    y = rng.uniform(-1, 1, n)
    solves = 0

    def jacobian_at(scale, x_start):
        nonlocal solves
        x = _steady_state(scale * W0, b, x_start)
        J = (1 - x**2)[:, None] * (scale * W0)
        achieved = float(np.linalg.norm(J, 2))
        solves += 1
        if on_step is not None:
            on_step(solves, achieved)
        return x, J, achieved

    # Continuation: saturation makes ||J|| grow more slowly than the scale of W, so grow
    # the scale by small steps, each steady state warm-started from the last, until
    # ||J|| passes the target; then close in by secant steps inside the bracket.
    lo_scale, lo_x, lo_norm = 0.0, np.zeros(n), 0.0
    scale = min(norm, 0.5)
    x, J, achieved = jacobian_at(scale, lo_x)
    growth = 1.1
    while achieved < norm:
        if scale > 100 * norm:
            raise RuntimeError(f"||J|| = {norm} is out of reach for this network; lower bias_scale or norm")
        lo_scale, lo_x, lo_norm = scale, x, achieved
        while True:
            try:
                scale = lo_scale * growth
                x, J, achieved = jacobian_at(scale, lo_x)
                break
            except RuntimeError:
                # Past a fold of the steady-state branch (I - J singular) Newton finds
                # nothing nearby: shorten the step; if that fails, the branch ends here.
                growth = 1 + (growth - 1) / 2
                if growth < 1 + 1e-6:
                    raise RuntimeError(
                        f"the steady state of this network disappears at ||J|| ~ {lo_norm:.4g} (a fold, where "
                        f"I - J turns singular), below the requested {norm}; try another seed or a smaller norm"
                    ) from None
    hi_scale, hi_x, hi_norm = scale, x, achieved
    for _ in range(100):
        if abs(achieved - norm) <= 1e-9 * norm:
            break
        t = (norm - lo_norm) / (hi_norm - lo_norm)
        scale = lo_scale + min(max(t, 0.05), 0.95) * (hi_scale - lo_scale)
        x, J, achieved = jacobian_at(scale, lo_x)
        if achieved < norm:
            lo_scale, lo_x, lo_norm = scale, x, achieved
        else:
            hi_scale, hi_x, hi_norm = scale, x, achieved
    else:
        raise RuntimeError(f"could not scale the network to ||J|| = {norm}; try another seed")
    rho = float(np.abs(np.linalg.eigvals(J)).max())
    return TanhNetwork(scale * W0, b, x, J, x - y, achieved, rho)
