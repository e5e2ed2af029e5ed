"""Results of the citation task: the JSON summary, the table beside Table 2, and the Fig. 3 plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .methods import LABELS, METHODS, method_name

__all__ = ["PAPER_TABLE2", "summarize", "write_table", "write_figures", "load_runs", "is_failed", "FAILED_RULE"]

#: How failed runs are counted (stated in every table).
FAILED_RULE = ("A run is **failed** when its status is not `ok` (e.g. `nonfinite_gradient`: training stopped on "
               "a non-finite loss or gradient). Failed runs are left out of the mean ± std and listed apart "
               "(seed, status, epochs trained, test accuracy at their best validation).")


def is_failed(run: dict) -> bool:
    """The failed-run rule of the tables: any status other than ``"ok"``."""
    return run.get("status") != "ok"


#: Test accuracy (%) of Table 2 of Liao et al. (2018), mean (std where the paper gives it).
PAPER_TABLE2 = {
    "cora": {"baseline": (39.96, 3.4), "bptt": (24.48, 6.6), "tbptt": (46.55, 6.4), "rbp": (29.25, 3.3),
             "cg_rbp": (39.26, 6.5), "neumann_rbp": (46.63, 8.3)},
    "pubmed": {"baseline": (40.41, None), "bptt": (47.05, None), "tbptt": (53.41, None), "rbp": (48.55, None),
               "cg_rbp": (49.12, None), "neumann_rbp": (53.56, None)},
}


def load_runs(run_dir: Path) -> list[dict]:
    """Every ``<dataset>/<method>-seed<k>.json`` under ``run_dir``, method names made canonical."""
    runs = [json.loads(p.read_text()) for p in sorted(Path(run_dir).glob("*/*-seed*.json"))]
    for run in runs:
        run["config"]["method"] = method_name(run["config"]["method"])
    return runs


def _stats(values):
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return None, None
    return float(v.mean()), float(v.std(ddof=0))


def summarize(runs: list[dict], unavailable: dict[str, str] | None = None) -> dict:
    """Per data set and method: seeds, mean/std of test accuracy at best validation, statuses."""
    out = {"datasets": {}, "unavailable": dict(unavailable or {})}
    for run in runs:
        c = run["config"]
        cell = out["datasets"].setdefault(c["dataset"], {}).setdefault(c["method"], {"runs": []})
        cell["runs"].append({k: run[k] for k in ("best_val_acc", "test_acc_at_best_val", "status",
                                                 "backward_status", "skipped_steps", "seconds")}
                            | {"seed": c["seed"], "epochs_trained": len(run.get("train_loss", []))})
    for methods in out["datasets"].values():
        for cell in methods.values():
            rs = cell["runs"]
            ok = [r for r in rs if not is_failed(r)]
            cell["seeds"] = len(rs)
            cell["completed_runs"] = len(ok)
            cell["test_acc_mean"], cell["test_acc_std"] = _stats([r["test_acc_at_best_val"] for r in ok])
            cell["val_acc_mean"], cell["val_acc_std"] = _stats([r["best_val_acc"] for r in ok])
            cell["failed_runs"] = len(rs) - len(ok)
            cell["failed"] = [{"seed": r["seed"], "status": r["status"], "epochs_trained": r["epochs_trained"],
                               "test_acc_at_best_val": r["test_acc_at_best_val"]} for r in rs if is_failed(r)]
            statuses = {}
            for r in rs:
                for k, n in r["backward_status"].items():
                    statuses[k] = statuses.get(k, 0) + n
            cell["backward_status"] = statuses
            cell["seconds_mean"] = float(np.mean([r["seconds"] for r in rs]))
    return out


def _fmt(mean, std):
    if mean is None:
        return "n/a"
    return f"{mean:.2f} ± {std:.1f}" if std is not None else f"{mean:.2f}"


def _failed_text(cell) -> str:
    failed = cell.get("failed", [])
    if not failed:
        return str(cell.get("failed_runs", 0))
    parts = [f"seed {f['seed']}: {f['status']} after {f['epochs_trained']} epoch(s), test "
             f"{f['test_acc_at_best_val']:.2f}" for f in failed]
    return f"{len(failed)} ({'; '.join(parts)})"


def write_table(summary: dict, path: Path, settings: str) -> str:
    """Markdown table: ours (mean ± std over seeds) beside the paper's Table 2, one block per data set."""
    lines = ["# Citation networks: test accuracy (%), ours beside Table 2 of Liao et al. (2018)", "",
             settings, "",
             "Test accuracy at the evaluation with the best validation accuracy; mean ± std (population) over the "
             "completed runs ('runs': completed / all).", FAILED_RULE,
             "'adjoint statuses' counts the backward solves of all runs by status (RBP family).", ""]
    names = sorted(set(summary["datasets"]) | set(summary["unavailable"]) | {"cora", "pubmed"})
    for name in names:
        lines += [f"## {name.capitalize()}", ""]
        if name in summary["unavailable"]:
            lines += [f"**Cannot run:** {summary['unavailable'][name]}", ""]
        paper = PAPER_TABLE2.get(name, {})
        methods = summary["datasets"].get(name, {})
        if not methods and not paper:
            continue
        lines += ["| method | ours: test acc | runs | failed runs | adjoint statuses | paper (Table 2) |",
                  "|---|---:|---:|---:|---|---:|"]
        for m in METHODS:
            cell = methods.get(m)
            if cell is None and m not in paper:
                continue
            p = paper.get(m)
            missing = "cannot run" if name in summary["unavailable"] else "not run"
            ours = _fmt(cell["test_acc_mean"], cell["test_acc_std"]) if cell else missing
            seeds = f"{cell.get('completed_runs', cell['seeds'])}/{cell['seeds']}" if cell else 0
            failed = _failed_text(cell) if cell else ""
            st = ", ".join(f"{k} {v}" for k, v in sorted(cell["backward_status"].items())) if cell else ""
            lines.append(f"| {LABELS[m]} | {ours} | {seeds} | {failed} | {st} | {_fmt(*p) if p else '—'} |")
        lines.append("")
    text = "\n".join(lines)
    Path(path).write_text(text)
    return text


