"""Issue 14: what a solve costs beyond its products, on a dense J with ||J||_2 = 0.9.

Every solver runs a fixed budget of 50 steps (``rtol = atol = 0``) on numpy and torch (CPU)
at two sizes:

- ``small``: float64, state of shape (64,), J a 64 x 64 matrix: the products cost a few
  microseconds, so what is measured is the solver's own per-step work (Python, array
  dispatch, norms);
- ``realistic``: float32, a batch of 64 states of 4,096 (state shape (64, 4096)), J a dense
  4,096 x 4,096 matrix: ``J^T u = u @ W`` and ``J v = v @ W^T`` on the rows, about 2 GFLOP a
  product.

What is measured, per (solver, backend, size), in one process with the things compared
interleaved (each round times the solve, its bare products and, for GMRES, its limit, in an
order that rotates from round to round), and summarised as the median over the rounds:

- ``solve / bare``: the solve's time over the time of the same products bare (as many VJPs
  and JVPs as the result's ``num_vjp`` and ``num_jvp``, chained in a plain loop);
- ``solve / limit`` (GMRES): over the bare products plus one classical Gram-Schmidt pass a
  step, ``h = V_k w`` and ``w - h V_k`` with ``V_k`` the (k + 1, N) basis so far, in plain
  array operations on the same backend: all that Arnoldi must do;
- overhead in microseconds a step: ``(solve - bare) / num_steps``.

Goals (issue 14): realistic size, FixedPoint, Neumann, CGNE and LSQR <= 1.05 x their bare
products and GMRES <= 1.05 x its limit; small size, <= 10 us a step for FixedPoint/Neumann
and <= 40 us for the Krylov solvers; GMRES memory <= restart + 2 state-sized arrays.

The measuring code is shared with ``benchmarks/overhead_report.py``, which runs the same
measurements with more rounds and prints the table of the benchmark README.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import tracemalloc

import numpy as np

import rbpsolve

from ._base import namespace, seconds_per_call

STEPS = 50
RESTART = 50
NORM = 0.9
REPEATS = 5  # interleaved rounds in the asv classes (the report script takes --repeats)

SOLVER_NAMES = ["FixedPoint", "Neumann", "CGNE", "LSQR", "GMRES"]
OVERHEAD_BACKENDS = ["numpy", "torch"]
# (state shape, dtype): n is the last dimension.
OVERHEAD_SIZES = {"small": ((64,), "float64"), "realistic": ((64, 4096), "float32")}
# Minimum wall time of one timed sample: short calls are repeated to reach it.
SAMPLE_SECONDS = 0.02


def make_solver(name: str):
    """The 50-step fixed budget of each solver (``rtol = atol = 0``)."""
    if name == "FixedPoint":
        return rbpsolve.FixedPoint(max_steps=STEPS, rtol=0.0, atol=0.0)
    if name == "Neumann":
        return rbpsolve.Neumann(max_steps=STEPS, rtol=0.0, atol=0.0)
    if name == "CGNE":
        return rbpsolve.CGNE(max_steps=STEPS, rtol=0.0, atol=0.0)
    if name == "LSQR":
        return rbpsolve.LSQR(max_steps=STEPS, rtol=0.0, atol=0.0)
    if name == "GMRES":
        return rbpsolve.GMRES(max_steps=STEPS, restart=RESTART, rtol=0.0, atol=0.0)
    raise ValueError(name)


def dense_matrix(n: int, *, norm: float = NORM, seed: int = 0) -> np.ndarray:
    """A float64 Gaussian n x n matrix scaled to spectral norm ``norm``."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    if n <= 1024:
        sigma = np.linalg.norm(W, 2)
    else:
        import scipy.sparse.linalg as spla

        sigma = spla.svds(W, k=1, return_singular_vectors=False, v0=rng.standard_normal(n))[0]
    return W * (norm / sigma)


