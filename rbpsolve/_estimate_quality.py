"""How good is ``Result.error_estimate``? A fixed family of random operators to measure it.

Used by the test suite (the property of the trustworthy-results issue) and by the asv
track ``EstimateQuality``: for each problem the ratio ``true error / error_estimate`` of
every ok result (above 1: the estimate was optimistic).

Two kinds of ``J`` with spectral radius ``rho``:

* ``"normal"``: ``Q D Q^T`` with ``Q`` orthogonal and ``D`` block diagonal (real
  eigenvalues of either sign and rotation-scaled 2x2 blocks, i.e. complex pairs), the
  largest modulus exactly ``rho``;
* ``"nonnormal"``: ``Q (diag(lambda) + T) Q^T`` with ``T`` strictly upper triangular
  Gaussian times a factor in [0.1, 1]: at n = 40 ``||T||`` is several times ``rho``, so
  ``||J||`` far exceeds ``rho(J)`` and the series show long transients.
"""

from __future__ import annotations

import math

import numpy as np

from ._operator import JacobianOperator

__all__ = ["random_jacobian", "estimate_ratios", "family_solvers", "family_problem", "FAMILY_SIZE"]

FAMILY_SIZE = 40


def random_jacobian(n: int, rho: float, kind: str, seed: int) -> np.ndarray:
    """A dense ``J`` of spectral radius ``rho`` (see the module docstring for ``kind``)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    if kind == "normal":
        D = np.zeros((n, n))
        i = 0
        while i < n:
            r = rho if i == 0 else rho * rng.uniform(0.2, 1.0)
            if i + 1 < n and rng.random() < 0.5:
                t = rng.uniform(0.0, np.pi)
                D[i:i + 2, i:i + 2] = r * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
                i += 2
            else:
                D[i, i] = r * rng.choice([-1.0, 1.0])
                i += 1
        return Q @ D @ Q.T
    if kind == "nonnormal":
        lam = rng.uniform(-1.0, 1.0, n) * rho
        lam[0] = rho * rng.choice([-1.0, 1.0])
        S = np.diag(lam) + np.triu(rng.standard_normal((n, n)), 1) * rng.uniform(0.1, 1.0)
        return Q @ S @ Q.T
    raise ValueError(f"kind must be 'normal' or 'nonnormal'; got {kind!r}")


def family_solvers() -> dict:
    """The solver settings the estimate is measured for: defaults and fixed budgets."""
    from . import _solvers as s

    return {
        "FixedPoint": s.FixedPoint(),
        "Neumann(rtol)": s.Neumann(rtol=1e-5, max_steps=1000),
        "Neumann(K=20)": s.Neumann(),
        "FixedPoint(K=30)": s.FixedPoint(max_steps=30, rtol=0.0),
        "RandomizedNeumann": s.RandomizedNeumann(min_steps=10, seed=1),
        "CGNE": s.CGNE(),
        "LSQR": s.LSQR(),
        "GMRES": s.GMRES(),
        "GMRES(restart=10)": s.GMRES(restart=10),
        "CGNE(K=15)": s.CGNE(max_steps=15, rtol=0.0),
        "LSQR(K=15)": s.LSQR(max_steps=15, rtol=0.0),
        "GMRES(K=15)": s.GMRES(max_steps=15, rtol=0.0),
    }


def family_problem(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(J, g)`` of the family: n = 40, ``rho(J)`` uniform in [0.3, 1.3]."""
    rng = np.random.default_rng(10_000 + seed)
    rho = float(rng.uniform(0.3, 1.3))
    return random_jacobian(FAMILY_SIZE, rho, kind, seed), rng.standard_normal(FAMILY_SIZE)


def estimate_ratios(W: np.ndarray, g: np.ndarray, solvers: dict) -> dict:
    """``{name: (ratio, reliable)}`` for every solver whose result is ok on ``(I - W^T) z = g``.

    ``ratio = ||x - z|| / error_estimate`` (0 when both are 0; inf when only the estimate is).
    """
    from ._solve import solve_adjoint

    n = W.shape[0]
    z = np.linalg.solve(np.eye(n) - W.T, g)
    J = JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=g)
    out = {}
    for name, solver in solvers.items():
        result = solve_adjoint(J, g, solver, throw=False)
        if not result.ok:
            continue
        error = float(np.linalg.norm(result.x - z))
        estimate = result.error_estimate
        ratio = error / estimate if estimate > 0 else (0.0 if error == 0 else math.inf)
        out[name] = (ratio, bool(result.estimate_reliable))
    return out
