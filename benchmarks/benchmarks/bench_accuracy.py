"""Goal 3: accuracy per cost. The relative error ||z - z_exact|| / ||z_exact|| each solver
reaches for a fixed budget of 40 products, on a contractive (||J|| = 0.9) and a barely
contractive (||J|| = 0.99) operator, so numerical regressions show as clearly as slowdowns."""

import numpy as np

import rbpsolve
from rbpsolve.examples import tanh_network

BUDGET = 40  # products of J or J^T
SOLVERS = {
    "FixedPoint": rbpsolve.FixedPoint(max_steps=BUDGET, rtol=0.0),
    "Neumann": rbpsolve.Neumann(max_steps=BUDGET),
    "CGNE": rbpsolve.CGNE(max_steps=BUDGET // 2, rtol=0.0),  # two products a step
    "LSQR": rbpsolve.LSQR(max_steps=BUDGET // 2, rtol=0.0),
    "GMRES": rbpsolve.GMRES(max_steps=BUDGET, rtol=0.0, restart=BUDGET),
}
NORMS = {"contractive": 0.9, "barely_contractive": 0.99}


class AccuracyPerCost:
    params = (list(SOLVERS), list(NORMS))
    param_names = ["solver", "operator"]

    def setup(self, solver, operator):
        net = tanh_network(512, NORMS[operator], seed=0)
        self.z = net.exact_adjoint()
        self.result = rbpsolve.solve_adjoint(net.operator(), net.g, SOLVERS[solver], throw=False)

    def track_relative_error(self, solver, operator):
        return float(np.linalg.norm(self.result.x - self.z) / np.linalg.norm(self.z))

    track_relative_error.unit = "relative error"

    def track_products(self, solver, operator):
        return self.result.num_vjp + self.result.num_jvp

    track_products.unit = "products"
