"""The regulariser experiment of the Hopfield task: trials per regulariser, a table with Wilson
intervals and costs, and the plot of ``sigma_min(I - J)^2`` and the loss along training.

A trial *fails* when its final mean training loss is not below 50% of its first epoch's mean
training loss (the second reading of Table 1's criterion, see docs/results/hopfield), or when
it ends with NaN. Every regulariser arm uses the same seeds, hence the same initialisations,
corruptions and visiting orders, as the unregularised arm.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .regulariser_spec import DEFAULT_PARAM, parse_spec
from .reproduce import compact, first_epoch_ratio
from .stats import wilson
from .train import SUCCESS_RATIO, TrainConfig, train_trial

__all__ = ["run_regularised", "regularised_table", "plot_regularised", "write_regularised"]


def _label(config: dict) -> str:
    name = config["regulariser"]
    if name == "none":
        return "none"
    param = DEFAULT_PARAM[name] if config["reg_param"] is None else config["reg_param"]
    what = {"frobenius": "probes", "column": "eta", "gershgorin": "delta", "lambda_min": "delta"}[name]
    return f"{name} (weight {config['reg_weight']:g}, {what} {param:g})"


def run_regularised(patterns, base: TrainConfig, specs, trials: int, *, progress=None) -> list[dict]:
    """Every (regulariser, trial) with ``base``'s method and truncation; seeds ``base.seed + t``."""
    results = []
    for spec in specs:
        name, weight, param = parse_spec(spec) if isinstance(spec, str) else spec
        for t in range(trials):
            config = dataclasses.replace(base, regulariser=name, reg_weight=weight, reg_param=param,
                                         seed=base.seed + t)
            trial = compact(train_trial(patterns, config, progress=progress), keep_images=False)
            results.append(trial)
    return results


def _failed(trial: dict) -> bool:
    ratio = first_epoch_ratio(trial)
    return trial["status"] == "nan" or ratio is None or not ratio < SUCCESS_RATIO


def summarize_arms(results: list[dict]) -> dict:
    """``{label: {n, failed, low, high, median_ratio, ms_per_step, rho_end, sigma_min_end}}``."""
    arms = {}
    for r in results:
        arms.setdefault(_label(r["config"]), []).append(r)
    out = {}
    for label, trials in arms.items():
        n, failed = len(trials), sum(_failed(t) for t in trials)
        low, high = wilson(failed, n)
        ratios = [x for x in (first_epoch_ratio(t) for t in trials) if x is not None]
        steps = [len(t["train_loss"]) * t["train_loss_every"] for t in trials]
        ms = [1000 * t["seconds"] / max(s, 1) for t, s in zip(trials, steps)]
        ends = [t["spectrum"][-1] for t in trials if t.get("spectrum")]
        out[label] = {
            "n": n, "failed": failed, "low": low, "high": high,
            "median_ratio": float(np.median(ratios)) if ratios else None,
            "ms_per_step": float(np.median(ms)),
            "rho_end": float(np.median([e["rho"] for e in ends])) if ends else None,
            "sigma_min_end": float(np.median([e["sigma_min"] for e in ends])) if ends else None,
            "regulariser": trials[0]["config"]["regulariser"],
        }
    return out


def regularised_table(results: list[dict], command: str, extra: dict) -> str:
    arms = summarize_arms(results)
    base = arms.get("none", {}).get("ms_per_step")
    config = results[0]["config"]
    lines = [
        f"# Jacobian regularisers on the Hopfield task: {config['method']} at K = {config['truncate']}",
        "",
        f"Settings: method {config['method']}, K = {config['truncate']}, {config['iters']} Adam steps (lr "
        f"{config['lr']}), {extra.get('pattern_side', '?')}x{extra.get('pattern_side', '?')} patterns "
        f"({extra.get('patterns', 10)} digits), {config['hidden']} hidden neurons, device {config['device']}; "
        f"seeds {min(r['config']['seed'] for r in results)}..{max(r['config']['seed'] for r in results)} in "
        "every arm.",
        f"Failure: final mean training loss not below {SUCCESS_RATIO:.0%} of the first epoch's (or NaN). "
        "Intervals: 95% Wilson. Cost: median milliseconds of a training step (spectrum logging excluded), and "
        "its ratio to the unregularised arm's.",
        "rho(J) and sigma_min(I - J): medians over trials at the end of training (Arnoldi / Lanczos "
        "estimates, 30 steps, at the first pattern's h_{T-1}).",
        "",
        f"Command: `{command}`",
        "",
        "| regulariser | failed / trials | failure rate (95% CI) | median final / first-epoch loss | ms a step | "
        "cost ratio | rho(J) at end | sigma_min(I - J) at end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, a in arms.items():
        ratio = "-" if a["median_ratio"] is None else f"{a['median_ratio']:.3f}"
        cost = "-" if not base else f"×{a['ms_per_step'] / base:.2f}"
        rho = "-" if a["rho_end"] is None else f"{a['rho_end']:.3f}"
        smin = "-" if a["sigma_min_end"] is None else f"{a['sigma_min_end']:.3f}"
        lines.append(f"| {label} | {a['failed']}/{a['n']} | {100 * a['failed'] / a['n']:.0f}% "
                     f"({100 * a['low']:.0f}-{100 * a['high']:.0f}) | {ratio} | {a['ms_per_step']:.1f} | {cost} | "
                     f"{rho} | {smin} |")
    return "\n".join(lines) + "\n"


def plot_regularised(results: list[dict], path: Path) -> Path:
    """Two panels: ``sigma_min(I - J)^2`` (the ``lambda_min`` the appendix's penalty targets) and the
    training loss along training, the median over trials of each arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = {}
    for r in results:
        arms.setdefault(_label(r["config"]), []).append(r)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, trials) in enumerate(arms.items()):
        colour = f"C{i}"
        spectra = [t["spectrum"] for t in trials if t.get("spectrum")]
        if spectra:
            steps = [s["step"] for s in spectra[0]]
            lam = np.array([[s["sigma_min"] ** 2 for s in sp[: len(steps)]] for sp in spectra
                            if len(sp) >= len(steps)])
            left.plot(steps, np.median(lam, axis=0), color=colour, marker="o", label=label)
        every = trials[0]["train_loss_every"]
        losses = np.array([[np.nan if v is None else v for v in t["train_loss"]] for t in trials
                           if len(t["train_loss"]) == len(trials[0]["train_loss"])])
        right.plot(np.arange(losses.shape[1]) * every, np.nanmedian(losses, axis=0), color=colour, label=label)
    left.set(xlabel="training step", ylabel="sigma_min(I - J)^2 (Lanczos estimate)", yscale="log",
             title="lambda_min((I - J)^T (I - J)) along training")
    right.set(xlabel="training step", ylabel="training loss (mean of each epoch)", yscale="log",
              title="training loss")
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_regularised(results: list[dict], out_dir: Path, command: str, extra: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    arms = summarize_arms(results)
    payload = {"command": command, **extra, "summary": arms, "trials": results}
    paths = {"json": out_dir / "regularisers.json", "table": out_dir / "regularisers.md",
             "figure": out_dir / "regularisers.png"}
    paths["json"].write_text(json.dumps(payload) + "\n")
    paths["table"].write_text(regularised_table(results, command, extra))
    plot_regularised(results, paths["figure"])
    return paths
