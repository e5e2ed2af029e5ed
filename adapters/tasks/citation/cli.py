"""``rbpsolve task citation`` and ``rbpsolve reproduce citation``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from ..data import DataFileError
from ..data._files import command_line_message
from ..data.planetoid import DATASETS
from .methods import ALIASES, METHODS, PAPER_METHODS, method_name
from .report import load_runs, summarize, write_figures, write_table
from .train import Config, prepare, train

__all__ = ["task_main", "reproduce_main"]

#: --quick: a few steps of everything, for CI (seconds).
QUICK = dict(steps=4, truncate=2, epochs=3, eval_every=2)


def _common(parser: argparse.ArgumentParser) -> None:
    d = Config()
    parser.add_argument("--steps", type=int, default=d.steps, help=f"propagation steps T (default {d.steps})")
    parser.add_argument("--truncate", type=int, default=d.truncate,
                        help=f"K: TBPTT steps and RBP solver steps (default {d.truncate})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"full-batch SGD steps (default {d.epochs})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"SGD learning rate (default {d.lr})")
    parser.add_argument("--eval-every", type=int, default=d.eval_every,
                        help=f"evaluate every this many epochs (default {d.eval_every})")
    parser.add_argument("--hidden", type=int, default=None,
                        help="PCA dimension = state size (default 64 for cora/citeseer, 16 for pubmed)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--data-root", "--data", default=None,
                        help="data directory (default $RBPSOLVE_DATA, else user cache)")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny run for CI: overrides {', '.join(f'{k}={v}' for k, v in QUICK.items())}")


def _settings(args) -> dict:
    s = dict(steps=args.steps, truncate=args.truncate, epochs=args.epochs, lr=args.lr, eval_every=args.eval_every,
             hidden=args.hidden, device=args.device, root=args.data_root)
    if args.quick:
        s.update(QUICK)
    return s


def _run(config: Config, data, desc: str) -> dict:
    with tqdm(total=config.epochs, desc=desc, unit="epoch", leave=False, file=sys.stderr) as bar:
        return train(config, data, progress=bar.update)


def _settings_text(runs: list[dict]) -> str:
    """One line per distinct setting: which data sets/methods ran with it."""
    groups: dict[str, set] = {}
    for r in runs:
        c = r["config"]
        key = ", ".join(f"{k}={c[k]}" for k in ("steps", "truncate", "epochs", "lr", "momentum", "weight_decay",
                                                  "eval_every", "hidden", "train_ratio", "val_ratio", "device"))
        groups.setdefault(key, set()).add(f"{c['dataset']}/{c['method']}")
    return "Settings of the runs:\n\n" + "\n".join(f"- {', '.join(sorted(v))}: {k}" for k, v in sorted(groups.items()))


def task_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rbpsolve task citation",
        description="Train the GRU graph network of Liao et al. (2018, Sec. 4.2) on a Planetoid citation graph "
        "with one gradient method, on a random 1%%/49%%/50%% split; print accuracies.")
    parser.add_argument("--dataset", choices=DATASETS, default="cora")
    parser.add_argument("--method", type=method_name, choices=METHODS, default="neumann_rbp",
                        help=f"one of {', '.join(METHODS)} (also {', '.join(ALIASES)})")
    parser.add_argument("--seed", type=int, default=0, help="split and initialisation seed (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="write the run's JSON record here")
    _common(parser)
    args = parser.parse_args(argv)
    try:
        config = Config(dataset=args.dataset, method=args.method, seed=args.seed, **_settings(args))
        data = prepare(config.dataset, config.dim, config.root)
    except DataFileError as error:
        parser.exit(2, f"rbpsolve task citation: error: {command_line_message(error, args.data_root)}\n")
    except ValueError as error:
        parser.exit(2, f"rbpsolve task citation: error: {error}\n")
    record = _run(config, data, f"{config.dataset} {config.method}")
    print(f"{config.dataset} {config.method} seed {config.seed}: status {record['status']}, "
          f"best validation {record['best_val_acc']:.2f}%, test at best validation "
          f"{record['test_acc_at_best_val']:.2f}%, adjoint statuses {record['backward_status'] or '-'}, "
          f"{record['seconds']:.1f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record))
    return 0 if record["status"] == "ok" else 1


def reproduce_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rbpsolve reproduce citation",
        description="Table 2 and Fig. 3 of Liao et al. (2018): every method x seed on each data set. One JSON per "
        "run under OUT/runs/ (existing ones are kept: rerun to resume), then results.json, table.md and "
        "fig3_<dataset>.png from all runs there.")
    parser.add_argument("--datasets", default="cora,citeseer,pubmed", help="comma-separated (default all three)")
    parser.add_argument("--methods", default=",".join(PAPER_METHODS),
                        help=f"comma-separated, from {','.join(METHODS)} (default the paper's six)")
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument("--seed-start", type=int, default=0,
                        help="first seed (default 0): runs seeds S..S+N-1, so processes can share a grid")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/results/citation"))
    parser.add_argument("--report-only", action="store_true", help="only rebuild the summary, table and figures")
    _common(parser)
    args = parser.parse_args(argv)
    datasets = [s.strip().lower() for s in args.datasets.split(",") if s.strip()]
    methods = [method_name(s) for s in args.methods.split(",") if s.strip()]
    bad = [d for d in datasets if d not in DATASETS] + [m for m in methods if m not in METHODS]
    if bad or args.seeds < 1:
        parser.exit(2, f"rbpsolve reproduce citation: error: unknown {bad} (datasets {DATASETS}, methods {METHODS}) "
                    f"or --seeds < 1\n")
    settings = _settings(args)
    run_dir = args.out_dir / "runs"
    unavailable, grid = {}, []
    for name in datasets:
        try:
            probe = Config(dataset=name, **settings)
            data = prepare(name, probe.dim, probe.root)
        except DataFileError as error:
            error = command_line_message(error, args.data_root)
            unavailable[name] = error
            print(f"skipping {name}: {error}", file=sys.stderr)
            continue
        except ValueError as error:
            parser.exit(2, f"rbpsolve reproduce citation: error: {error}\n")
        grid += [(Config(dataset=name, method=m, seed=s, **settings), data) for s in range(args.seed_start, args.seed_start + args.seeds)
                 for m in methods]
    if not args.report_only:
        for config, data in tqdm(grid, desc="runs", unit="run", file=sys.stderr):
            path = run_dir / config.dataset / f"{config.method}-seed{config.seed}.json"
            if path.exists() and json.loads(path.read_text())["config"] == dataclasses.asdict(config):
                continue
            record = _run(config, data, f"{config.dataset} {config.method} seed {config.seed}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
    runs = load_runs(run_dir)
    summary = summarize(runs, unavailable)
    summary["command"] = "rbpsolve reproduce citation " + shlex.join(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(summary, indent=1))
    text = write_table(summary, args.out_dir / "table.md", _settings_text(runs) + f"\n\nCommand: `{summary['command']}`")
    write_figures(runs, args.out_dir)
    print(text)
    return 0
