"""Issue 16: the hyperparameter task on ``--backend numpy`` against torch, float32, compared
statistically over seeds (final log10 meta-loss and test error after a short meta-optimisation): the
two paths draw initial weights and batch orders differently (numpy against torch generators).

Run: ``RBPSOLVE_DATA=../shared/data python benchmarks/hyperopt_array_agreement.py``; writes
``docs/results/hyperopt/array_backend.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "hyperopt"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--truncate", type=int, default=50)
    p.add_argument("--meta-steps", type=int, default=10)
    p.add_argument("--method", default="neumann_rbp")
    args = p.parse_args(argv)
    import array_api_compat.numpy as xp
    import torch

    from rbpsolve.adapters.tasks.hyperopt.array_experiment import evaluate_array, load_split_arrays, optimise_array
    from rbpsolve.adapters.tasks.hyperopt.data import load_split
    from rbpsolve.adapters.tasks.hyperopt.experiment import evaluate, optimise
    from rbpsolve.adapters.tasks.hyperopt.hypergrad import Data
    from rbpsolve.adapters.tasks.hyperopt.layout import MLPLayout
    from rbpsolve.adapters.tasks.hyperopt.sgd import MLP

    split_np, split_t = load_split_arrays(), load_split()
    data_t = Data(*split_t["train"], *split_t["train"])
    kw = dict(method=args.method, steps=args.steps, truncate=args.truncate, meta_steps=args.meta_steps, progress=False)
    runs, summary = [], {}
    for backend in ("torch", "numpy"):
        finals, errors, seconds = [], [], 0.0
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            if backend == "torch":
                rec = optimise(MLP(), data_t, seed=1234 + seed, **kw)
                _, err = evaluate(MLP(), torch.tensor(rec["theta"]), *split_t["train"], *split_t["test"],
                                  steps=args.steps, seed=1234 + seed)
            else:
                rec = optimise_array(MLPLayout(), split_np["train"], split_np["train"], xp, seed=1234 + seed, **kw)
                _, err = evaluate_array(MLPLayout(), rec["theta"], split_np["train"], split_np["test"], xp,
                                        steps=args.steps, seed=1234 + seed)
            seconds += time.perf_counter() - t0
            finals.append(rec["meta_loss_log10"][-1])
            errors.append(100 * err)
            runs.append({"backend": backend, "seed": 1234 + seed, "meta_loss_log10": rec["meta_loss_log10"],
                         "test_error_percent": 100 * err})
        summary[backend] = (finals, errors, seconds / args.seeds)
    lines = ["# Hyperparameter task: --backend numpy against torch, float32", "",
             f"{args.method}, T = {args.steps}, K = {args.truncate}, {args.meta_steps} meta steps of Adam, seeds "
             f"1234..{1234 + args.seeds - 1} (different initial weights and batch orders on the two paths).", "",
             f"Command: `python benchmarks/hyperopt_array_agreement.py --seeds {args.seeds} --steps {args.steps} "
             f"--truncate {args.truncate} --meta-steps {args.meta_steps} --method {args.method}`", "",
             "| backend | final log10 meta-loss, mean ± sd | test error (%), mean ± sd | s a run |", "|---|---:|---:|---:|"]
    for backend, (finals, errors, sec) in summary.items():
        lines.append(f"| {backend} | {np.mean(finals):.3f} ± {np.std(finals, ddof=1):.3f} | "
                     f"{np.mean(errors):.2f} ± {np.std(errors, ddof=1):.2f} | {sec:.0f} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "array_backend.md").write_text("\n".join(lines) + "\n")
    (OUT / "array_backend.json").write_text(json.dumps({"args": vars(args), "runs": runs}) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
