"""The ``rbpsolve`` command.

``rbpsolve compare`` solves the adjoint system of the built-in example with every solver
and prints what each spent and how close it came; ``rbpsolve analyze`` prints the
diagnostic report beside the exact dense figures. ``rbpsolve task NAME`` and
``rbpsolve reproduce NAME`` run the paper's reference tasks (``hopfield``, ``citation``,
``hyperopt``); their options live in ``rbpsolve.adapters.tasks.NAME.cli``, imported only then,
so this module never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time

import numpy as np

from . import __version__, _backend
from ._analyze import analyze
from ._bounds import neumann_steps
from ._progress import progress
from ._solve import solve_adjoint
from ._solvers import CGNE, GMRES, LSQR, FixedPoint, Neumann
from .examples import tanh_network

__all__ = ["main"]


# Types of the numeric options: a bad value is argparse's one-line "argument --X: ..." error, exit code 2.
def _integer(low: int):
    """An int >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _real(low: float, high: float = math.inf):
    """A finite float in the open interval (``low``, ``high``): nan and inf are refused."""
    allowed = f"a finite number > {low:g}" if high == math.inf else f"a number strictly between {low:g} and {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low < value < high):
            raise argparse.ArgumentTypeError(f"must be {allowed}; got {text!r}")
        return value

    parse.__name__ = allowed
    return parse


_N = _integer(2)
_NORM = _real(0.0)
_SEED = _integer(0)
_RTOL = _real(0.0, 1.0)
_STEPS = _integer(1)


def _example_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=_N, default=512, help="neurons of the example network (default 512)")
    parser.add_argument("--norm", type=_NORM, default=0.9, help="||J||_2 at the steady state (default 0.9)")
    parser.add_argument("--seed", type=_SEED, default=0, help="seed of the random network (default 0)")
    parser.add_argument(
        "--backend",
        choices=("numpy", "torch"),
        default="numpy",
        help="array library of the matrix-free products (torch needs `pip install rbpsolve[torch]`)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rbpsolve",
        description="Matrix-free adjoint solvers for recurrent back-propagation. The built-in example is a "
        "random network x = tanh(W x + b) whose Jacobian at the steady state has the chosen 2-norm.",
    )
    parser.add_argument("--version", action="version", version=f"rbpsolve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    compare = sub.add_parser("compare", help="solve the example's adjoint with every solver and compare")
    _example_args(compare)
    compare.add_argument("--rtol", type=_RTOL, default=1e-8, help="relative tolerance (default 1e-8)")
    compare.add_argument(
        "--truncate", type=_STEPS, default=20, help="K of the fixed-budget Neumann-RBP row (default 20, as in the paper)"
    )
    compare.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr while the dense references are built (default: only when stderr is a terminal)",
    )
    compare.add_argument("--max-steps", type=_STEPS, default=5000, help="step limit of every solver (default 5000)")
    report = sub.add_parser("analyze", help="print rbpsolve.analyze() for the example, beside exact figures")
    _example_args(report)
    report.add_argument("--rtol", type=_RTOL, default=1e-8, help="target tolerance for the step advice")
    for command, verb in (("task", "train once with one method and report"),
                          ("reproduce", "run the paper's grid of methods and seeds; write JSON, tables, figures")):
        task = sub.add_parser(command, help=f"reference tasks: {verb}", add_help=False)
        task.add_argument("name", choices=TASKS, help="the reference task")
        task.add_argument("task_args", nargs=argparse.REMAINDER, help="the task's own options (see --help)")
    return parser


# Reference tasks: name -> module with task_main(argv) and reproduce_main(argv).
TASKS = {
    "hopfield": "rbpsolve.adapters.tasks.hopfield.cli",
    "citation": "rbpsolve.adapters.tasks.citation.cli",
    "hyperopt": "rbpsolve.adapters.tasks.hyperopt.cli",
}


def _run_task(command: str, name: str, argv: list[str]) -> int:
    # The task modules import torch, matplotlib and tqdm only when they need them (--help needs none).
    try:
        module = importlib.import_module(TASKS[name])
        entry = module.task_main if command == "task" else module.reproduce_main
        return entry(argv)
    except ImportError as error:
        if error.name not in ("torch", "matplotlib", "tqdm"):
            raise
        sys.stderr.write(f"rbpsolve {command} {name}: error: needs torch and the plotting extras: "
                         f"pip install 'rbpsolve[torch,plot]' ({error})\n")
        return 2


def _operator(net, backend: str, *, declare_norm: bool):
    if backend == "numpy":
        return net.operator(declare_norm=declare_norm), net.g, np.asarray
    try:
        import array_api_compat.torch as xp
    except ImportError as error:  # pragma: no cover - depends on the install
        raise SystemExit("--backend torch needs torch: pip install 'rbpsolve[torch]'") from error
    J = net.operator(declare_norm=declare_norm, xp=xp, dtype=xp.float64, device="cpu")
    return J, xp.asarray(net.g, dtype=xp.float64), _backend.to_numpy


def _network(args, on_step=None):
    """The example network, or argparse's kind of error if it has no steady state with ||J|| = --norm."""
    try:
        return tanh_network(args.n, args.norm, seed=args.seed, on_step=on_step)
    except RuntimeError as error:  # the steady state vanishes (a fold) below the requested norm
        sys.stderr.write(f"rbpsolve {args.command}: error: argument --norm: {error}\n")
        raise SystemExit(2) from None


