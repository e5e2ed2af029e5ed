"""Issue 14's overhead figures as a markdown report: the measurements of
``benchmarks/benchmarks/bench_overhead.py`` with more rounds, plus LSQR against scipy.

For every solver (FixedPoint, Neumann, CGNE, LSQR, GMRES(50); 50-step fixed budgets,
``rtol = atol = 0``), backend (numpy, torch CPU) and size (small: float64, state (64,);
realistic: float32, state (64, 4096), dense 4096 x 4096 J with ||J||_2 = 0.9), in one process
with the things compared interleaved round by round (``--repeats`` rounds, median [min–max]):

- solve time / time of the same VJPs and JVPs bare;
- GMRES: solve time / its limit, the bare VJPs plus one classical Gram-Schmidt pass a step
  (``h = V_k w``, ``w - h V_k``, plain array operations on the same backend);
- the overhead a step, ``(solve - bare) / num_steps``, in microseconds.

Also: peak numpy memory of each solve in state-sized arrays (tracemalloc, state (64, 4096)
float32), and ``rbpsolve.solve(A, b, LSQR(rtol=1e-10))`` against ``scipy.sparse.linalg.lsqr``
on the same numpy ``LinearOperator`` ``A = I - J^T`` (n = 2000, float64, dense J, scipy with
``atol=0, btol=1e-10``: the same stopping test ``||r|| <= 1e-10 ||b||``), iterations shown.

Run from the repository root, with nothing else heavy running (about 4 minutes on 2 quiet cores
with the defaults; the realistic size is nearly all of it)::

    python benchmarks/overhead_report.py [--repeats 7] [--sizes small,realistic] [--backends numpy,torch]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import shlex
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks.bench_overhead import (  # noqa: E402
    NORM,
    OVERHEAD_SIZES,
    RESTART,
    SAMPLE_SECONDS,
    SOLVER_NAMES,
    STEPS,
    dense_matrix,
    limit_ratios,
    measure_group,
    median,
    overhead_us_per_step,
    peak_state_arrays,
    held_state_arrays,
    ratios,
)

GOAL_RATIO = 1.05
GOAL_US = {"FixedPoint": 10.0, "Neumann": 10.0, "CGNE": 40.0, "LSQR": 40.0, "GMRES": 40.0}


def spread(values, fmt="{:.2f}") -> str:
    """median [min–max]"""
    return f"{fmt.format(median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def goal_check(solver, size, entry) -> str:
    if size == "realistic":
        if solver == "GMRES":
            value, what = median(limit_ratios(entry)), "× limit"
        else:
            value, what = median(ratios(entry)), "× bare"
        return f"≤ {GOAL_RATIO} {what}: {'met' if value <= GOAL_RATIO else 'missed'}"
    value = median(overhead_us_per_step(entry))
    goal = GOAL_US[solver]
    return f"≤ {goal:g} µs/step: {'met' if value <= goal else 'missed'}"


def overhead_table(results_by_size) -> list[str]:
    lines = [
        "| solver | backend | size | steps | VJPs + JVPs | solve / bare products | GMRES: solve / limit "
        "| overhead µs/step | solve ms | bare ms | goal (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, results in results_by_size.items():
        for (solver, backend), e in results.items():
            limit = limit_ratios(e)
            us_fmt = "{:.1f}" if size == "small" else "{:.0f}"
            ms_fmt = "{:.3f}" if size == "small" else "{:.0f}"
            lines.append(
                f"| {solver} | {backend} | {size} | {e['num_steps']} | {e['num_vjp']} + {e['num_jvp']} "
                f"| {spread(ratios(e))} | {spread(limit) if limit else '–'} "
                f"| {spread(overhead_us_per_step(e), us_fmt)} "
                f"| {ms_fmt.format(median(e['solve']) * 1e3)} | {ms_fmt.format(median(e['bare']) * 1e3)} "
                f"| {goal_check(solver, size, e)} |"
            )
    return lines


def memory_table(solvers) -> list[str]:
    lines = ["| solver | peak state-sized arrays (transients included) | held after each step: median [max] | goal |",
             "|---|---|---|---|"]
    for solver in solvers:
        goal = f"held ≤ restart + 2 = {RESTART + 2}" if solver == "GMRES" else "–"
        held = held_state_arrays(solver)
        lines.append(f"| {solver} | {peak_state_arrays(solver):.1f} | {median(held):.1f} [{max(held):.1f}] | {goal} |")
    return lines


def _timed(fn):
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out
    finally:
        if enabled:
            gc.enable()


def lsqr_versus_scipy(n: int, rtol: float, repeats: int, progress=None) -> list[str]:
    """rbpsolve's LSQR and scipy's on the same LinearOperator A = I - J^T, interleaved."""
    import scipy.sparse.linalg as spla

    import rbpsolve

    W = dense_matrix(n)
    WT = np.ascontiguousarray(W.T)
    A = spla.LinearOperator(
        (n, n), matvec=lambda x: x - WT @ x, rmatvec=lambda y: y - W @ y, dtype=np.float64
    )
    b = np.random.default_rng(1).standard_normal(n)
    max_steps = 10 * n
    ours_solver = rbpsolve.LSQR(rtol=rtol, max_steps=max_steps)

    def ours():
        return rbpsolve.solve(A, b, ours_solver)

    def theirs():
        # scipy stops at ||r|| <= btol ||b|| + atol ||A|| ||x||: atol = 0 makes it rbpsolve's test.
        return spla.lsqr(A, b, atol=0.0, btol=rtol, iter_lim=max_steps)

    ours(), theirs()  # warm-up
    pairs = []
    for r in range(repeats):
        order = [("ours", ours), ("theirs", theirs)]
        if r % 2:
            order.reverse()
        times = {name: _timed(fn)[0] for name, fn in order}
        pairs.append((times["ours"], times["theirs"]))
        if progress is not None:
            progress(1)
    result = ours()
    x_s, _, itn, *_ = theirs()
    res_ours = np.linalg.norm(b - A @ result.x) / np.linalg.norm(b)
    res_theirs = np.linalg.norm(b - A @ x_s) / np.linalg.norm(b)
    ratio = [o / t for o, t in pairs]
    return [
        "| rbpsolve / scipy time | iterations rbpsolve / scipy | products rbpsolve (A v + A^T u) "
        "| relative residual rbpsolve / scipy | rbpsolve ms | scipy ms |",
        "|---|---|---|---|---|---|",
        f"| {spread(ratio, '{:.3f}')} | {result.num_steps} / {itn} | {result.num_jvp} + {result.num_vjp} "
        f"| {res_ours:.3e} / {res_theirs:.3e} | {median([p[0] for p in pairs]) * 1e3:.1f} "
        f"| {median([p[1] for p in pairs]) * 1e3:.1f} |",
    ]


def _commit() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _versions() -> str:
    import scipy

    parts = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"scipy {scipy.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    return ", ".join(parts)


def _progress_bar(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return None, lambda: None
    bar = tqdm(total=total, file=sys.stderr, desc="rounds", unit="sample")
    return bar.update, bar.close


def header_lines(title, started, argv, wall, note, load_before, load_after, loads) -> list[str]:
    """A report's title and its date, command, commit, machine (with the load) and versions lines."""
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + (argv or sys.argv[1:]))
    return [
        f"# {title}",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- command: `{command}` ({wall / 60:.1f} min)",
        f"- commit: {_commit()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs{'; ' + note if note else ''}; "
        f"load average (1 min) {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end, "
        f"{min(loads):.2f}–{max(loads):.2f} over the timed rounds (this run's own threads included)",
        f"- versions: {_versions()}",
    ]