class DenseJacobian:
    """J = W (dense, ||W||_2 = 0.9) acting on each row of a state of shape (..., n):
    ``vjp(u) = u @ W`` (``J^T u`` row by row) and ``jvp(v) = v @ W^T``, the callbacks a user
    would write. Also a (restart + 1, N) stand-in basis for the Gram-Schmidt limit."""

    def __init__(self, backend: str, size: str, *, seed: int = 0):
        shape, dtype = OVERHEAD_SIZES[size]
        self.backend, self.size, self.shape = backend, size, shape
        self.xp, self.device, self.sync = namespace(backend)
        xp = self.xp
        n = shape[-1]
        W = dense_matrix(n, seed=seed)
        rng = np.random.default_rng(seed + 1)
        self.dtype = getattr(xp, dtype)
        self.W = xp.asarray(W, dtype=self.dtype, device=self.device)
        self.WT = xp.asarray(np.ascontiguousarray(W.T), dtype=self.dtype, device=self.device)
        self.g = xp.asarray(rng.standard_normal(shape), dtype=self.dtype, device=self.device)
        self._rng = rng

    def vjp(self, u):
        return u @ self.W

    def jvp(self, v):
        return v @ self.WT

    def operator(self):
        return rbpsolve.JacobianOperator(self.vjp, self.jvp, like=self.g)

    def basis(self, rows: int):
        """``rows`` unit vectors of the flattened state size (what the Gram-Schmidt pass
        multiplies with; its cost does not depend on their values)."""
        N = int(np.prod(self.shape))
        V = self._rng.standard_normal((rows, N))
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        return self.xp.asarray(V, dtype=self.dtype, device=self.device)


class OverheadCase:
    """One solver on one problem: its solve, its bare products and (GMRES) its limit."""

    def __init__(self, problem: DenseJacobian, solver_name: str, *, sample_seconds: float = SAMPLE_SECONDS):
        self.problem = problem
        self.name = solver_name
        self.solver = make_solver(solver_name)
        self.J = problem.operator()
        result = self.solve()  # warm-up, and the product counts the bare loop repeats
        self.status = result.status.name if hasattr(result.status, "name") else str(result.status)
        self.num_steps, self.num_vjp, self.num_jvp = result.num_steps, result.num_vjp, result.num_jvp
        self.functions = {"solve": self.solve, "bare": self.bare}
        if solver_name == "GMRES":
            self.V = problem.basis(RESTART + 1)
            self.functions["limit"] = self.limit
        self.number = {}
        for key, fn in self.functions.items():
            # The solve above was its warm-up; a first call long enough to fill a sample
            # (the realistic size) is warm-up enough for the others, and is not repeated.
            once = seconds_per_call(fn, 1, problem.sync)
            if key != "solve" and once < sample_seconds:
                once = seconds_per_call(fn, 1, problem.sync)
            self.number[key] = max(1, math.ceil(sample_seconds / max(once, 1e-9)))

    def solve(self):
        return rbpsolve.solve_adjoint(self.J, self.problem.g, self.solver, throw=False)

    def bare(self):
        """``num_vjp`` VJPs and ``num_jvp`` JVPs, alternating (as LSQR and CGNE use them),
        each product applied to the previous one's output."""
        vjp, jvp = self.problem.vjp, self.problem.jvp
        u = v = self.problem.g
        for i in range(max(self.num_vjp, self.num_jvp)):
            if i < self.num_vjp:
                u = vjp(u)
            if i < self.num_jvp:
                v = jvp(v)
        return u, v

    def limit(self):
        """GMRES's limit: the same VJPs as :meth:`bare`, plus for each of the ``num_steps``
        Arnoldi steps one classical Gram-Schmidt pass ``h = V_k w``, ``w - h V_k`` of the
        product against the first ``k + 1`` rows of the basis."""
        vjp, V = self.problem.vjp, self.V
        u = self.problem.g
        w = None
        for i in range(self.num_vjp):
            u = vjp(u)
            if i < self.num_steps:
                Vk = V[: i % RESTART + 1]
                flat = u.reshape(-1)
                h = Vk @ flat
                w = flat - h @ Vk
        return u, w

    def sample(self, round_index: int = 0) -> dict:
        """One round: seconds per call of each function, in an order rotated by the round."""
        keys = list(self.functions)
        shift = round_index % len(keys)
        keys = keys[shift:] + keys[:shift]
        return {k: seconds_per_call(self.functions[k], self.number[k], self.problem.sync) for k in keys}