def write_figures(runs: list[dict], out_dir: Path) -> list[Path]:
    """One PNG per data set, three panels as Fig. 3: training loss, validation accuracy, difference norm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name in sorted({r["config"]["dataset"] for r in runs}):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for i, m in enumerate(METHODS):
            color = f"C{i}"  # one colour per method in every panel
            rs = [r for r in runs if r["config"]["dataset"] == name and r["config"]["method"] == m]
            if not rs:
                continue
            label = f"{LABELS[m]} ({len(rs)} seeds)"
            n = min(len(r["train_loss"]) for r in rs)
            if n:
                axes[0].plot(np.mean([r["train_loss"][:n] for r in rs], axis=0), label=label, color=color)
            k = min(len(r["val_acc"]) for r in rs)
            val = np.mean([r["val_acc"][:k] for r in rs], axis=0)
            axes[1].plot(rs[0]["eval_epochs"][:k], val, label=label, color=color)
            if rs[0]["diff_norm"]:
                d = np.mean([r["diff_norm"] for r in rs], axis=0)
                axes[2].semilogy(np.arange(1, len(d) + 1), d, label=label, color=color)
        gnn_epochs = [r["config"]["epochs"] for r in runs if r["config"]["dataset"] == name
                      and r["config"]["method"] != "baseline"]
        if gnn_epochs:  # the baseline may run longer; show the GNN methods' span
            for ax in axes[:2]:
                ax.set_xlim(0, max(gnn_epochs))
        axes[0].set(xlabel="epoch", ylabel="training loss (mean over seeds)", title=f"{name}: training loss")
        axes[1].set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"{name}: validation accuracy")
        axes[2].set(xlabel="propagation step t", ylabel="||h_t - h_{t-1}|| / (N d)",
                    title=f"{name}: difference norm after training")
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / f"fig3_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
