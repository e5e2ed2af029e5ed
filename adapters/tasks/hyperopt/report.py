"""Results of the hyperparameter task: JSON, the markdown table and the figures (Figure 5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["NAMES", "write_json", "figure5", "meta_curves", "summary_table"]

NAMES = {"bptt": "BPTT", "tbptt": "TBPTT", "rbp": "RBP", "neumann": "Neumann-RBP", "cg": "CG-RBP", "gmres": "GMRES-RBP"}


def write_json(results: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
    return path


def _cells(results):
    return results["cells"]


def _grid_figure(results, path, key, xlabel, ylabel, title=None, marker=None) -> Path:
    """One panel per (T, K) cell, one line per method, of the list ``rec[key]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = _cells(results)
    n = len(cells)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, cell in zip(axes.flat, cells):
        for method, rec in cell["methods"].items():
            ys = rec[key]
            ax.plot(range(1, len(ys) + 1), ys, label=NAMES.get(method, method), lw=1, marker=marker)
        ax.set_title(f"T = {cell['steps']}, K = {cell['truncate']}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure5(results: dict, path) -> Path:
    """Training loss (log10) of every step at the last meta step, one panel per (T, K), one line per method."""
    title = (f"Training loss at the last meta step ({results['meta_steps']} meta steps); "
             "cf. Fig. 5 of Liao et al. 2018")
    return _grid_figure(results, path, "last_train_loss_log10", "training step", "log10 training loss", title)


def meta_curves(results: dict, path) -> Path:
    """Meta-loss (log10) against meta step, one panel per (T, K)."""
    return _grid_figure(results, path, "meta_loss_log10", "meta step", "log10 meta-loss", marker=".")


def summary_table(results: dict) -> str:
    """Markdown: per (T, K) and method, the meta-loss at the first and last meta step, test error, seconds per meta step."""
    lines = [
        "| T | K | method | log10 meta-loss, first → last meta step | final log10 training loss | "
        "test loss / error (final θ) | s per meta step |",
        "|---:|---:|---|---|---:|---|---:|",
    ]
    for cell in _cells(results):
        for method, rec in cell["methods"].items():
            ml = rec["meta_loss_log10"]
            test = rec.get("test")
            test_s = f"{test['loss']:.4f} / {100 * test['error']:.2f} %" if test else "-"
            secs = sorted(rec["seconds"])[len(rec["seconds"]) // 2]
            lines.append(
                f"| {cell['steps']} | {cell['truncate']} | {NAMES.get(method, method)} | "
                f"{ml[0]:.3f} → {ml[-1]:.3f} | {rec['last_train_loss_log10'][-1]:.3f} | {test_s} | {secs:.1f} |"
            )
    return "\n".join(lines)
