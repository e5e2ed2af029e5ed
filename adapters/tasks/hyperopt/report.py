"""Results of the hyperparameter task: JSON, the markdown table and the figures (Figure 5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["NAMES", "canonical_results", "write_json", "merge", "figure5", "meta_curves", "summary_table"]

from ..methods import METHODS, canonical, label

#: Display names of the shared method table; ``label`` also takes older spellings (``neumann``, ``cg``).
NAMES = {m: label(m) for m in METHODS}


def canonical_results(results: dict) -> dict:
    """``results`` (a ``results.json``) with its method keys canonical: older files say ``neumann``, ``cg``."""
    for cell in results.get("cells", []):
        cell["methods"] = {canonical(m): rec for m, rec in cell["methods"].items()}
        for rec in cell["methods"].values():
            if "method" in rec:
                rec["method"] = canonical(rec["method"])
    for row in results.get("rows", []):
        row["method"] = canonical(row["method"])
    return results


def write_json(results: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
    return path


def _cells(results):
    return results["cells"]


def merge(parts: list, order=()) -> dict:
    """Combine result sets of ``rbpsolve reproduce hyperopt`` run separately (e.g. cells side by side).

    Cells with the same ``(T, K)`` are joined method by method; a method found twice for a
    cell is an error (which run should count is the user's choice, not ours). BPTT does not
    depend on ``K``: a cell without it borrows the BPTT run of a cell with the same ``T``
    (marked ``shared_with_cell``), as one grid run does. Cells come in ``order`` (the
    paper's grid), then any others in order of appearance.

    Parameters
    ----------
    parts : list of dict
        Each a ``results.json`` of ``rbpsolve reproduce hyperopt``.
    order : sequence of (T, K)
    """
    if not parts:
        raise ValueError("merge needs at least one result set")
    cells = {}
    for i, part in enumerate(parts):
        if not isinstance(part.get("cells") if isinstance(part, dict) else None, list):
            raise ValueError(f"result set {i + 1} has no 'cells' list: it is not a results.json of "
                             "`rbpsolve reproduce hyperopt` (agreement.json is not merged)")
        canonical_results(part)
        for cell in _cells(part):
            key = (cell["steps"], cell["truncate"])
            into = cells.setdefault(key, {"steps": key[0], "truncate": key[1], "methods": {}})
            for method, rec in cell["methods"].items():
                if method in into["methods"]:
                    raise ValueError(f"cell T={key[0]}, K={key[1]} has {method!r} in two of the result sets; "
                                     "remove one of them from the list")
                into["methods"][method] = rec
    for (T, K), cell in cells.items():
        if "bptt" not in cell["methods"]:
            donor = next((c for (t, _), c in cells.items() if t == T and "bptt" in c["methods"]), None)
            if donor is not None:
                rec = dict(donor["methods"]["bptt"], shared_with_cell=f"T={T}")
                cell["methods"] = {"bptt": rec, **cell["methods"]}
    ordered = [tuple(k) for k in order]
    keys = [k for k in ordered if k in cells] + [k for k in cells if k not in ordered]
    first = parts[0]
    return {
        "meta_objective": first.get("meta_objective"),
        "device": first.get("device"),
        "batch_size": first.get("batch_size"),
        "seed": first.get("seed"),
        "grid": [list(k) for k in keys],
        "cells": [cells[k] for k in keys],
        # A part that is itself a merge brings its own list of commands.
        "commands": [c for p in parts for c in (p["commands"] if "commands" in p else [p.get("command")])],
        "seconds_total": sum(p.get("seconds_total", 0.0) for p in parts),
    }


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
            ax.plot(range(1, len(ys) + 1), ys, label=label(method), lw=1, marker=marker)
        n_meta = sorted({len(rec["meta_loss_log10"]) for rec in cell["methods"].values()})
        ax.set_title(f"T = {cell['steps']}, K = {cell['truncate']} ({'/'.join(map(str, n_meta))} meta steps)",
                     fontsize=10)
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
    title = "Training loss at the last meta step; cf. Fig. 5 of Liao et al. 2018"
    return _grid_figure(results, path, "last_train_loss_log10", "training step", "log10 training loss", title)


def meta_curves(results: dict, path) -> Path:
    """Meta-loss (log10) against meta step, one panel per (T, K)."""
    return _grid_figure(results, path, "meta_loss_log10", "meta step", "log10 meta-loss", marker=".")


def summary_table(results: dict) -> str:
    """Markdown: per (T, K) and method, the meta-loss at the first and last meta step, test error, seconds per meta step."""
    lines = [
        "| T | K | method | meta steps | log10 meta-loss, first → last meta step | final log10 training loss | "
        "test loss / error (final θ) | s per meta step |",
        "|---:|---:|---|---:|---|---:|---|---:|",
    ]
    for cell in _cells(results):
        for method, rec in cell["methods"].items():
            ml = rec["meta_loss_log10"]
            test = rec.get("test")
            test_s = f"{test['loss']:.4f} / {100 * test['error']:.2f} %" if test else "-"
            secs = sorted(rec["seconds"])[len(rec["seconds"]) // 2]
            lines.append(
                f"| {cell['steps']} | {cell['truncate']} | {label(method)} | {len(ml)} | "
                f"{ml[0]:.3f} → {ml[-1]:.3f} | {rec['last_train_loss_log10'][-1]:.3f} | {test_s} | {secs:.1f} |"
            )
    return "\n".join(lines)
