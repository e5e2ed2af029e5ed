"""Goal 1: a solve of K steps costs at least its K products; how close does each solver
come to that limit? The overhead ratio is solver time over the time of the same number
of bare VJPs and JVPs, measured in the same process (goal: <= 1.05 at realistic size)."""

import rbpsolve

from ._base import BACKENDS, SIZES, TanhJacobian, best_time

STEPS = 20
SOLVERS = {
    "FixedPoint": rbpsolve.FixedPoint(max_steps=STEPS, rtol=0.0),
    "Neumann": rbpsolve.Neumann(max_steps=STEPS),
    "CGNE": rbpsolve.CGNE(max_steps=STEPS, rtol=0.0),
    "LSQR": rbpsolve.LSQR(max_steps=STEPS, rtol=0.0),
    "GMRES": rbpsolve.GMRES(max_steps=STEPS, rtol=0.0, restart=50),
}


class SolverCost:
    """Fixed budgets of 20 steps (rtol = atol = 0) on a float32 tanh-network Jacobian."""

    params = (list(SOLVERS), BACKENDS, list(SIZES))
    param_names = ["solver", "backend", "size"]
    timeout = 600

    def setup(self, solver, backend, size):
        n, batch = SIZES[size]
        self.problem = TanhJacobian(backend, n, batch)
        self.J = self.problem.operator()
        self.solver = SOLVERS[solver]
        self.result = rbpsolve.solve_adjoint(self.J, self.problem.g, self.solver)  # warm-up

    def _solve(self):
        return rbpsolve.solve_adjoint(self.J, self.problem.g, self.solver)

    def _bare_products(self):
        u = self.problem.g
        for _ in range(self.result.num_vjp):
            u = self.problem.vjp(u)
        v = self.problem.g
        for _ in range(self.result.num_jvp):
            v = self.problem.jvp(v)

    def time_solve(self, solver, backend, size):
        self._solve()
        self.problem.sync()

    def peakmem_solve(self, solver, backend, size):
        # GMRES keeps its Krylov basis (restart + 1 states); the others a few vectors.
        self._solve()

    def track_overhead_ratio(self, solver, backend, size):
        solve = best_time(self._solve, self.problem.sync)
        bare = best_time(self._bare_products, self.problem.sync)
        return solve / bare

    track_overhead_ratio.unit = "solve time / bare products time"

    def track_products(self, solver, backend, size):
        return self.result.num_vjp + self.result.num_jvp

    track_products.unit = "products"
