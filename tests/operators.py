"""Seeded random test operators with an exact dense reference (float64).

``make_problem(kind, shape, seed)`` builds a dense J acting on arrays of ``shape``
(flattened row-major), a right-hand side g and the exact solution of
``(I - J^T) z = g``. Kinds:

- ``contractive``: a Gaussian matrix scaled to ``||J||_2`` in [0.3, 0.95];
- ``nonnormal``: rho(J) < 1 <= ||J||_2 (a triangular part with large off-diagonals);
- ``nearly_singular``: I - J has condition number about 1e6 (an eigenvalue of J near 1);
- ``divergent``: rho(J) in [1.1, 2], with I - J well conditioned enough to solve;
- ``symmetric``: a symmetric contraction.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

KINDS = ("contractive", "nonnormal", "nearly_singular", "divergent", "symmetric")


@dataclasses.dataclass
class Problem:
    kind: str
    shape: tuple
    J: np.ndarray  # (n, n) float64
    g: np.ndarray  # shape `shape`
    z: np.ndarray  # exact solution, shape `shape`

    @property
    def n(self):
        return self.J.shape[0]

    @property
    def norm(self):
        return float(np.linalg.norm(self.J, 2))

    @property
    def rho(self):
        return float(np.abs(np.linalg.eigvals(self.J)).max())

    def operator(self, backend, dtype="float64", *, jvp=True, norm_bound=None):
        """A JacobianOperator on ``backend`` whose products use the dense J."""
        import rbpsolve

        Jx = backend.asarray(self.J, dtype)
        JTx = backend.asarray(self.J.T.copy(), dtype)
        xp, shape, n = backend.xp, self.shape, self.n

        def apply(mat):
            def product(u):
                return xp.reshape(xp.matmul(mat, xp.reshape(u, (n,))), shape)

            return product

        like = backend.asarray(np.zeros(shape), dtype)
        return rbpsolve.JacobianOperator(
            apply(JTx), apply(Jx) if jvp else None, like=like, norm_bound=norm_bound
        )


def _random_orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def dense_jacobian(kind: str, n: int, rng) -> np.ndarray:
    if kind == "contractive":
        M = rng.standard_normal((n, n))
        return M * (rng.uniform(0.3, 0.95) / np.linalg.norm(M, 2))
    if kind == "symmetric":
        M = rng.standard_normal((n, n))
        M = M + M.T
        return M * (rng.uniform(0.3, 0.95) / np.linalg.norm(M, 2))
    if kind == "nonnormal":
        rho = rng.uniform(0.5, 0.8)
        T = np.triu(rng.standard_normal((n, n)), 1) * (2.0 / math.sqrt(n))
        T += np.diag(rng.uniform(-rho, rho, n))
        T[0, 0] = rho
        Q = _random_orthogonal(rng, n)
        J = Q @ T @ Q.T
        if np.linalg.norm(J, 2) < 1.05:  # make sure the 2-norm exceeds 1
            J = Q @ (T + np.triu(np.full((n, n), 1.5 / math.sqrt(n)), 1)) @ Q.T
        return J
    if kind == "nearly_singular":
        U, V = _random_orthogonal(rng, n), _random_orthogonal(rng, n)
        s = np.geomspace(1.0, 1e-6, n)
        return np.eye(n) - U @ np.diag(s) @ V.T
    if kind == "divergent":
        M = rng.standard_normal((n, n)) / math.sqrt(n)
        target = rng.uniform(1.1, 2.0)
        M *= target / np.abs(np.linalg.eigvals(M)).max()
        # keep I - J comfortably invertible: push eigenvalues away from 1
        ev = np.linalg.eigvals(M)
        if np.min(np.abs(1 - ev)) < 0.05:
            M = -M
        return M
    raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")


def make_problem(kind: str, shape=(12,), seed: int = 0) -> Problem:
    """A seeded problem; the seed also draws g."""
    rng = np.random.default_rng([seed, KINDS.index(kind) if kind in KINDS else 99, math.prod(shape)])
    shape = tuple(shape)
    n = math.prod(shape)
    J = dense_jacobian(kind, n, rng)
    g = rng.standard_normal(n)
    z = np.linalg.solve(np.eye(n) - J.T, g)
    return Problem(kind, shape, J, g.reshape(shape), z.reshape(shape))
