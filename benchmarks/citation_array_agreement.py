"""Issue 16: the citation task on ``--backend numpy`` against torch, float32, compared statistically
(test accuracy at the best validation accuracy, mean and spread over seeds): the two paths draw their
initial weights differently (numpy against torch generators) from the same seeds, on the same splits.

Run: ``RBPSOLVE_DATA=../shared/data python benchmarks/citation_array_agreement.py --seeds 5 --epochs 200``;
writes ``docs/results/citation/array_backend.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rbpsolve.adapters.tasks.citation.array_train import train_array
from rbpsolve.adapters.tasks.citation.config import Config, prepare

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "citation"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--method", default="neumann_rbp")
    p.add_argument("--dataset", default="cora")
    args = p.parse_args(argv)
    import array_api_compat.numpy as xp

    from rbpsolve.adapters.tasks.citation.train import train

    records, summary = [], {}
    for backend in ("torch", "numpy"):
        accs, seconds = [], 0.0
        for seed in range(args.seeds):
            config = Config(dataset=args.dataset, method=args.method, seed=seed, epochs=args.epochs)
            data = prepare(config.dataset, config.dim, config.root)
            t0 = time.perf_counter()
            r = train(config, data) if backend == "torch" else train_array(config, xp, data)
            seconds += time.perf_counter() - t0
            accs.append(r["test_acc_at_best_val"])
            records.append({"backend": backend, "seed": seed, "test_acc_at_best_val": r["test_acc_at_best_val"],
                            "best_val_acc": r["best_val_acc"], "status": r["status"],
                            "backward_status": r["backward_status"]})
        summary[backend] = (float(np.mean(accs)), float(np.std(accs, ddof=1)), seconds / args.seeds, accs)
    lines = [f"# Citation task ({args.dataset}): --backend numpy against torch, float32", "",
             f"{args.method}, T = 100, K = 5, {args.epochs} epochs of SGD (the paper's 2000 shortened), seeds "
             f"0..{args.seeds - 1} (the same random 1/49/50 splits on both paths; different weight draws).", "",
             f"Command: `python benchmarks/citation_array_agreement.py --seeds {args.seeds} --epochs {args.epochs} "
             f"--method {args.method} --dataset {args.dataset}`", "",
             "| backend | test accuracy at best validation, mean ± sd (%) | per seed | s a run |", "|---|---:|---|---:|"]
    for backend, (mean, sd, sec, accs) in summary.items():
        lines.append(f"| {backend} | {mean:.2f} ± {sd:.2f} | {', '.join(f'{a:.1f}' for a in accs)} | {sec:.0f} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "array_backend.md").write_text("\n".join(lines) + "\n")
    (OUT / "array_backend.json").write_text(json.dumps({"args": vars(args), "runs": records}) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