class _LoadWatch:
    """Wraps the progress callback to sample the 1-minute load average after every sample
    (this run's own threads count in it: about 2 while it computes on 2 cores)."""

    def __init__(self, update):
        self.update = update
        self.loads = [os.getloadavg()[0]]

    def __call__(self, n):
        self.loads.append(os.getloadavg()[0])
        if self.update is not None:
            self.update(n)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--sizes", default="small,realistic", help="comma-separated: small, realistic")
    parser.add_argument("--backends", default="numpy,torch", help="comma-separated: numpy, torch")
    parser.add_argument("--solvers", default=",".join(SOLVER_NAMES), help="comma-separated solver names")
    parser.add_argument("--scipy-n", type=int, default=2000, help="size of the LSQR-vs-scipy problem (0: skip)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc memory table")
    parser.add_argument("--note", default="", help="a note on the machine, printed in the header")
    args = parser.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    solvers = [s for s in args.solvers.split(",") if s]
    for s in sizes:
        if s not in OVERHEAD_SIZES:
            parser.error(f"unknown size {s!r}; choose from {', '.join(OVERHEAD_SIZES)}")
    for s in solvers:
        if s not in SOLVER_NAMES:
            parser.error(f"unknown solver {s!r}; choose from {', '.join(SOLVER_NAMES)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    total = args.repeats * (len(sizes) * len(backends) * len(solvers) + (1 if args.scipy_n else 0))
    bar_update, close = _progress_bar(total)
    update = _LoadWatch(bar_update)
    wall = time.perf_counter()
    results_by_size, loads_by_size = {}, {}
    for size in sizes:
        first = len(update.loads)
        results_by_size[size] = measure_group(size, backends, solvers, args.repeats, progress=update)
        loads_by_size[size] = update.loads[first:] or update.loads[-1:]
    scipy_lines = lsqr_versus_scipy(args.scipy_n, 1e-10, args.repeats, progress=update) if args.scipy_n else None
    close()
    memory_lines = None if args.no_memory else memory_table(solvers)
    wall = time.perf_counter() - wall
    load_after = os.getloadavg()

    out = [
        *header_lines("Overhead of the solvers against their products (issue 14)", started, argv, wall, args.note,
                      load_before, load_after, update.loads),
        f"- protocol: {args.repeats} interleaved rounds in one process (each round times the solve, its bare "
        f"products and for GMRES its limit, in a rotating order; calls shorter than {SAMPLE_SECONDS * 1e3:g} ms "
        "repeated to fill a sample, garbage collection off while timing); figures are median [min–max] over "
        "the rounds of the per-round ratio or difference",
        "",
        f"## Overhead against the products ({STEPS}-step fixed budgets, rtol = atol = 0, dense J, ‖J‖₂ = {NORM})",
        "",
        "small: float64, state (64,), J 64 × 64; realistic: float32, state (64, 4096), J 4096 × 4096 "
        "(`J^T u = u @ W`, `J v = v @ W^T` on the rows). Bare products: the result's `num_vjp` VJPs and "
        "`num_jvp` JVPs in a plain loop. GMRES limit: those VJPs plus one classical Gram–Schmidt pass a step "
        "(`h = V_k w`, `w - h V_k`, V_k the (k + 1, N) basis so far). Overhead µs/step: "
        "(solve − bare) / steps. Goals: realistic ≤ 1.05 × bare (GMRES: × limit); small ≤ 10 µs/step "
        "(FixedPoint, Neumann), ≤ 40 µs/step (Krylov).",
        "",
        *overhead_table(results_by_size),
        "",
        "1-minute load average over each size's rounds (about 2 of it is this run): "
        + "; ".join(f"{size} {min(v):.2f}–{max(v):.2f}" for size, v in loads_by_size.items()) + ".",
    ]
    if memory_lines:
        out += [
            "",
            "## Memory (numpy, state (64, 4096) float32, 50-step budgets)",
            "",
            "Peak of tracemalloc over one solve, above the level before it, in state-sized arrays (1 MiB): "
            "every array the solve allocates, the products' outputs and the returned x included. J is "
            "diagonal here (free products that allocate one state each, as the dense J's do). Held: the "
            "traced memory after each step (read by a callback, which makes the run step by step), what "
            "the solve keeps from one step to the next; GMRES's largest value is the step that ends its "
            "cycle (the old and the new start and the new residual, until the next step).",
            "",
            *memory_lines,
        ]
    if scipy_lines:
        out += [
            "",
            f"## LSQR against scipy.sparse.linalg.lsqr (numpy, float64, n = {args.scipy_n}, rtol 1e-10)",
            "",
            "The same `LinearOperator` A = I − J^T (dense J, ‖J‖₂ = 0.9) for both; "
            "`rbpsolve.solve(A, b, LSQR(rtol=1e-10))` (default `verify`: one more product to confirm "
            "convergence) against `lsqr(A, b, atol=0, btol=1e-10)`, the same stopping test. "
            "Goal: no slower than scipy (ratio ≤ 1).",
            "",
            *scipy_lines,
        ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
