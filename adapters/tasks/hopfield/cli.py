"""``rbpsolve task hopfield`` (one training run) and ``rbpsolve reproduce hopfield`` (Table 1, Figs. 1-2)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from .. import _cli
from ..methods import EXTRA_METHODS, PAPER_METHODS

__all__ = ["task_main", "reproduce_main"]

#: This task's methods: the paper's five and all of the library's extras (``fallback`` only here).
METHODS = PAPER_METHODS + EXTRA_METHODS
QUICK = {"iters": 20, "hidden": 32, "pool": 4, "valid_every": 10, "num": 3}
DEFAULT_OUT = "docs/results/hopfield"
_POSITIVE = _cli.number(int, 1)


def _common(p: argparse.ArgumentParser, *, multi: bool, out_default, out_help):
    p.add_argument("--iters", type=_POSITIVE, default=None,
                   help="Adam steps, batch size 1 (None: 10000 = 1000 epochs of the 10 patterns, as the paper)")
    p.add_argument("--hidden", type=_cli.number(int, 0), default=None, help="hidden neurons (None: 1024, as the paper)")
    p.add_argument("--pool", type=_POSITIVE, default=None,
                   help="max-pool the 28x28 patterns by this factor (None: 1, as the paper; 2 gives 14x14)")
    p.add_argument("--patterns", type=_POSITIVE, default=None,
                   help="number of digits 0..N-1 to store (None: 10, as the paper)")
    p.add_argument("--valid-every", type=_POSITIVE, default=None,
                   help="steps between validations (None: 100, as the paper)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the paper's)")
    p.add_argument("--spectrum-every", type=_cli.number(int, 0), default=0,
                   help="log Arnoldi/Lanczos estimates of rho(J) and sigma_min(I - J) every N steps (0: never; "
                        "about 60 products each time, not counted in the step times)")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny settings for CI: {QUICK['iters']} steps, {QUICK['hidden']} hidden, 7x7 patterns, "
                        f"{QUICK['num']} digits")
    _cli.add_common(p, methods=METHODS, method_default=PAPER_METHODS if multi else "neumann_rbp", multi=multi,
                    seed_default=0, seed_help="seed of the first trial (initialisation, corruption, order)",
                    out_default=out_default, out_help=out_help)


def _regulariser_spec(text):
    """argparse type of ``NAME[:WEIGHT[:PARAM]]`` (checked without torch)."""
    from .regulariser_spec import parse_spec

    try:
        return parse_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


_REG_HELP = ("NAME[:WEIGHT[:PARAM]], NAME one of none, frobenius (PARAM: probes, 1), column (PARAM: eta, 0.9), "
             "gershgorin (PARAM: delta, 0.01), lambda_min (PARAM: delta, 0.01); WEIGHT 1 by default. The penalty "
             "WEIGHT * R(J) joins the loss at each step (J at h_T, detached)")


def _settings(args, prog):
    from .config import TrainConfig

    if args.device != "cpu":
        _cli.check_device(prog, args.device)
    quick = args.quick
    pick = lambda value, name, paper: value if value is not None else (QUICK[name] if quick else paper)  # noqa: E731
    config = TrainConfig(iters=pick(args.iters, "iters", 10_000), hidden=pick(args.hidden, "hidden", 1024),
                         lr=args.lr, valid_every=pick(args.valid_every, "valid_every", 100), seed=args.seed,
                         device=args.device, spectrum_every=args.spectrum_every)
    return config, pick(args.pool, "pool", 1), pick(args.patterns, "num", 10)


def _patterns(args, pool, num, prog):
    from ..data import DataFileError
    from .patterns import load_patterns

    try:
        return load_patterns(args.data, num=num, pool_factor=pool, download=args.download)
    except DataFileError as error:
        _cli.fail(prog, _cli.data_message(error, args.data))
    except ValueError as error:
        _cli.fail(prog, error)


def task_main(argv: list[str]) -> int:
    """Train once with one method and print the outcome."""
    prog = "rbpsolve task hopfield"
    p = _cli.make_parser(prog, "Train the Hopfield associative memory once (Sec. 4.1 of Liao et al. 2018) with one "
                               "gradient method; print the outcome.")
    p.add_argument("--truncate", type=_POSITIVE, default=20, help="truncation K (TBPTT steps, RBP solver steps)")
    _cli.add_backend(p, "no regularisers")
    p.add_argument("--regulariser", type=_regulariser_spec, default=("none", 1.0, None), metavar="SPEC",
                   help=_REG_HELP + " (default: none)")
    p.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)  # deprecated: use --out DIR
    _common(p, multi=False, out_default=None, out_help="write the run's record, DIR/record.json (None: write nothing)")
    args = p.parse_args(argv)
    import json
    import time

    config, pool, num = _settings(args, prog)
    name, weight, param = args.regulariser
    config = dataclasses.replace(config, method=args.method, truncate=args.truncate, regulariser=name,
                                 reg_weight=weight, reg_param=param)
    out = args.out
    if args.json is not None:
        print(f"{prog}: --json FILE is deprecated; use --out DIR", file=sys.stderr)
        out = args.json
    if args.backend != "torch" and name != "none":
        p.error("--regulariser needs --backend torch")
    xp = _cli.array_namespace(prog, args.backend) if args.backend != "torch" else None
    if xp is not None and args.device != "cpu":
        p.error(f"--device applies to --backend torch; --backend {args.backend} runs where its arrays live")
    _cli.start_out(prog, out)
    patterns = _patterns(args, pool, num, prog)
    start = time.perf_counter()
    with _cli.progress_bar(total=config.iters, desc=f"{args.method} K={args.truncate}",
                           enabled=not args.no_progress) as bar:
        if xp is None:
            from .train import train_trial

            trial = train_trial(patterns, config, progress=bar.update)
        else:
            from .array_train import train_trial_array

            trial = train_trial_array(patterns, config, xp, progress=bar.update)
    seconds = time.perf_counter() - start

    def num_text(value):
        return "-" if value is None else f"{value:.4g}"

    backend = "" if xp is None else f", backend {args.backend}"
    print(f"method {args.method}, truncation {args.truncate}, {config.iters} steps, {seconds:.1f} s{backend}")
    print(f"initial loss {num_text(trial['initial_loss'])}, final loss {num_text(trial['final_loss'])}")
    print(f"result: {trial['status']} ({trial['reason']})")
    diverging = "-" if trial["diverging_solves"] is None else trial["diverging_solves"]
    print(f"backward solves: {trial['backward_status']}; diverging: {diverging}; "
          f"products: {trial['num_vjp']} VJP, {trial['num_jvp']} JVP")
    print(f"validation error (corrupted input) at the end: {trial['valid'][-1][1]:.4f}")
    if trial["penalty"]:
        print(f"regulariser {name}: weighted penalty {num_text(trial['penalty'][0])} at the first step, "
              f"{num_text(trial['penalty'][-1])} at the last")
    if trial["spectrum"]:
        end = trial["spectrum"][-1]
        print(f"at the end: rho(J) ~ {end['rho']:.4g}, sigma_min(I - J) ~ {end['sigma_min']:.4g} (estimates)")
    if out is not None:
        path = _cli.record_path(out, "record.json")
        path.write_text(json.dumps(trial) + "\n")
        print(f"wrote {path}")
    return 0 if trial["status"] != "nan" else 1


def _merge(args, prog) -> int:
    import json

    from .figures import plot_all
    from .reproduce import canonical_trials, write_results

    trials, commands, meta = [], [], {}
    for path in args.from_json:
        try:
            data = json.loads(path.read_text())
            trials += canonical_trials(data["trials"])  # older files: "neumann", "cg", ...
        except (OSError, ValueError, KeyError, TypeError) as error:
            _cli.fail(prog, f"--from-json: cannot read {path} ({error})")
        commands.append(data.get("command", "?"))
        meta = {"pool": data.get("pool", 1), "patterns": data.get("patterns", 10)}
    _, pool, num = _settings(args, prog)
    patterns = _patterns(args, meta.get("pool", pool), meta.get("patterns", num), prog)
    truncations = sorted({t["config"]["truncate"] for t in trials if t["config"]["method"] != "bptt"})
    paths = write_results(trials, args.out, " && ".join(commands), meta)
    figures = plot_all(trials, patterns, args.out, truncations or [1])
    print(paths["table"].read_text())
    print("wrote", ", ".join(str(x) for x in [*paths.values(), *figures]))
    return 0


def _regularisers(args, argv, prog, method, K) -> int:
    from .regularised_report import run_regularised, write_regularised

    config, pool, num = _settings(args, prog)
    config = dataclasses.replace(config, method=method, truncate=K)
    patterns = _patterns(args, pool, num, prog)
    command = "rbpsolve reproduce hopfield " + shlex.join(argv)
    with _cli.progress_bar(total=len(args.regularisers) * args.trials * config.iters, desc="regularisers",
                           unit="step", enabled=not args.no_progress) as bar:
        results = run_regularised(patterns, config, args.regularisers, args.trials, progress=bar.update)
    paths = write_regularised(results, args.out, command,
                              {"pool": pool, "patterns": num, "pattern_side": patterns.shape[-1]})
    print(paths["table"].read_text())
    print("wrote", ", ".join(str(x) for x in paths.values()))
    return 0


def reproduce_main(argv: list[str]) -> int:
    """Run the Table 1 grid and write results.json, table.md and the figures."""
    prog = "rbpsolve reproduce hopfield"
    p = _cli.make_parser(prog, "Reproduce Table 1 and Figs. 1-2 of Liao et al. (2018): every method x truncation x "
                               "trial; results.json, table.md and the figures in --out.")
    p.add_argument("--trials", type=_POSITIVE, default=20, help="trials per (method, truncation) cell")
    p.add_argument("--truncations", default="10,20,30", help="comma-separated K values")
    p.add_argument("--from-json", type=Path, nargs="+", default=None, metavar="FILE",
                   help="run nothing: merge the trials of these results.json files (e.g. shards of the grid run "
                        "in parallel) and write the table and figures from them")
    p.add_argument("--regularisers", type=_regulariser_spec, nargs="+", default=None, metavar="SPEC",
                   help="run the regulariser experiment instead of Table 1: one arm per SPEC (" + _REG_HELP +
                        "), --trials each, with one method and one truncation; writes regularisers.json, "
                        "regularisers.md and regularisers.png")
    _common(p, multi=True, out_default=DEFAULT_OUT, out_help="output directory (results.json, table.md, figures)")
    args = p.parse_args(argv)
    methods = _cli.flat(args.methods)
    try:
        truncations = sorted({int(k) for k in args.truncations.split(",")})
    except ValueError:
        p.error(f"argument --truncations: must be comma-separated integers; got {args.truncations!r}")
    if truncations[0] < 1:
        p.error("argument --truncations: every K must be >= 1")
    if args.regularisers and (len(methods) != 1 or len(truncations) != 1 or args.from_json):
        p.error("--regularisers needs one --methods value and one --truncations value (and no --from-json)")
    _cli.start_out(prog, args.out, DEFAULT_OUT)
    if args.from_json:
        return _merge(args, prog)
    if args.regularisers:
        return _regularisers(args, argv, prog, methods[0], truncations[0])
    from .figures import plot_all
    from .reproduce import run_grid, write_results

    config, pool, num = _settings(args, prog)
    patterns = _patterns(args, pool, num, prog)
    cells = sum(1 if m == "bptt" else len(truncations) for m in methods)
    command = "rbpsolve reproduce hopfield " + shlex.join(argv)
    with _cli.progress_bar(total=cells * args.trials * config.iters, desc="hopfield grid", unit="step",
                           enabled=not args.no_progress) as bar:
        results = run_grid(patterns, config, methods, truncations, args.trials, progress=bar.update)
    paths = write_results(results, args.out, command, {"pool": pool, "patterns": num})
    figures = plot_all(results, patterns, args.out, truncations)
    print(paths["table"].read_text())
    print("wrote", ", ".join(str(x) for x in [*paths.values(), *figures]))
    return 0