def measure_group(size: str, backends=OVERHEAD_BACKENDS, solvers=SOLVER_NAMES, repeats: int = REPEATS,
                  progress=None, sample_seconds: float = SAMPLE_SECONDS) -> dict:
    """Interleaved rounds over every (solver, backend) at one size, in this process.

    Returns ``{(solver, backend): entry}``, ``entry`` a dict of the per-round times
    (``solve``, ``bare``, ``limit`` lists, seconds per call) and the counts ``num_steps``,
    ``num_vjp``, ``num_jvp``, ``status``. Backends that are not installed are left out.
    ``progress(n)`` is called after each sample, if given."""
    cases = []
    for backend in backends:
        try:
            problem = DenseJacobian(backend, size)
        except NotImplementedError:
            continue
        for solver in solvers:
            cases.append(OverheadCase(problem, solver, sample_seconds=sample_seconds))
    results = {
        (c.name, c.problem.backend): {
            "solve": [], "bare": [], "limit": [] if "limit" in c.functions else None,
            "num_steps": c.num_steps, "num_vjp": c.num_vjp, "num_jvp": c.num_jvp, "status": c.status,
        }
        for c in cases
    }
    for r in range(repeats):
        for case in cases:
            entry = results[(case.name, case.problem.backend)]
            for key, seconds in case.sample(r).items():
                entry[key].append(seconds)
            if progress is not None:
                progress(1)
    return results


def ratios(entry) -> list:
    """solve / bare products, per round."""
    return [s / b for s, b in zip(entry["solve"], entry["bare"])]


def limit_ratios(entry) -> list | None:
    """solve / (bare products + one CGS pass a step), per round (GMRES only)."""
    if entry["limit"] is None:
        return None
    return [s / lim for s, lim in zip(entry["solve"], entry["limit"])]


def overhead_us_per_step(entry) -> list:
    """(solve - bare products) / num_steps in microseconds, per round."""
    return [(s - b) / entry["num_steps"] * 1e6 for s, b in zip(entry["solve"], entry["bare"])]


def median(values) -> float:
    return statistics.median(values)


def _diagonal_problem(solver_name: str, shape, dtype, seed: int):
    """``(J, g, solver)`` of the memory measurements: a diagonal J (entries in [-0.9, 0.9]),
    whose free products allocate one state each, as a dense J's do."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(-NORM, NORM, shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return rbpsolve.JacobianOperator(lambda u: d * u, lambda v: d * v, like=g), g, make_solver(solver_name)


@contextlib.contextmanager
def _traced():
    """tracemalloc on (unless it already was) around the block, after a collection; yields
    the traced memory before the block."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        gc.collect()
        yield tracemalloc.get_traced_memory()[0]
    finally:
        if not was_tracing:
            tracemalloc.stop()


def peak_state_arrays(solver_name: str, shape=(64, 4096), dtype=np.float32, seed: int = 0) -> float:
    """Peak memory a numpy solve allocates (tracemalloc, numpy buffers included), in
    state-sized arrays, the returned ``x`` and every product's output included. J is
    diagonal here (``J^T u = d * u``, entries of ``d`` in [-0.9, 0.9]) so that the products
    cost nothing; what they allocate (one state each) is what the dense J's do."""
    J, g, solver = _diagonal_problem(solver_name, shape, dtype, seed)
    rbpsolve.solve_adjoint(J, g, solver, throw=False)  # warm-up (imports, caches)
    with _traced() as before:
        tracemalloc.reset_peak()
        result = rbpsolve.solve_adjoint(J, g, solver, throw=False)
        peak = tracemalloc.get_traced_memory()[1]
    del result
    return (peak - before) / g.nbytes


