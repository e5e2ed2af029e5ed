"""Trustworthy results: how good is ``Result.error_estimate``, and what does verifying a
``CONVERGED`` claim cost?

``EstimateQuality``: the ratio true error / ``error_estimate`` (above 1: the estimate was
optimistic) over a fixed family of random operators (n = 40, 30 seeds, rho(J) from 0.3 to
1.3, the family of tests/test_error_estimate.py), per solver and kind of operator.

``VerificationCost``: the default ``verify=None`` recomputes the true residual b - A x with
one more product before claiming ``CONVERGED``; its cost against ``verify=False`` for the same
solver and tolerance, in products and in time measured in the same process (goal: time ratio
<= 1.05 at the realistic size of ``SolverCost``). The time ratio cannot fall below
(products + 1) / products, so a solve of few steps pays more in proportion.
"""

import numpy as np

import rbpsolve
from rbpsolve._estimate_quality import estimate_ratios, family_problem, family_solvers

from ._base import SIZES, TanhJacobian, best_time

SEEDS = range(30)
KINDS = ["normal", "nonnormal"]
# Default settings and fixed budgets, as in tests/test_error_estimate.py. The fixed Krylov
# budgets (K=15) end unconverged, so their estimates are marked unreliable.
QUALITY_SOLVERS = family_solvers()


class EstimateQuality:
    """Ratios over the ok results of the 30 problems (float64 numpy). Where a solver has no
    reliable ok result for a kind (the fixed Krylov budgets, always marked unreliable) the
    tracks over reliable results return nan: there is nothing to measure, not a zero."""

    params = (list(QUALITY_SOLVERS), KINDS)
    param_names = ["solver", "kind"]
    timeout = 300

    def setup(self, solver, kind):
        ratios = []
        for seed in SEEDS:
            found = estimate_ratios(*family_problem(kind, seed), {solver: QUALITY_SOLVERS[solver]})
            if solver in found:
                ratios.append(found[solver])
        self.ok = len(ratios)
        self.reliable = np.array([r for r, reliable in ratios if reliable])
        self.every = np.array([r for r, _ in ratios])

    def track_median_ratio(self, solver, kind):
        return float(np.median(self.reliable)) if self.reliable.size else float("nan")

    track_median_ratio.unit = "true error / estimate (median, reliable)"

    def track_worst_ratio(self, solver, kind):
        return float(self.reliable.max()) if self.reliable.size else float("nan")

    track_worst_ratio.unit = "true error / estimate (max, reliable)"

    def track_fraction_within_10x(self, solver, kind):
        return float(np.mean(self.reliable <= 10)) if self.reliable.size else float("nan")

    track_fraction_within_10x.unit = "fraction of reliable results with ratio <= 10"

    def track_fraction_reliable(self, solver, kind):
        return self.reliable.size / self.ok if self.ok else float("nan")

    track_fraction_reliable.unit = "fraction of ok results marked reliable"

    def track_worst_ratio_every_ok(self, solver, kind):
        # Every ok result, reliable or not: an infinite estimate counts as ratio 0.
        return float(self.every.max()) if self.every.size else float("nan")

    track_worst_ratio_every_ok.unit = "true error / estimate (max, every ok result)"

    def track_fraction_infinite(self, solver, kind):
        return float(np.mean(self.every == 0)) if self.every.size else float("nan")

    track_fraction_infinite.unit = "fraction of ok results with an infinite estimate (no number backed)"


RTOL = 1e-4  # reachable in float32, so that the solves converge and the claim is verified
MAX_STEPS = 500
VERIFY_SOLVERS = {
    "CGNE": rbpsolve.CGNE,
    "LSQR": rbpsolve.LSQR,
    "GMRES": rbpsolve.GMRES,
    "FixedPoint": rbpsolve.FixedPoint,
    "Neumann": rbpsolve.Neumann,
}


class VerificationCost:
    """rtol = 1e-4 on the float32 tanh-network Jacobian of ``SolverCost`` (||J|| = 0.9), with
    the default ``verify`` and with ``verify=False``. GMRES verifies its residual itself at
    the end of a cycle, so the loop adds nothing there."""

    params = (list(VERIFY_SOLVERS), ["numpy", "torch"], list(SIZES))
    param_names = ["solver", "backend", "size"]
    timeout = 600

    def setup(self, solver, backend, size):
        n, batch = SIZES[size]
        self.problem = TanhJacobian(backend, n, batch)
        self.J = self.problem.operator()
        self.verified = VERIFY_SOLVERS[solver](rtol=RTOL, max_steps=MAX_STEPS)
        self.unverified = VERIFY_SOLVERS[solver](rtol=RTOL, max_steps=MAX_STEPS, verify=False)
        # Warm-up, and a broken benchmark must show rather than time a failure.
        self.results = {}
        for name, settings in (("verify=None", self.verified), ("verify=False", self.unverified)):
            result = rbpsolve.solve_adjoint(self.J, self.problem.g, settings, throw=False)
            if result.status is not rbpsolve.Status.CONVERGED:
                raise RuntimeError(f"{solver} with {name} ended {result.status.name}, not CONVERGED")
            self.results[name] = result

    def _solve_verified(self):
        return rbpsolve.solve_adjoint(self.J, self.problem.g, self.verified)

    def _solve_unverified(self):
        return rbpsolve.solve_adjoint(self.J, self.problem.g, self.unverified)

    def track_extra_products(self, solver, backend, size):
        with_, without = self.results["verify=None"], self.results["verify=False"]
        return (with_.num_vjp + with_.num_jvp) - (without.num_vjp + without.num_jvp)

    track_extra_products.unit = "products (verify=None - verify=False)"

    def track_time_ratio(self, solver, backend, size):
        # Interleaved rounds, so that a burst of load on a shared machine hits both sides;
        # many at the small size, where a solve takes well under a millisecond.
        rounds = 200 if size == "small" else 7
        verified = unverified = float("inf")
        for _ in range(rounds):
            verified = min(verified, best_time(self._solve_verified, self.problem.sync, repeat=1))
            unverified = min(unverified, best_time(self._solve_unverified, self.problem.sync, repeat=1))
        return verified / unverified

    track_time_ratio.unit = "solve time verify=None / verify=False"
