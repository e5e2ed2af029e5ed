"""Issue 20 (scale): the time of a solver step on a chunked dask state against numpy, in one process.

Two operators cheap per element, ``||J|| < 1``: a diagonal ``J^T u = d * u`` and a
periodic banded ``J^T u = d * u + 0.2 (roll(u, 1) + roll(u, -1))`` (see :func:`operator`).
Each solve runs ``--steps`` steps (a tolerance no step meets) with a callback that stamps
the time; a step's time is the least interval between stamps after the first two, over
``--repeat`` solves (:func:`step_ms`). Prints a markdown table: milliseconds a step on numpy and
on dask, their ratio (dask / numpy; above 1: dask is slower), and the median steps.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/dask_ratio.py --sizes 1e5 1e6 1e7 --chunk 1e6
--workers 2`` (the figures in ``docs/scale_dask.md``). One BLAS thread: dask runs its chunks
on threads of its own, and on a busy machine OpenBLAS's threads turned numpy's 0.1 ms
``vdot`` of 10^5 entries into 8 ms (they wait in 4 ms scheduler quanta).
"""

from __future__ import annotations

import argparse
import os
import time

import array_api_compat
import numpy as np

import rbpsolve

SOLVERS = {
    "FixedPoint": lambda k: rbpsolve.FixedPoint(rtol=1e-300, max_steps=k),
    "Neumann": lambda k: rbpsolve.Neumann(rtol=1e-300, max_steps=k),
    "CGNE": lambda k: rbpsolve.CGNE(rtol=1e-300, max_steps=k),
    "LSQR": lambda k: rbpsolve.LSQR(rtol=1e-300, max_steps=k),
    "GMRES(10)": lambda k: rbpsolve.GMRES(rtol=1e-300, restart=10, max_steps=k),
}


def _stencil(u, d):
    return d * u + 0.2 * (np.roll(u, 1) + np.roll(u, -1))


def operator(kind: str, d, g):
    """The benchmark's J on ``g``'s library: ``d`` (same library and chunks) its diagonal.

    ``banded`` is the periodic stencil as each library is meant to run it: ``np.roll`` on
    numpy, ``map_overlap`` (one ghost cell a side) on dask. ``banded-roll`` runs the
    array-API ``xp.roll`` on dask too: its chunks split at every product (the pitfall
    ``docs/scale_dask.md`` describes).
    """
    dask = array_api_compat.is_dask_array(g)

    def product(u):
        if kind == "diagonal":
            return d * u
        if kind == "banded" and dask:
            import dask.array as da

            return da.map_overlap(_stencil, u, d, depth=1, boundary="periodic", dtype=u.dtype)
        xp = array_api_compat.array_namespace(u)
        return d * u + 0.2 * (xp.roll(u, 1) + xp.roll(u, -1))

    # Symmetric: J = J^T, so one function is both products.
    return rbpsolve.JacobianOperator(product, product, like=g)


def step_ms(J, g, name: str, steps: int, repeat: int) -> tuple[float, float]:
    """Milliseconds a step of ``name``: ``(least, median)`` of the intervals between the
    callbacks of ``steps`` steps (the first two left out), each the least over ``repeat``
    solves.

    The least is the figure to compare, as ``timeit`` takes it: the loop persists dask's
    iterates, so a step's work does not grow, and other work on the machine can only
    lengthen an interval (on the shared machine of ``docs/scale_dask.md`` medians moved
    in 4 ms quanta). GMRES(10)'s steps differ within a cycle (the Gram-Schmidt pass grows
    with the basis): its least is a step early in a cycle, its median a typical one.
    """
    least = median = float("inf")
    for _ in range(repeat):
        stamps = []
        rbpsolve.solve_adjoint(J, g, SOLVERS[name](steps), throw=False,
                               callback=lambda info: stamps.append(time.perf_counter()))
        intervals = 1e3 * np.diff(stamps[1:])
        least, median = min(least, float(np.min(intervals))), min(median, float(np.median(intervals)))
    return least, median


def growth(steps: int) -> None:
    """Milliseconds a step early, midway and late in a run of ``steps`` steps, on a dense
    chunked J (n = 2000, chunks of 500): flat when each step is persisted, growing with
    the step when the iterate carries its whole history (run it at a commit before the
    loops persisted, 70dd6cb, to see that)."""
    import dask.array as da

    rng = np.random.default_rng(0)
    M = rng.standard_normal((2000, 2000))
    W = da.from_array(M * (0.99 / np.linalg.norm(M, 2)), chunks=500)
    g = da.from_array(rng.standard_normal(2000), chunks=500)
    J = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=g)
    print("| solver | ms/step, steps 2-10 | steps 21-30 | last 10 |\n|---|---|---|---|")
    for name in ("FixedPoint", "CGNE", "GMRES(10)"):
        stamps = [time.perf_counter()]
        rbpsolve.solve_adjoint(J, g, SOLVERS[name](steps), throw=False,
                               callback=lambda info: stamps.append(time.perf_counter()))
        ms = 1e3 * np.diff(stamps)
        print(f"| {name} | {ms[1:10].mean():.0f} | {ms[20:30].mean():.0f} | {ms[-10:].mean():.0f} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7], help="state sizes (elements)")
    p.add_argument("--chunk", type=float, default=1e6, help="elements a dask chunk")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="dask threads")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--operators", nargs="+", default=["diagonal", "banded"])
    p.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    p.add_argument("--growth", type=int, default=0, metavar="STEPS",
                   help="instead: ms a step early and late in a run of STEPS steps (see growth)")
    args = p.parse_args(argv)
    import dask
    import dask.array as da

    dask.config.set(scheduler="threads", num_workers=args.workers)
    if args.growth:
        return growth(args.growth)
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"dask {dask.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, {args.workers} dask threads, "
          f"OPENBLAS_NUM_THREADS={blas}, "
          f"{args.steps} steps a solve, the best of {args.repeat}\n")
    print("| n | chunk | operator | solver | numpy ms/step | dask ms/step | dask / numpy | (medians) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        n, chunk = int(size), int(min(args.chunk, size))
        rng = np.random.default_rng(0)
        d, g = rng.uniform(-0.5, 0.5, n), rng.standard_normal(n)  # |d| + 2 * 0.2 < 1
        dd, gd = da.from_array(d, chunks=chunk).persist(), da.from_array(g, chunks=chunk).persist()
        for kind in args.operators:
            on_numpy, on_dask = operator(kind, d, g), operator(kind, dd, gd)
            for name in args.solvers:
                t_np = step_ms(on_numpy, g, name, args.steps, args.repeat)
                t_da = step_ms(on_dask, gd, name, args.steps, args.repeat)
                print(f"| {n:.0e} | {chunk:.2g} | {kind} | {name} | {t_np[0]:.1f} | {t_da[0]:.1f} | "
                      f"{t_da[0] / t_np[0]:.2f} | {t_np[1]:.1f} / {t_da[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
