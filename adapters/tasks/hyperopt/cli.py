"""``rbpsolve task hyperopt`` (one method, one (T, K)) and ``rbpsolve reproduce hyperopt`` (the grid of Figure 5)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .. import _cli

__all__ = ["task_main", "reproduce_main"]

#: This task's methods (the hypergradient needs only VJPs of the training step, Hessian-vector
#: products; LSQR and CG-RBP's extra JVPs are affordable too, but the paper's grid and this task's
#: runs use these). Same list as ``hypergrad.METHODS``, without importing torch.
METHODS = ("bptt", "tbptt", "neumann_rbp", "rbp", "cg_rbp", "gmres")
FIG5_METHODS = ("bptt", "tbptt", "rbp", "neumann_rbp")
QUICK = {"sizes": (1000, 1000, 1000), "steps": 20, "truncate": 5, "meta_steps": 2, "batch_size": 100}
DEFAULT_OUT = "docs/results/hyperopt"
_POSITIVE = _cli.number(int, 1)


def _common(p, *, multi: bool, out_default, out_help):
    p.add_argument("--meta-steps", type=_POSITIVE, default=None, help="meta steps of Adam (None: 100, as the paper)")
    p.add_argument("--meta-lr", type=float, default=0.05, help="Adam's learning rate (the paper's)")
    p.add_argument("--meta-objective", choices=("train", "val"), default="train",
                   help="loss after T steps on the whole training set (the paper's code) or on the validation set")
    p.add_argument("--batch-size", type=_POSITIVE, default=200, help="SGD mini-batch size (the paper's)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny smoke run: 1,000 images, T = 20, K = 5, 2 meta steps, batch 100")
    _cli.add_common(p, methods=METHODS, method_default=FIG5_METHODS if multi else "neumann_rbp", multi=multi,
                    seed_default=1234, seed_help="seed of the initial weights and mini-batch order (the paper's code's)",
                    out_default=out_default, out_help=out_help)


def _load(args, sizes, prog="rbpsolve hyperopt"):
    import torch

    from ..data import DataFileError
    from .data import SPLIT, load_split
    from .hypergrad import Data

    _cli.check_device(prog, args.device)
    try:
        split = load_split(args.data, sizes=sizes or SPLIT, download=args.download)
    except DataFileError as error:
        _cli.fail(prog, _cli.data_message(error, args.data))
    meta = split["train"] if args.meta_objective == "train" else split["val"]
    return Data(*split["train"], *meta).to(torch.device(args.device)), split


def _run_cell(args, mlp, data, split, method, steps, truncate, meta_steps, batch_size, desc):
    import torch

    from .experiment import evaluate, optimise

    rec = optimise(mlp, data, method=method, steps=steps, truncate=truncate, meta_steps=meta_steps,
                   meta_lr=args.meta_lr, batch_size=batch_size, seed=args.seed, progress=not args.no_progress, desc=desc)
    theta = torch.tensor(rec["theta"], device=data.x_train.device)
    x_test, y_test = (t.to(data.x_train.device) for t in split["test"])
    loss, err = evaluate(mlp, theta, data.x_train, data.y_train, x_test, y_test, steps=steps,
                         batch_size=batch_size, seed=args.seed)
    rec["test"] = {"loss": loss, "error": err}
    return rec


def _run_cell_array(args, xp, sizes, steps, truncate, meta_steps, batch_size, prog):
    """One method, one (T, K) on numpy/cupy: the record of :func:`_run_cell` (no torch imported)."""
    from ..data import DataFileError
    from .array_experiment import SPLIT, evaluate_array, load_split_arrays, optimise_array
    from .layout import MLPLayout

    try:
        split = load_split_arrays(args.data, sizes=sizes or SPLIT, download=args.download)
    except DataFileError as error:
        _cli.fail(prog, _cli.data_message(error, args.data))
    mlp, meta = MLPLayout(), split["train"] if args.meta_objective == "train" else split["val"]
    rec = optimise_array(mlp, split["train"], meta, xp, method=args.method, steps=steps, truncate=truncate,
                         meta_steps=meta_steps, meta_lr=args.meta_lr, batch_size=batch_size, seed=args.seed,
                         progress=not args.no_progress, desc=args.method)
    loss, err = evaluate_array(mlp, rec["theta"], split["train"], split["test"], xp, steps=steps,
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
    prog = "rbpsolve task hyperopt"
    p = _cli.make_parser(prog, "Optimise 16 learning rates and momenta of SGD on MNIST by one hypergradient method "
                               "(Sec. 4.3 of Liao et al. 2018); print the meta-loss and test error.")
    p.add_argument("--steps", type=_cli.number(int, 2), default=100, help="training steps T per meta step")
    p.add_argument("--truncate", type=_POSITIVE, default=50,
                   help="K: TBPTT's graph length or the adjoint solver's iterations")
    _cli.add_backend(p, "its initial weights and batch order drawn with numpy")
    _common(p, multi=False, out_default=None,
            out_help="output directory for results.json, summary.md and the figures (None: write nothing)")
    args = p.parse_args(argv)
    if args.backend != "torch" and args.device != "cpu":
        p.error(f"--device applies to --backend torch; --backend {args.backend} runs where its arrays live")
    sizes, steps, K, meta_steps, bs = None, args.steps, args.truncate, args.meta_steps or 100, args.batch_size
    if args.quick:
        sizes, steps, K, meta_steps, bs = QUICK["sizes"], QUICK["steps"], QUICK["truncate"], QUICK["meta_steps"], QUICK["batch_size"]
    xp = None if args.backend == "torch" else _cli.array_namespace(prog, args.backend)
    out = _cli.start_out(prog, args.out)
    start = time.perf_counter()
    if xp is None:
        from .sgd import MLP

        data, split = _load(args, sizes, prog)
        rec = _run_cell(args, MLP(), data, split, args.method, steps, K, meta_steps, bs, desc=args.method)
    else:
        rec = _run_cell_array(args, xp, sizes, steps, K, meta_steps, bs, prog)
    seconds = time.perf_counter() - start
    results = {"meta_steps": meta_steps, "meta_objective": args.meta_objective, "device": args.device,
               "cells": [{"steps": steps, "truncate": K, "methods": {args.method: rec}}]}
    print(f"{args.method} T={steps} K={K}: log10 meta-loss {rec['meta_loss_log10'][0]:.3f} -> "
          f"{rec['meta_loss_log10'][-1]:.3f}; test error {100 * rec['test']['error']:.2f} %; {seconds:.1f} s"
          + ("" if xp is None else f", backend {args.backend}"))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write(results, out, f"hyperopt: {args.method}, T = {steps}, K = {K}")
        print(f"wrote {out}/")
    return 0


def reproduce_main(argv: list[str]) -> int:
    prog = "rbpsolve reproduce hyperopt"
    p = _cli.make_parser(prog, "Figure 5 of Liao et al. (2018): every method on the paper's (T, K) grid; "
                               "results.json, summary.md and the figures in --out.")
    p.add_argument("--grid", nargs="+", default=None, metavar="T,K",
                   help="cells as T,K (None: the paper's eight)")
    p.add_argument("--agreement", action="store_true",
                   help="instead of meta-optimising: each method's hypergradient at the starting theta against BPTT's")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="run nothing: join the results.json of these output directories (cells run side by side) "
                        "into --out, with its table and figures")
    p.add_argument("--tsne", action="store_true",
                   help="instead of Figure 5: Figure 6, t-SNE of the training trajectories of TBPTT and Neumann-RBP "
                        "(or --methods) with the theta of meta steps --tsne-at, on one --grid cell (None: 100,50); "
                        "writes fig6_tsne.png and fig6_tsne.json (needs scikit-learn)")
    p.add_argument("--tsne-at", type=_POSITIVE, nargs="+", default=[20, 40], metavar="S",
                   help="with --tsne: the meta steps whose theta is taken (the paper's 20 and 40)")
    p.add_argument("--train-size", type=_POSITIVE, default=None, metavar="N",
                   help="with --tsne: train on the first N of the 10,000 training images (None: all), for a small run")
    _common(p, multi=True, out_default=DEFAULT_OUT, out_help="output directory (results.json, summary.md, figures)")
    args = p.parse_args(argv)
    from .experiment import PAPER_GRID

    methods = _cli.flat(args.methods)
    out = _cli.start_out(prog, args.out, DEFAULT_OUT)
    if args.merge:
        return _merge(args.merge, out, PAPER_GRID, prog)
    if args.train_size is not None and not args.tsne:
        p.error("argument --train-size: only with --tsne")
    if args.tsne:
        if not any(a.startswith("--methods") for a in argv):
            methods = ["tbptt", "neumann_rbp"]
        return _tsne(args, argv, methods, out, p, prog)
    sizes, bs, meta_steps = None, args.batch_size, args.meta_steps or 100
    try:
        grid = [tuple(int(v) for v in c.split(",")) for c in args.grid] if args.grid else list(PAPER_GRID)
        if any(len(c) != 2 or c[0] < 2 or c[1] < 1 for c in grid):
            raise ValueError
    except ValueError:
        p.error(f"argument --grid: cells are T,K with T >= 2 and K >= 1, e.g. 100,50 500,50; got {' '.join(args.grid)}")
    if args.quick:
        sizes, bs, meta_steps = QUICK["sizes"], QUICK["batch_size"], QUICK["meta_steps"]
        grid = [(QUICK["steps"], QUICK["truncate"])]
    from .sgd import MLP

    data, split = _load(args, sizes, prog)
    mlp = MLP()
    out.mkdir(parents=True, exist_ok=True)
    if args.agreement:
        return _agreement(args, mlp, data, grid, bs, out, methods)
    results = {"meta_steps": meta_steps, "meta_objective": args.meta_objective, "device": args.device,
               "batch_size": bs, "seed": args.seed, "grid": grid, "cells": [],
               "command": "rbpsolve reproduce hyperopt " + " ".join(argv)}
    bptt_cache = {}  # BPTT does not depend on K: one run per T, shared by the cells
    t0 = time.perf_counter()
    for T, K in grid:
        cell = {"steps": T, "truncate": K, "methods": {}}
        results["cells"].append(cell)
        for method in methods:
            if method == "bptt" and T in bptt_cache:
                cell["methods"][method] = dict(bptt_cache[T], shared_with_cell=f"T={T}")
                continue
            start = time.perf_counter()
            rec = _run_cell(args, mlp, data, split, method, T, None if method == "bptt" else K, meta_steps, bs,
                            desc=f"{method} T={T} K={K}")
            seconds = time.perf_counter() - start  # the run's wall time, as its progress bar counts it
            if method == "bptt":
                bptt_cache[T] = rec
            cell["methods"][method] = rec
            _write(results, out, "hyperopt: Figure 5 grid")  # after every run, so a cut-off run keeps its results
            print(f"T={T} K={K} {method}: log10 meta-loss {rec['meta_loss_log10'][0]:.3f} -> "
                  f"{rec['meta_loss_log10'][-1]:.3f}, {seconds:.1f} s", flush=True)
    results["seconds_total"] = time.perf_counter() - t0
    _write(results, out, "hyperopt: Figure 5 grid")
    print(f"wrote {out}/ in {results['seconds_total']:.1f} s")
    return 0


def _tsne(args, argv, methods, out: Path, p, prog) -> int:
    from .data import SPLIT

    try:
        cells = [tuple(int(v) for v in c.split(",")) for c in args.grid] if args.grid else [(100, 50)]
        if len(cells) != 1 or len(cells[0]) != 2 or cells[0][0] < 3 or cells[0][1] < 1:
            raise ValueError
    except ValueError:
        p.error(f"argument --grid: with --tsne give one cell T,K with T >= 3, e.g. 100,50; got {' '.join(args.grid)}")
    (T, K), at = cells[0], sorted(set(args.tsne_at))
    if args.meta_steps is not None and args.meta_steps != at[-1]:
        p.error(f"argument --meta-steps: with --tsne the meta-optimisation runs to the last of --tsne-at ({at[-1]}); "
                "leave --meta-steps out")
    if args.train_size is not None and args.train_size > SPLIT[0]:
        p.error(f"argument --train-size: at most {SPLIT[0]} (the paper's training set); got {args.train_size}")
    if args.batch_size > (args.train_size or SPLIT[0]):
        p.error(f"argument --batch-size: at most the training set size ({args.train_size or SPLIT[0]})")
    try:
        from . import tsne
        tsne.require_sklearn()
    except ModuleNotFoundError as error:
        _cli.fail(prog, str(error))
    from . import report
    from .sgd import MLP

    data, _ = _load(args, None, prog)
    if args.train_size is not None:
        n = args.train_size
        data = type(data)(data.x_train[:n], data.y_train[:n],
                          *((data.x_meta[:n], data.y_meta[:n]) if args.meta_objective == "train" else
                            (data.x_meta, data.y_meta)))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = tsne.run(MLP(), data, steps=T, truncate=K, methods=methods, meta_steps=at, batch_size=args.batch_size,
                      seed=args.seed, meta_lr=args.meta_lr, progress=not args.no_progress)
    result.update(meta_objective=args.meta_objective, device=args.device,
                  command="rbpsolve reproduce hyperopt " + " ".join(argv), seconds_total=time.perf_counter() - t0)
    report.write_json(result, out / "fig6_tsne.json")
    size = f"{data.x_train.shape[0]:,} training images"
    tsne.figure6(tsne.panels_of(result), out / "fig6_tsne.png",
                 title=f"t-SNE of the training trajectories (weights); cf. Fig. 6 of Liao et al. 2018\n"
                       f"T = {T}, K = {K}, {size}, meta steps {', '.join(map(str, at))}")
    for m, r in result["runs"].items():
        losses = ", ".join(f"meta step {s}: log10 meta-loss {v['log10_meta_loss']:.3f}" for s, v in r["panels"].items())
        print(f"{m} T={T} K={K}: {losses}; {r['meta_seconds']:.1f} s of meta steps", flush=True)
    print(f"wrote {out}/fig6_tsne.png and fig6_tsne.json in {result['seconds_total']:.1f} s")
    return 0


def _merge(dirs, out: Path, order, prog) -> int:
    import json

    from . import report

    parts = []
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            _cli.fail(prog, f"--merge: {path} does not exist; give output directories of `rbpsolve reproduce hyperopt`")
        try:
            parts.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            _cli.fail(prog, f"--merge: {path} is not valid JSON ({e}); was its run cut off while writing?")
    try:
        results = report.merge(parts, order)
    except ValueError as e:
        _cli.fail(prog, f"--merge: {e}")
    out.mkdir(parents=True, exist_ok=True)
    _write(results, out, "hyperopt: Figure 5 grid")
    print(f"merged {len(parts)} result sets ({len(results['cells'])} cells) into {out}/")
    return 0


def _agreement(args, mlp, data, grid, bs, out: Path, methods) -> int:
    from . import report
    from .experiment import gradient_agreement

    rows = gradient_agreement(mlp, data, grid, methods, batch_size=bs, seed=args.seed, progress=not args.no_progress)
    report.write_json({"grid": grid, "meta_objective": args.meta_objective, "rows": rows}, out / "agreement.json")
    lines = ["| T | K | method | cosine with BPTT | relative error | norm / BPTT's norm |", "|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['steps']} | {r['truncate']} | {report.label(r['method'])} | "
                     f"{r['cosine']:.3f} | {r['rel_error']:.3f} | {r['norm'] / r['bptt_norm']:.3f} |")
    (out / "agreement.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(task_main(sys.argv[1:]))
