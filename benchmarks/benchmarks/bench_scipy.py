"""Goal 2: rbpsolve's LSQR and GMRES against scipy.sparse.linalg on the same operator and
tolerance: time ratio (goal: <= 1, no slower than scipy) and iterations."""

import numpy as np
import scipy.sparse.linalg as spla

import rbpsolve

from ._base import SIZES, TanhJacobian, best_time

RTOL = 1e-8
RESTART = 50


class VersusScipy:
    """numpy float64; scipy gets the LinearOperator a scipy user would write for I - J^T."""

    params = (["LSQR", "GMRES"], list(SIZES))
    param_names = ["solver", "size"]
    timeout = 600

    def setup(self, solver, size):
        n, batch = SIZES[size]
        p = TanhJacobian("numpy", n, batch, dtype="float64", norm=0.95)
        shape, N = p.g.shape, p.g.size
        self.J, self.g = p.operator(), p.g
        self.A = spla.LinearOperator(
            (N, N),
            matvec=lambda x: x - p.vjp(x.reshape(shape)).ravel(),
            rmatvec=lambda y: y - p.jvp(y.reshape(shape)).ravel(),
            dtype=np.float64,
        )
        self.b = p.g.ravel()
        if solver == "LSQR":
            self.ours = rbpsolve.LSQR(rtol=RTOL, max_steps=2000)
            # scipy stops at ||r|| <= btol ||b|| + atol ||A|| ||x||: atol = 0 makes it the same test.
            self.theirs = lambda: spla.lsqr(self.A, self.b, atol=0.0, btol=RTOL, iter_lim=2000)
        else:
            self.ours = rbpsolve.GMRES(rtol=RTOL, restart=RESTART, max_steps=2000)
            self.theirs = lambda: spla.gmres(self.A, self.b, rtol=RTOL, atol=0.0, restart=RESTART, maxiter=40)
        self.result = rbpsolve.solve_adjoint(self.J, self.g, self.ours)

    def _ours(self):
        return rbpsolve.solve_adjoint(self.J, self.g, self.ours)

    def time_rbpsolve(self, solver, size):
        self._ours()

    def time_scipy(self, solver, size):
        self.theirs()

    def track_time_ratio(self, solver, size):
        return best_time(self._ours, lambda: None) / best_time(self.theirs, lambda: None)

    track_time_ratio.unit = "rbpsolve time / scipy time"

    def track_iterations_rbpsolve(self, solver, size):
        return self.result.num_steps

    track_iterations_rbpsolve.unit = "iterations"

    def track_iterations_scipy(self, solver, size):
        if solver == "LSQR":
            return int(self.theirs()[2])
        count = [0]
        spla.gmres(self.A, self.b, rtol=RTOL, atol=0.0, restart=RESTART, maxiter=40,
                   callback=lambda _: count.__setitem__(0, count[0] + 1), callback_type="pr_norm")
        return count[0]

    track_iterations_scipy.unit = "iterations"

    def track_relative_residual_rbpsolve(self, solver, size):
        x = self._ours().x.ravel()
        return float(np.linalg.norm(self.b - self.A @ x) / np.linalg.norm(self.b))

    def track_relative_residual_scipy(self, solver, size):
        x = self.theirs()[0]
        return float(np.linalg.norm(self.b - self.A @ x) / np.linalg.norm(self.b))
