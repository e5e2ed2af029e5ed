"""The Table 1 grid: methods x truncations x trials, written as JSON and a markdown table.

Every trial index ``t`` has one seed, ``seed + t``, shared by all methods: the same
initialisation of ``W_0``, the same corruption of the validation images and the same
visiting order, so the methods differ only in their gradients.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..methods import canonical
from .stats import PAPER_NAMES, PAPER_TABLE1, wilson
from .train import SUCCESS_RATIO, TrainConfig, train_trial

__all__ = ["run_grid", "compact", "canonical_trials", "summarize", "table_markdown", "first_epoch_ratio"]


def canonical_trials(trials: list[dict]) -> list[dict]:
    """``trials`` with every ``config.method`` canonical: run files written before the shared
    method table say ``neumann``, ``cg``, ``rneumann``."""
    for trial in trials:
        trial["config"]["method"] = canonical(trial["config"]["method"])
    return trials


def first_epoch_ratio(trial: dict) -> float | None:
    """Final mean loss over the mean training loss of the first epoch (``train_loss[0]`` of a compact record).

    The second reading of "initial" (see docs/results/hopfield): the paper's code has no success test;
    it logs the per-step loss, whose first value precedes any update, while from the second step on the
    loss of the full-size network jumps (Adam's first step moves every weight by lr = 1e-3, the scale of
    the initial weights). ``None`` when either loss is missing or not positive.
    """
    first = trial["train_loss"][0] if trial.get("train_loss") else None
    final = trial.get("final_loss")
    if first is None or final is None or not first > 0:
        return None
    return final / first


def _cells(methods, truncations):
    for method in methods:
        for K in ([truncations[0]] if method == "bptt" else truncations):
            yield method, K


def compact(trial: dict, keep_images: bool, every: int = 10) -> dict:
    """A trial record for the JSON: training loss averaged per ``every`` steps (one epoch)."""
    out = dict(trial)
    losses = np.array([np.nan if v is None else v for v in trial["train_loss"]], dtype=float)
    out["train_loss"] = [None if not np.isfinite(v) else float(v)
                         for v in (losses[i:i + every].mean() for i in range(0, len(losses), every))]
    out["train_loss_every"] = every
    if not keep_images or "retrieved" not in out:
        out.pop("corrupted", None)
        out.pop("retrieved", None)
    return out


def run_grid(patterns, base: TrainConfig, methods, truncations, trials: int, *, progress=None) -> list[dict]:
    """Train every (method, truncation, trial); ``progress`` is called after each step."""
    results = []
    for method, K in _cells(methods, truncations):
        for t in range(trials):
            config = dataclasses.replace(base, method=method, truncate=K, seed=base.seed + t)
            try:
                trial = train_trial(patterns, config, progress=progress)
            except Exception as error:  # one broken trial must not lose the grid: record it
                trial = {"config": dataclasses.asdict(config), "status": "error",
                         "reason": f"{type(error).__name__}: {error}", "initial_loss": None, "final_loss": None,
                         "ratio": None, "train_loss": [], "valid": [], "diff_norms": [], "backward_status": {},
                         "diverging_solves": 0, "num_vjp": 0, "num_jvp": 0, "seconds": 0.0}
            results.append(compact(trial, keep_images=(t == 0)))
    return results


def summarize(results: list[dict]) -> dict:
    """``{(method, K): {n, success, rate, low, high, nan, diverging_trials}}``."""
    cells = {}
    for r in results:
        key = (canonical(r["config"]["method"]), r["config"]["truncate"])
        c = cells.setdefault(key, {"n": 0, "success": 0, "nan": 0, "diverging_trials": 0, "ratios": []})
        c["n"] += 1
        c["success"] += r["status"] == "success"
        c["nan"] += r["status"] in ("nan", "error")
        c["diverging_trials"] += r["diverging_solves"] > 0
        if r["ratio"] is not None:
            c["ratios"].append(r["ratio"])
    for c in cells.values():
        c["rate"] = c["success"] / c["n"]
        c["low"], c["high"] = wilson(c["success"], c["n"])
        c["median_ratio"] = float(np.median(c["ratios"])) if c["ratios"] else None
        del c["ratios"]
    return cells


def _cell_text(c):
    return f"{100 * c['rate']:.0f}% ({c['success']}/{c['n']}; {100 * c['low']:.0f}-{100 * c['high']:.0f})"


def table_markdown(results: list[dict], command: str, extra: dict | None = None) -> str:
    """Table 1 reproduced beside the paper's, with 95% Wilson intervals and median loss ratios."""
    cells = summarize(results)
    methods = list(dict.fromkeys(m for m, _ in cells))
    truncs = sorted({k for m, k in cells if m != "bptt"})
    config = results[0]["config"]
    lines = [
        "# Table 1 of Liao et al. (2018), reproduced: Hopfield associative memory",
        "",
        f"Success = final training loss < {SUCCESS_RATIO:.0%} of the initial loss. Each cell: success rate "
        "(successes/trials; 95% Wilson interval), then the paper's rate (100 trials a cell in the paper).",
        f"Settings: {config['iters']} Adam steps (lr {config['lr']}), hidden {config['hidden']}, "
        f"{config['steps']} updates, patterns max-pooled by {(extra or {}).get('pool', 1)} "
        f"({(extra or {}).get('patterns', 10)} digits), device {config['device']}; trials use seeds "
        f"{min(r['config']['seed'] for r in results)}..{max(r['config']['seed'] for r in results)}.",
        "",
        f"Command: `{command}`",
        "",
        "| truncation | " + " | ".join(f"{PAPER_NAMES[m]} (ours) | paper" for m in methods if m != "bptt") + " |",
        "|---:|" + "---:|---:|" * sum(m != "bptt" for m in methods),
    ]
    for K in truncs:
        row = [str(K)]
        for m in methods:
            if m == "bptt":
                continue
            c = cells.get((m, K))
            row.append(_cell_text(c) if c else "-")
            paper = PAPER_TABLE1.get(m, {}).get(K)
            row.append(f"{paper}%" if paper is not None else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    if any(m == "bptt" for m, _ in cells):
        c = next(v for (m, _), v in cells.items() if m == "bptt")
        lines += ["", f"BPTT (no truncation, all 50 updates): {_cell_text(c)}; not in the paper's table."]
    lines += ["", f"Second reading of \"initial\": the first epoch's mean training loss (the first "
              f"{config.get('train_loss_every', results[0].get('train_loss_every', 1))} steps; see the README). "
              f"Successes (final < {SUCCESS_RATIO:.0%} of it) / trials, and the median ratio:", "",
              "| method | truncation | successes / trials | median final / first-epoch loss |", "|---|---:|---:|---:|"]
    by_cell = {}
    for r in results:
        by_cell.setdefault((canonical(r["config"]["method"]), r["config"]["truncate"]), []).append(first_epoch_ratio(r))
    for (m, K), ratios in by_cell.items():
        known = [x for x in ratios if x is not None]
        wins = sum(x < SUCCESS_RATIO for x in known)
        med = f"{float(np.median(known)):.3f}" if known else "-"
        lines.append(f"| {PAPER_NAMES[m]} | {'-' if m == 'bptt' else K} | {wins}/{len(ratios)} | {med} |")
    lines += ["", "Median final/initial loss ratio, trials with NaN/inf (or an error), and trials with at least one diverging "
              "backward solve (update norm grew 10^4-fold over its smallest):", "",
              "| method | truncation | median ratio | NaN or error trials | diverging trials |", "|---|---:|---:|---:|---:|"]
    for (m, K), c in cells.items():
        ratio = "-" if c["median_ratio"] is None else f"{c['median_ratio']:.3f}"
        lines.append(f"| {PAPER_NAMES[m]} | {'-' if m == 'bptt' else K} | {ratio} | {c['nan']} | "
                     f"{c['diverging_trials']} |")
    return "\n".join(lines) + "\n"


def write_results(results: list[dict], out_dir: Path, command: str, extra: dict | None = None) -> dict:
    """Write ``results.json`` and ``table.md`` into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = summarize(results)
    payload = {"command": command, "paper_table1": PAPER_TABLE1, **(extra or {}),
               "summary": [{"method": m, "truncate": k, **c} for (m, k), c in cells.items()],
               "trials": results}
    json_path, table_path = out_dir / "results.json", out_dir / "table.md"
    json_path.write_text(json.dumps(payload) + "\n")
    table_path.write_text(table_markdown(results, command, extra))
    return {"json": json_path, "table": table_path}
