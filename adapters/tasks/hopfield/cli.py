"""``rbpsolve task hopfield`` (one training run) and ``rbpsolve reproduce hopfield`` (Table 1, Figs. 1-2)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from .methods import METHODS, PAPER_METHODS

__all__ = ["task_main", "reproduce_main"]

QUICK = {"iters": 20, "hidden": 32, "pool": 4, "valid_every": 10, "num": 3}


def _common(p: argparse.ArgumentParser):
    p.add_argument("--iters", type=int, default=None,
                   help="Adam steps, batch size 1 (paper: 10000 = 1000 epochs of the 10 patterns)")
    p.add_argument("--hidden", type=int, default=None, help="hidden neurons (paper: 1024)")
    p.add_argument("--pool", type=int, default=None,
                   help="max-pool the 28x28 patterns by this factor (paper: 1; 2 gives 14x14)")
    p.add_argument("--patterns", type=int, default=None, help="number of digits 0..N-1 to store (paper: 10)")
    p.add_argument("--valid-every", type=int, default=None, help="steps between validations (paper: 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first trial (init, corruption, order)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    p.add_argument("--data", "--data-root", dest="data", default=None,
                   help="data directory holding mnist/ (default $RBPSOLVE_DATA, else the user cache)")
    p.add_argument("--download", action="store_true", help="fetch missing MNIST files from the mirrors")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny settings for CI: {QUICK['iters']} steps, {QUICK['hidden']} hidden, 7x7 patterns, "
                        f"{QUICK['num']} digits")


def _settings(args):
    from .train import TrainConfig

    if args.device != "cpu":
        import torch

        try:
            torch.empty(0, device=args.device)
        except (RuntimeError, AssertionError) as error:
            raise SystemExit(f"--device {args.device!r} is not usable here ({error}); use --device cpu") from None
    quick = args.quick
    pick = lambda value, name, paper: value if value is not None else (QUICK[name] if quick else paper)  # noqa: E731
    for name in ("iters", "hidden", "pool", "patterns", "valid_every"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "hidden" else 1):
            raise SystemExit(f"--{name.replace('_', '-')} must be positive; got {value}")
    config = TrainConfig(iters=pick(args.iters, "iters", 10_000), hidden=pick(args.hidden, "hidden", 1024),
                         lr=args.lr, valid_every=pick(args.valid_every, "valid_every", 100), seed=args.seed,
                         device=args.device)
    return config, pick(args.pool, "pool", 1), pick(args.patterns, "num", 10)


def _patterns(args, pool, num):
    from ..data import DataFileError
    from ..data._files import command_line_message
    from .patterns import load_patterns

    try:
        return load_patterns(args.data, num=num, pool_factor=pool, download=args.download)
    except DataFileError as error:
        raise SystemExit(f"rbpsolve hopfield: error: {command_line_message(error, args.data)}") from None


def task_main(argv: list[str]) -> int:
    """Train once with one method and print the outcome."""
    p = argparse.ArgumentParser(prog="rbpsolve task hopfield",
                                description="Train the Hopfield associative memory once (Sec. 4.1 of Liao et al.)")
    p.add_argument("--method", choices=METHODS, default="neumann")
    p.add_argument("--truncate", type=int, default=20, help="truncation K (backward budget)")
    p.add_argument("--json", type=Path, default=None, help="also write the run's record here")
    _common(p)
    args = p.parse_args(argv)
    if args.truncate < 1:
        p.error(f"--truncate must be >= 1; got {args.truncate}")
    import json

    from tqdm import tqdm

    from .train import train_trial

    config, pool, num = _settings(args)
    config = dataclasses.replace(config, method=args.method, truncate=args.truncate)
    patterns = _patterns(args, pool, num)
    with tqdm(total=config.iters, desc=f"{args.method} K={args.truncate}", file=sys.stderr) as bar:
        trial = train_trial(patterns, config, progress=bar.update)
    print(f"method {args.method}, truncation {args.truncate}, {config.iters} steps, {trial['seconds']:.1f} s")
    print(f"initial loss {trial['initial_loss']:.4f}, final loss {trial['final_loss']}")
    print(f"result: {trial['status']} ({trial['reason']})")
    print(f"backward solves: {trial['backward_status']}; diverging: {trial['diverging_solves']}; "
          f"products: {trial['num_vjp']} VJP, {trial['num_jvp']} JVP")
    print(f"validation error (corrupted input) at the end: {trial['valid'][-1][1]:.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(trial) + "\n")
    return 0 if trial["status"] != "nan" else 1


def _merge(args) -> int:
    import json

    from .figures import plot_all
    from .reproduce import write_results

    trials, commands, meta = [], [], {}
    for path in args.from_json:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"--from-json: cannot read {path} ({error})") from None
        trials += data["trials"]
        commands.append(data["command"])
        meta = {"pool": data.get("pool", 1), "patterns": data.get("patterns", 10)}
    _, pool, num = _settings(args)
    patterns = _patterns(args, meta.get("pool", pool), meta.get("patterns", num))
    truncations = sorted({t["config"]["truncate"] for t in trials if t["config"]["method"] != "bptt"})
    paths = write_results(trials, args.out, " && ".join(commands), meta)
    figures = plot_all(trials, patterns, args.out, truncations or [1])
    print(paths["table"].read_text())
    print("wrote", ", ".join(str(x) for x in [*paths.values(), *figures]))
    return 0


def reproduce_main(argv: list[str]) -> int:
    """Run the Table 1 grid and write results.json, table.md and the figures."""
    p = argparse.ArgumentParser(prog="rbpsolve reproduce hopfield",
                                description="Reproduce Table 1 and Figs. 1-2 of Liao et al. (2018)")
    p.add_argument("--trials", type=int, default=20, help="trials per (method, truncation) cell")
    p.add_argument("--methods", default=",".join(PAPER_METHODS),
                   help=f"comma-separated, from {','.join(METHODS)}")
    p.add_argument("--truncations", default="10,20,30", help="comma-separated K values")
    p.add_argument("--out", type=Path, default=Path("docs/results/hopfield"), help="output directory")
    p.add_argument("--from-json", type=Path, nargs="+", default=None,
                   help="run nothing: merge the trials of these results.json files (e.g. shards of the grid run "
                        "in parallel) and write the table and figures from them")
    _common(p)
    args = p.parse_args(argv)
    if args.from_json:
        return _merge(args)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        p.error(f"unknown methods {unknown}; choose from {','.join(METHODS)}")
    try:
        truncations = sorted({int(k) for k in args.truncations.split(",")})
    except ValueError:
        p.error(f"--truncations must be comma-separated integers; got {args.truncations!r}")
    if truncations[0] < 1 or args.trials < 1:
        p.error("--truncations must be >= 1 and --trials >= 1")
    from tqdm import tqdm

    from .figures import plot_all
    from .reproduce import run_grid, write_results

    config, pool, num = _settings(args)
    patterns = _patterns(args, pool, num)
    cells = sum(1 if m == "bptt" else len(truncations) for m in methods)
    command = "rbpsolve reproduce hopfield " + shlex.join(argv)
    with tqdm(total=cells * args.trials * config.iters, desc="hopfield grid", unit="step", file=sys.stderr) as bar:
        results = run_grid(patterns, config, methods, truncations, args.trials, progress=bar.update)
    paths = write_results(results, args.out, command, {"pool": pool, "patterns": num})
    figures = plot_all(results, patterns, args.out, truncations)
    print(paths["table"].read_text())
    print("wrote", ", ".join(str(x) for x in [*paths.values(), *figures]))
    return 0