def _compare(args) -> int:
    max_steps, rtol = args.max_steps, args.rtol
    solvers = [
        ("FixedPoint (RBP)", FixedPoint(rtol=rtol, max_steps=max_steps)),
        ("Neumann, tol", Neumann(rtol=rtol, max_steps=max_steps)),
        (f"Neumann, K={args.truncate}", Neumann(max_steps=args.truncate)),
        ("CGNE (CG-RBP)", CGNE(rtol=rtol, max_steps=max_steps)),
        ("LSQR", LSQR(rtol=rtol, max_steps=max_steps)),
        ("GMRES(50)", GMRES(rtol=rtol, max_steps=max_steps, restart=50)),
    ]
    # The dense references (the steady state by Newton's method, an LU solve, an SVD) cost O(n^3)
    # each and take minutes at n of several thousand: the bar says which stage is running. Nothing
    # is printed until it closes, so the table never interleaves with it on a terminal.
    with progress(total=3 + len(solvers), desc="compare", enabled=args.progress) as bar:
        def on_step(k, achieved):
            bar.set_description(f"steady state {k} (dense Newton), ||J||_2 = {achieved:.4f} -> {args.norm:g}")

        net = _network(args, on_step)
        bar.update()
        J, g, to_numpy = _operator(net, args.backend, declare_norm=True)
        bar.set_description("reference adjoint (dense LU)")
        z = net.exact_adjoint()
        A = np.eye(net.n) - net.jacobian.T
        bar.update()
        bar.set_description("cond(I - J) (dense SVD)")
        cond = np.linalg.cond(A)
        bar.update()
        rows = []
        for name, solver in solvers:
            bar.set_description(name)
            rows.append(_compare_row(name, J, g, solver, to_numpy, net, A, z))
            bar.update()
    print(
        f"Example: x = tanh(W x + b), n = {net.n}, ||J||_2 = {net.norm_J:.4f} (declared to the solvers), "
        f"rho(J) = {net.spectral_radius:.4f}, cond(I - J) = {cond:.3f}, backend {args.backend}"
    )
    if net.norm_J < 1:
        print(
            f"Proposition 2: Neumann needs K = {neumann_steps(rtol, net.norm_J)} for a relative error "
            f"bound of {rtol:g}; K = {args.truncate} guarantees {net.norm_J ** (args.truncate + 1):.2e}"
        )
    print(f"Tolerance: ||g - (I - J^T) z|| <= {rtol:g} * ||g||; errors are ||z - z_exact|| (||z_exact|| = {np.linalg.norm(z):.4g});")
    print("the error bound is rigorous (from the declared ||J||), the estimate is not ((?): marked unreliable)")
    print()
    header = ("solver", "status", "steps", "VJPs", "JVPs", "time [ms]", "rel. residual", "error bound",
              "error estimate", "true error")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    return 0


def _compare_row(name, J, g, solver, to_numpy, net, A, z) -> tuple[str, ...]:
    """One row of compare's table: the solve, timed, against the dense reference ``z``."""
    start = time.perf_counter()
    result = solve_adjoint(J, g, solver, throw=False)
    elapsed = 1e3 * (time.perf_counter() - start)
    x = np.asarray(to_numpy(result.x), dtype=np.float64)
    residual = np.linalg.norm(net.g - A @ x) / np.linalg.norm(net.g)
    error = np.linalg.norm(x - z)
    bound = "-" if result.error_bound is None else f"{result.error_bound:.2e}"
    estimate = f"{result.error_estimate:.2e}" + ("" if result.estimate_reliable else " (?)")
    return (name, result.status.name, str(result.num_steps), str(result.num_vjp), str(result.num_jvp),
            f"{elapsed:.1f}", f"{residual:.2e}", bound, estimate, f"{error:.2e}")


def _analyze(args) -> int:
    net = _network(args)
    # analyze() must find things out for itself: the exact norm is not declared.
    J, g, _ = _operator(net, args.backend, declare_norm=False)
    report = analyze(J, g, rtol=args.rtol)
    print(report)
    s = np.linalg.svd(np.eye(net.n) - net.jacobian, compute_uv=False)
    print()
    print("exact (dense) for comparison:")
    print(f"  ||J||_2 = {net.norm_J:.6g}   rho(J) = {net.spectral_radius:.6g}   cond(I - J) = {s[0] / s[-1]:.4g}"
          f"   (sigma_max = {s[0]:.4g}, sigma_min = {s[-1]:.4g})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `rbpsolve task --help` must reach the top-level help, `rbpsolve task hopfield --help` the task's.
    if len(argv) == 2 and argv[0] in ("task", "reproduce") and argv[1] in ("-h", "--help"):
        argv = ["--help"]
    if len(argv) >= 1 and argv[0] in ("task", "reproduce") and (len(argv) == 1 or argv[1].startswith("-")):
        sys.stderr.write(f"rbpsolve {argv[0]}: error: name a task: {', '.join(TASKS)} "
                         f"(usage: rbpsolve {argv[0]} NAME [options]; options: rbpsolve {argv[0]} NAME --help)\n")
        return 2
    args = _build_parser().parse_args(argv)
    if args.command in ("task", "reproduce"):
        return _run_task(args.command, args.name, args.task_args)
    if args.command == "compare":
        return _compare(args)
    return _analyze(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
