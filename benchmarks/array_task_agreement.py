"""Issue 16: full float32 runs of the Hopfield task on ``--backend numpy`` against torch, compared
statistically (success rates with Wilson intervals, median loss ratios), not bit for bit: the two
paths draw their initial weights differently (numpy against torch generators) from the same seeds.

Run: ``RBPSOLVE_DATA=../shared/data python benchmarks/array_task_agreement.py --trials 20``; writes
``docs/results/hopfield/array_backend/NAME.{json,md}`` (``--name``, default ``agreement``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rbpsolve.adapters.tasks.hopfield.array_train import train_trial_array
from rbpsolve.adapters.tasks.hopfield.config import TrainConfig
from rbpsolve.adapters.tasks.hopfield.patterns import load_patterns
from rbpsolve.adapters.tasks.hopfield.stats import SUCCESS_RATIO, wilson

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "hopfield" / "array_backend"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--methods", nargs="+", default=["neumann_rbp", "rbp"])
    p.add_argument("--truncate", type=int, default=10)
    p.add_argument("--pool", type=int, default=4, help="max-pool factor of the 28x28 digits (4: 7x7, 2: 14x14)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--name", default="agreement", help="output file stem")
    args = p.parse_args(argv)
    import array_api_compat.numpy as xp

    from rbpsolve.adapters.tasks.hopfield.train import train_trial

    patterns = load_patterns(None, num=10, pool_factor=args.pool)
    rows, records = [], []
    for method in args.methods:
        for backend in ("torch", "numpy"):
            ratios, first, seconds = [], [], 0.0
            for seed in range(args.trials):
                config = TrainConfig(method=method, truncate=args.truncate, iters=args.iters, hidden=args.hidden,
                                     valid_every=1000, seed=seed)
                t0 = time.perf_counter()
                r = train_trial(patterns, config) if backend == "torch" else train_trial_array(patterns, config, xp)
                seconds += time.perf_counter() - t0
                ratios.append(r["ratio"])
                first.append(r["final_loss"] / float(np.mean(r["train_loss"][:10])) if r["final_loss"] else None)
                records.append({"method": method, "backend": backend, "seed": seed, "ratio": r["ratio"],
                                "first_epoch_ratio": first[-1], "status": r["status"]})
            for reading, values in (("pre-training", ratios), ("first epoch", first)):
                ok = sum(v is not None and v < SUCCESS_RATIO for v in values)
                low, high = wilson(ok, len(values))
                known = [v for v in values if v is not None]
                rows.append(f"| {method} | {backend} | {reading} | {ok}/{len(values)} ({100 * low:.0f}-{100 * high:.0f}%) | "
                            f"{np.median(known):.3f} | {seconds / len(values):.1f} |")
    md = ["# Hopfield task: --backend numpy against torch, float32, statistically", "",
          f"{28 // args.pool}x{28 // args.pool} patterns (10 digits), {args.hidden} hidden, {args.iters} Adam steps, K = {args.truncate}, seeds "
          f"0..{args.trials - 1} on both paths (different weight draws: numpy and torch generators). Success: final mean "
          f"training loss below {SUCCESS_RATIO:.0%} of the pre-training loss, or of the first epoch's (the two "
          "readings of Table 1's criterion); 95% Wilson intervals.", "",
          f"Command: `python benchmarks/array_task_agreement.py --trials {args.trials} --iters {args.iters} --pool "
          f"{args.pool} --hidden {args.hidden} --name {args.name}`", "",
          "| method | backend | initial loss read as | successes (95% CI) | median final / initial | s a trial |",
          "|---|---|---|---:|---:|---:|", *rows]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.md").write_text("\n".join(md) + "\n")
    (OUT / f"{args.name}.json").write_text(json.dumps({"args": vars(args), "trials": records}) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
