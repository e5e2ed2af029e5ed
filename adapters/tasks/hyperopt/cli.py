"""``rbpsolve task hyperopt`` (one method, one (T, K)) and ``rbpsolve reproduce hyperopt`` (the grid of Figure 5)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

__all__ = ["task_main", "reproduce_main"]

QUICK = {"sizes": (1000, 1000, 1000), "steps": 20, "truncate": 5, "meta_steps": 2, "batch_size": 100}


def _common(p):
    p.add_argument("--meta-steps", type=int, default=None, help="meta steps of Adam (paper: 100)")
    p.add_argument("--meta-lr", type=float, default=0.05, help="Adam's learning rate (paper: 0.05)")
    p.add_argument("--meta-objective", choices=("train", "val"), default="train",
                   help="loss after T steps on the whole training set (the paper's code) or on the validation set")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--data-root", "--data", default=None,
                   help="data directory (default: $RBPSOLVE_DATA, else the user cache)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny smoke run: 1,000 images, T = 20, K = 5, 2 meta steps, batch 100")
    p.add_argument("--no-progress", action="store_true")


def _load(args, sizes):
    import torch

    from ..data import DataFileError
    from ..data._files import command_line_message
    from .data import SPLIT, load_split
    from .hypergrad import Data

    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise SystemExit(f"--device {args.device!r} is not usable here ({e}); use --device cpu")
    try:
        split = load_split(args.data_root, sizes=sizes or SPLIT)
    except DataFileError as error:
        raise SystemExit(f"rbpsolve hyperopt: error: {command_line_message(error, args.data_root)}") from None
    meta = split["train"] if args.meta_objective == "train" else split["val"]
    return Data(*split["train"], *meta).to(device), split


def _run_cell(args, mlp, data, split, method, steps, truncate, meta_steps, batch_size, desc):
    from .experiment import evaluate, optimise

    import torch

    rec = optimise(mlp, data, method=method, steps=steps, truncate=truncate, meta_steps=meta_steps,
                   meta_lr=args.meta_lr, batch_size=batch_size, seed=args.seed, progress=not args.no_progress, desc=desc)
    theta = torch.tensor(rec["theta"], device=data.x_train.device)
    x_test, y_test = (t.to(data.x_train.device) for t in split["test"])
    loss, err = evaluate(mlp, theta, data.x_train, data.y_train, x_test, y_test, steps=steps,
                         batch_size=batch_size, seed=args.seed)
    rec["test"] = {"loss": loss, "error": err}
    return rec


def _write(results, out: Path, table_title: str):
    from . import report

    report.write_json(results, out / "results.json")
    if any(c["methods"] for c in results["cells"]):
        report.figure5(results, out / "fig5_training_loss.png")
        report.meta_curves(results, out / "meta_loss.png")
    (out / "summary.md").write_text(f"## {table_title}\n\n" + report.summary_table(results) + "\n")


def task_main(argv: list[str]) -> int:
    from .hypergrad import METHODS

    p = argparse.ArgumentParser(prog="rbpsolve task hyperopt",
                                description="Optimise 16 learning rates and momenta of SGD on MNIST by one hypergradient method.")
    p.add_argument("--method", choices=METHODS, default="neumann")
    p.add_argument("--steps", type=int, default=100, help="training steps T per meta step")
    p.add_argument("--truncate", type=int, default=50, help="K: TBPTT's graph length or the adjoint solver's iterations")
    p.add_argument("--out", default="hyperopt_out", help="output directory (results.json, summary.md, PNGs)")
    _common(p)
    args = p.parse_args(argv)
    sizes, steps, K, meta_steps, bs = None, args.steps, args.truncate, args.meta_steps or 100, args.batch_size
    if args.quick:
        sizes, steps, K, meta_steps, bs = QUICK["sizes"], QUICK["steps"], QUICK["truncate"], QUICK["meta_steps"], QUICK["batch_size"]
    from .sgd import MLP

    data, split = _load(args, sizes)
    mlp = MLP()
    rec = _run_cell(args, mlp, data, split, args.method, steps, K, meta_steps, bs, desc=args.method)
    results = {"meta_steps": meta_steps, "meta_objective": args.meta_objective, "device": args.device,
               "cells": [{"steps": steps, "truncate": K, "methods": {args.method: rec}}]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write(results, out, f"hyperopt: {args.method}, T = {steps}, K = {K}")
    print(f"{args.method} T={steps} K={K}: log10 meta-loss {rec['meta_loss_log10'][0]:.3f} -> "
          f"{rec['meta_loss_log10'][-1]:.3f}; test error {100 * rec['test']['error']:.2f} %; wrote {out}/")
    return 0


def reproduce_main(argv: list[str]) -> int:
    from .experiment import FIG5_METHODS, PAPER_GRID
    from .hypergrad import METHODS

    p = argparse.ArgumentParser(prog="rbpsolve reproduce hyperopt",
                                description="Figure 5: every method on the paper's (T, K) grid; JSON, table and PNGs.")
    p.add_argument("--out", default="docs/results/hyperopt", help="output directory")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(FIG5_METHODS))
    p.add_argument("--grid", nargs="+", default=None, metavar="T,K",
                   help="cells as T,K (default: the paper's seven)")
    p.add_argument("--agreement", action="store_true",
                   help="instead of meta-optimising: each method's hypergradient at the starting theta against BPTT's")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="run nothing: join the results.json of these output directories (cells run side by side) "
                        "into --out, with its table and figures")
    _common(p)
    args = p.parse_args(argv)
    if args.merge:
        return _merge(args.merge, Path(args.out), PAPER_GRID)
    sizes, bs, meta_steps = None, args.batch_size, args.meta_steps or 100
    try:
        grid = [tuple(int(v) for v in c.split(",")) for c in args.grid] if args.grid else list(PAPER_GRID)
    except ValueError:
        raise SystemExit(f"--grid takes cells as T,K, e.g. 100,50 500,50; got {args.grid}")
    if args.quick:
        sizes, bs, meta_steps = QUICK["sizes"], QUICK["batch_size"], QUICK["meta_steps"]
        grid = [(QUICK["steps"], QUICK["truncate"])]
    from .sgd import MLP

    data, split = _load(args, sizes)
    mlp = MLP()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.agreement:
        return _agreement(args, mlp, data, grid, bs, out)
    results = {"meta_steps": meta_steps, "meta_objective": args.meta_objective, "device": args.device,
               "batch_size": bs, "seed": args.seed, "grid": grid, "cells": [],
               "command": "rbpsolve reproduce hyperopt " + " ".join(argv)}
    bptt_cache = {}  # BPTT does not depend on K: one run per T, shared by the cells
    t0 = time.perf_counter()
    for T, K in grid:
        cell = {"steps": T, "truncate": K, "methods": {}}
        results["cells"].append(cell)
        for method in args.methods:
            if method == "bptt" and T in bptt_cache:
                cell["methods"][method] = dict(bptt_cache[T], shared_with_cell=f"T={T}")
                continue
            rec = _run_cell(args, mlp, data, split, method, T, None if method == "bptt" else K, meta_steps, bs,
                            desc=f"{method} T={T} K={K}")
            if method == "bptt":
                bptt_cache[T] = rec
            cell["methods"][method] = rec
            _write(results, out, "hyperopt: Figure 5 grid")  # after every run, so a cut-off run keeps its results
            print(f"T={T} K={K} {method}: log10 meta-loss {rec['meta_loss_log10'][0]:.3f} -> "
                  f"{rec['meta_loss_log10'][-1]:.3f}, {sum(rec['seconds']):.0f} s", flush=True)
    results["seconds_total"] = time.perf_counter() - t0
    _write(results, out, "hyperopt: Figure 5 grid")
    print(f"wrote {out}/ in {results['seconds_total']:.0f} s")
    return 0


def _merge(dirs, out: Path, order) -> int:
    import json

    from . import report

    parts = []
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise SystemExit(f"--merge: {path} does not exist; give output directories of `rbpsolve reproduce hyperopt`")
        try:
            parts.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise SystemExit(f"--merge: {path} is not valid JSON ({e}); was its run cut off while writing?")
    try:
        results = report.merge(parts, order)
    except ValueError as e:
        raise SystemExit(f"--merge: {e}")
    out.mkdir(parents=True, exist_ok=True)
    _write(results, out, "hyperopt: Figure 5 grid")
    print(f"merged {len(parts)} result sets ({len(results['cells'])} cells) into {out}/")
    return 0


def _agreement(args, mlp, data, grid, bs, out: Path) -> int:
    from . import report
    from .experiment import gradient_agreement

    rows = gradient_agreement(mlp, data, grid, args.methods, batch_size=bs, seed=args.seed, progress=not args.no_progress)
    report.write_json({"grid": grid, "meta_objective": args.meta_objective, "rows": rows}, out / "agreement.json")
    lines = ["| T | K | method | cosine with BPTT | relative error | norm / BPTT's norm |", "|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['steps']} | {r['truncate']} | {report.NAMES.get(r['method'], r['method'])} | "
                     f"{r['cosine']:.3f} | {r['rel_error']:.3f} | {r['norm'] / r['bptt_norm']:.3f} |")
    (out / "agreement.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(task_main(sys.argv[1:]))