def held_state_arrays(solver_name: str, shape=(64, 4096), dtype=np.float32, seed: int = 0) -> list:
    """Memory a numpy solve holds after each of its steps (tracemalloc, read by a callback;
    the same diagonal J as :func:`peak_state_arrays`), in state-sized arrays: what the
    solver and the loop keep from step to step, without the step's transients."""
    J, g, solver = _diagonal_problem(solver_name, shape, dtype, seed)
    held = []
    with _traced() as before:
        rbpsolve.solve_adjoint(J, g, solver, throw=False,
                               callback=lambda info: held.append(tracemalloc.get_traced_memory()[0]))
    return [(h - before) / g.nbytes for h in held]


# ------------------------------------------------------------------------------- asv
class _OverheadSmallCache:
    """One measurement (``setup_cache``: every solver and backend, interleaved rounds, in one
    process) that the small-size classes below read."""

    timeout = 300

    def setup_cache(self):
        return measure_group("small")

    setup_cache.timeout = 300

    @staticmethod
    def _entry(cache, solver, backend):
        if (solver, backend) not in cache:
            raise NotImplementedError(f"{backend} is not installed")
        return cache[(solver, backend)]


class _OverheadRealisticCache(_OverheadSmallCache):
    """As :class:`_OverheadSmallCache` at the realistic size. Expensive: about 2 x 5 rounds
    of 50-100 products of 2 GFLOP per solver and backend (8-10 minutes on 2 CPU cores)."""

    timeout = 3600

    def setup_cache(self):
        return measure_group("realistic")

    setup_cache.timeout = 3600


class _PerSolver:
    """Solve / bare products and the overhead a step (us), per solver and backend."""

    params = (SOLVER_NAMES, OVERHEAD_BACKENDS)
    param_names = ["solver", "backend"]

    def setup(self, cache, solver, backend):
        self.entry = self._entry(cache, solver, backend)

    def track_ratio_to_products(self, cache, solver, backend):
        return median(ratios(self.entry))

    track_ratio_to_products.unit = "solve time / bare products time"

    def track_overhead_us_per_step(self, cache, solver, backend):
        return median(overhead_us_per_step(self.entry))

    track_overhead_us_per_step.unit = "us per step"


class _GMRESLimit:
    """GMRES(50) time over its limit (bare VJPs + one CGS pass a step), per backend."""

    params = OVERHEAD_BACKENDS
    param_names = ["backend"]

    def setup(self, cache, backend):
        self.entry = self._entry(cache, "GMRES", backend)

    def track_ratio_to_limit(self, cache, backend):
        return median(limit_ratios(self.entry))

    track_ratio_to_limit.unit = "solve time / (bare products + CGS) time"


class OverheadSmall(_OverheadSmallCache, _PerSolver):
    """n = 64, float64, 50-step budgets: solve / bare products and the overhead a step (us)."""


class OverheadSmallGMRESLimit(_OverheadSmallCache, _GMRESLimit):
    """n = 64: GMRES(50) time over its limit (bare VJPs + one CGS pass a step)."""


class OverheadRealistic(_OverheadRealisticCache, _PerSolver):
    """State (64, 4096), float32, dense 4096 x 4096 J, 50-step budgets (goal <= 1.05)."""


class OverheadRealisticGMRESLimit(_OverheadRealisticCache, _GMRESLimit):
    """Realistic size: GMRES(50) time over its limit (goal <= 1.05)."""


class OverheadMemory:
    """Peak numpy memory of a 50-step solve in state-sized arrays, state (64, 4096) float32
    (goal for GMRES(50): <= restart + 2 = 52). Products are free here (diagonal J)."""

    params = SOLVER_NAMES
    param_names = ["solver"]
    timeout = 120

    def track_peak_state_arrays(self, solver):
        return peak_state_arrays(solver)

    track_peak_state_arrays.unit = "state-sized arrays"
