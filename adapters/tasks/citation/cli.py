"""``rbpsolve task citation`` and ``rbpsolve reproduce citation``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from .. import _cli
from ..data.planetoid import DATASETS

__all__ = ["task_main", "reproduce_main"]

#: This task's methods: Table 2's baseline (no propagation; this task only), the paper's five, and the
#: library's extras except ``fallback`` (not run here). Same list as ``citation.methods.METHODS``, without torch.
METHODS = ("baseline", "bptt", "tbptt", "rbp", "cg_rbp", "neumann_rbp", "gmres", "lsqr", "randomized_neumann")
PAPER_METHODS = METHODS[:6]
#: --quick: a few steps of everything, for CI (seconds).
QUICK = dict(steps=4, truncate=2, epochs=3, eval_every=2)
DEFAULT_OUT = "docs/results/citation"
_POSITIVE = _cli.number(int, 1)


def _common(parser: argparse.ArgumentParser, *, multi: bool, out_default, out_help) -> None:
    # The defaults of train.Config, repeated here so that --help needs no torch (a test checks they agree).
    parser.add_argument("--steps", type=_POSITIVE, default=100, help="propagation steps T")
    parser.add_argument("--truncate", type=_POSITIVE, default=5, help="K: TBPTT steps and RBP solver steps")
    parser.add_argument("--epochs", type=_POSITIVE, default=2000, help="full-batch SGD steps")
    parser.add_argument("--lr", type=float, default=1e-3, help="SGD learning rate")
    parser.add_argument("--eval-every", type=_POSITIVE, default=20, help="evaluate every this many epochs")
    parser.add_argument("--hidden", type=_POSITIVE, default=None,
                        help="PCA dimension = state size (None: 64 for cora/citeseer, 16 for pubmed)")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny run for CI: overrides {', '.join(f'{k}={v}' for k, v in QUICK.items())}")
    _cli.add_common(parser, methods=METHODS, method_default=PAPER_METHODS if multi else "neumann_rbp", multi=multi,
                    seed_default=0, seed_help="split and initialisation seed" + (" of the first run" if multi else ""),
                    out_default=out_default, out_help=out_help, download=False)


def _settings(args) -> dict:
    s = dict(steps=args.steps, truncate=args.truncate, epochs=args.epochs, lr=args.lr, eval_every=args.eval_every,
             hidden=args.hidden, device=args.device, root=args.data)
    if args.quick:
        s.update(QUICK)
    return s


def _no_download(prog, args):
    if args.download:
        # Departure from the family: the Planetoid files have no mirror this package may fetch from.
        _cli.fail(prog, "--download: the Planetoid files cannot be fetched automatically; copy ind.<name>.* from "
                        "github.com/kimiyoung/planetoid (data/) into DIR/planetoid/ and give --data DIR")


def _run(config, data, desc: str, enabled: bool, xp=None) -> dict:
    with _cli.progress_bar(total=config.epochs, desc=desc, unit="epoch", leave=False, enabled=enabled) as bar:
        if xp is not None:
            from .array_train import train_array

            return train_array(config, xp, data, progress=bar.update)
        from .train import train

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
    prog = "rbpsolve task citation"
    parser = _cli.make_parser(
        prog, "Train the GRU graph network of Liao et al. (2018, Sec. 4.2) on a Planetoid citation graph with one "
              "gradient method, on a random 1%/49%/50% split; print accuracies.")
    parser.add_argument("--dataset", choices=DATASETS, default="cora", help="the Planetoid citation graph")
    _cli.add_backend(parser, "the GRU graph network only, not the baseline")
    _common(parser, multi=False, out_default=None,
            out_help="write the run's record, DIR/record.json (None: write nothing)")
    args = parser.parse_args(argv)
    _no_download(prog, args)
    from ..data import DataFileError
    from .config import Config, prepare

    xp = None
    if args.backend != "torch":
        if args.device != "cpu":
            parser.error(f"--device applies to --backend torch; --backend {args.backend} runs where its arrays live")
        if args.method == "baseline":
            parser.error("--method baseline runs with --backend torch only")
        xp = _cli.array_namespace(prog, args.backend)
    if args.device != "cpu":
        _cli.check_device(prog, args.device)
    try:
        config = Config(dataset=args.dataset, method=args.method, seed=args.seed, **_settings(args))
    except ValueError as error:
        _cli.fail(prog, error)
    _cli.start_out(prog, args.out)
    try:
        data = prepare(config.dataset, config.dim, config.root)
    except DataFileError as error:
        _cli.fail(prog, _cli.data_message(error, args.data))
    start = time.perf_counter()
    record = _run(config, data, f"{config.dataset} {config.method}", not args.no_progress, xp)
    seconds = time.perf_counter() - start
    print(f"{config.dataset} {config.method} seed {config.seed}: status {record['status']}, "
          f"best validation {record['best_val_acc']:.2f}%, test at best validation "
          f"{record['test_acc_at_best_val']:.2f}%, adjoint statuses {record['backward_status'] or '-'}, "
          f"{seconds:.1f} s" + ("" if xp is None else f", backend {args.backend}"))
    if args.out is not None:
        path = _cli.record_path(args.out, "record.json")
        path.write_text(json.dumps(record))
        print(f"wrote {path}")
    return 0 if record["status"] == "ok" else 1


def reproduce_main(argv: list[str]) -> int:
    prog = "rbpsolve reproduce citation"
    parser = _cli.make_parser(
        prog, "Table 2 and Fig. 3 of Liao et al. (2018): every method x seed on each data set. One JSON per "
              "run under OUT/runs/ (existing ones are kept: rerun to resume), then results.json, table.md and "
              "fig3_<dataset>.png from all runs there.")
    parser.add_argument("--datasets", default="cora,citeseer,pubmed", help="comma-separated Planetoid graphs")
    parser.add_argument("--seeds", type=_POSITIVE, default=10, help="how many seeds: runs seeds --seed .. --seed + N - 1")
    parser.add_argument("--seed-start", type=_cli.number(int, 0), default=None,
                        help=argparse.SUPPRESS)  # deprecated spelling of --seed
    parser.add_argument("--report-only", action="store_true", help="only rebuild the summary, table and figures")
    _common(parser, multi=True, out_default=DEFAULT_OUT,
            out_help="output directory (runs/, results.json, table.md, figures)")
    parser.add_argument("--out-dir", type=Path, dest="out", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # deprecated spelling of --out
    args = parser.parse_args(argv)
    _no_download(prog, args)
    from ..data import DataFileError
    from .report import load_runs, summarize, write_figures, write_table
    from .train import Config, prepare

    seed_start = args.seed if args.seed_start is None else args.seed_start
    datasets = [s.strip().lower() for s in args.datasets.split(",") if s.strip()]
    methods = _cli.flat(args.methods)
    bad = [d for d in datasets if d not in DATASETS]
    if bad or not datasets:
        parser.error(f"argument --datasets: unknown {', '.join(bad) or '(none given)'}; choose from "
                     f"{', '.join(DATASETS)}")
    if args.device != "cpu":
        _cli.check_device(prog, args.device)
    settings = _settings(args)
    _cli.start_out(prog, args.out, DEFAULT_OUT)
    run_dir = args.out / "runs"
    unavailable, grid = {}, []
    for name in datasets:
        try:
            probe = Config(dataset=name, **settings)
            data = prepare(name, probe.dim, probe.root)
        except DataFileError as error:
            error = _cli.data_message(error, args.data)
            unavailable[name] = error
            print(f"skipping {name}: {error}", file=sys.stderr)
            continue
        except ValueError as error:
            _cli.fail(prog, error)
        grid += [(Config(dataset=name, method=m, seed=s, **settings), data)
                 for s in range(seed_start, seed_start + args.seeds) for m in methods]
    if not args.report_only:
        bar = _cli.progress_bar(total=len(grid), desc="runs", unit="run", enabled=not args.no_progress)
        for config, data in grid:
            path = run_dir / config.dataset / f"{config.method}-seed{config.seed}.json"
            if not (path.exists() and json.loads(path.read_text())["config"] == dataclasses.asdict(config)):
                record = _run(config, data, f"{config.dataset} {config.method} seed {config.seed}",
                              not args.no_progress)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record))
            bar.update()
        bar.close()
    runs = load_runs(run_dir)
    summary = summarize(runs, unavailable)
    summary["command"] = "rbpsolve reproduce citation " + shlex.join(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    text = write_table(summary, args.out / "table.md", _settings_text(runs) + f"\n\nCommand: `{summary['command']}`")
    write_figures(runs, args.out)
    print(text)
    return 0
