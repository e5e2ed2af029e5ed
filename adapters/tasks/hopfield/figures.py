"""Figures 1 and 2 of Liao et al. (2018) from a grid's trial records (matplotlib, Agg, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..methods import canonical
from .stats import PAPER_NAMES

__all__ = ["plot_all", "method_colors", "METHOD_ORDER"]

#: Drawing order, and with it the colour of each method (the same in every panel and figure).
METHOD_ORDER = ("bptt", "tbptt", "rbp", "cg_rbp", "neumann_rbp", "gmres", "lsqr", "randomized_neumann", "fallback")


def method_colors(methods) -> dict:
    """One colour per method, fixed by :data:`METHOD_ORDER` (not by the order a panel plots in).

    Names are made canonical first (old run files say ``neumann``, ``cg``, ``rneumann``);
    methods outside :data:`METHOD_ORDER` get the colours after it, in sorted order.
    """
    palette = [f"C{i}" for i in range(10)] + ["#7f7f00", "#007f7f", "#7f007f"]
    known = list(METHOD_ORDER)
    wanted = {_canonical_or_same(m) for m in methods}
    extra = sorted(wanted - set(known))
    return {m: palette[i % len(palette)] for i, m in enumerate(known + extra) if m in wanted}


def _canonical_or_same(name):
    try:
        return canonical(name)
    except (ValueError, KeyError):
        return name  # not a method of the table: its own colour after the table's


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_cell(results):
    cells = {}
    for r in results:
        cells.setdefault((canonical(r["config"]["method"]), r["config"]["truncate"]), []).append(r)
    return cells


def _median_curve(rows):
    length = max(len(r) for r in rows)
    arr = np.full((len(rows), length), np.nan)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = [np.nan if v is None else v for v in r]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(arr, axis=0)


def _ordered(cells):
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(cells.items(), key=lambda item: (rank.get(item[0][0], len(rank)), item[0][0], item[0][1]))


def plot_curves(results, path: Path, truncations):
    """Fig. 1a-b: median training loss (per epoch) and validation error per method, one column per K.

    Each method keeps one colour in every panel, and a single legend (below the panels) names
    them all, so it is valid for every column.
    """
    plt = _plt()
    cells = _by_cell(results)
    colors = method_colors({m for m, _ in cells})
    fig, axes = plt.subplots(2, len(truncations), figsize=(4.2 * len(truncations), 7.0), squeeze=False)
    handles = {}
    for col, K in enumerate(truncations):
        for (m, k), rows in _ordered(cells):
            if k != K and m != "bptt":
                continue
            every = rows[0].get("train_loss_every", 1)
            train = _median_curve([r["train_loss"] for r in rows])
            (line,) = axes[0, col].plot(np.arange(len(train)) * every, train, color=colors[m],
                                        label=PAPER_NAMES[m])
            handles.setdefault(m, line)
            steps = [s for s, _ in rows[0]["valid"]]
            valid = _median_curve([[e for _, e in r["valid"]] for r in rows])
            axes[1, col].plot(steps[: len(valid)], valid, marker=".", color=colors[m], label=PAPER_NAMES[m])
        axes[0, col].set_title(f"truncation K = {K}")
        axes[0, col].set_yscale("log")
        axes[1, col].set_xlabel("training step")
    axes[0, 0].set_ylabel("training loss (L1, median of trials)")
    axes[1, 0].set_ylabel("validation error (corrupted input)")
    order = [m for m in colors if m in handles]
    fig.legend([handles[m] for m in order], [PAPER_NAMES.get(m, m) for m in order], loc="lower center",
               ncol=min(len(order), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {m: colors[m] for m in order}


def plot_diff_norms(results, path: Path, K):
    """Fig. 1c: ``||h_t - h_{t-1}||`` over the 50 updates at the end of training (median of trials)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    cells = _by_cell(results)
    colors = method_colors({m for m, _ in cells})
    for (m, k), rows in _ordered(cells):
        if k == K or m == "bptt":
            curve = _median_curve([r["diff_norms"] for r in rows if r["diff_norms"]])
            ax.semilogy(np.arange(1, len(curve) + 1), np.maximum(curve, 1e-12), color=colors[m],
                        label=PAPER_NAMES[m])
    ax.set_xlabel("update t")
    ax.set_ylabel("||h_t - h_{t-1}|| (median of trials)")
    ax.set_title(f"difference norm after training, K = {K}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_retrieval(results, patterns, path: Path, K):
    """Fig. 2: clean patterns, corrupted inputs, and each method's retrieval (first trial)."""
    plt = _plt()
    rows = [(m, r) for (m, k), rs in _by_cell(results).items() for r in rs[:1]
            if (k == K or m == "bptt") and "retrieved" in r]
    first = rows[0][1]
    images = [("clean", patterns), ("corrupted", np.asarray(first["corrupted"]))]
    images += [(PAPER_NAMES[m], np.asarray(r["retrieved"])) for m, r in rows]
    num = len(patterns)
    width = 1.8 + num * 0.8
    fig, axes = plt.subplots(len(images), num, figsize=(width, 0.4 + len(images) * 0.8), squeeze=False)
    for i, (name, imgs) in enumerate(images):
        for j in range(num):
            ax = axes[i, j]
            ax.imshow(imgs[j], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"retrieval from 50%-corrupted inputs, K = {K} (trial 0)", fontsize=8)
    fig.subplots_adjust(left=1.7 / width, right=0.98, top=1 - 0.35 / (0.4 + len(images) * 0.8), bottom=0.02,
                        wspace=0.08, hspace=0.08)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_all(results, patterns, out_dir: Path, truncations) -> list[Path]:
    """Write fig1ab_curves.png, fig1c_diff_norm.png and fig2_retrieval.png; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    K = truncations[len(truncations) // 2]
    paths = [out_dir / "fig1ab_curves.png", out_dir / "fig1c_diff_norm.png", out_dir / "fig2_retrieval.png"]
    plot_curves(results, paths[0], truncations)
    plot_diff_norms(results, paths[1], K)
    plot_retrieval(results, patterns, paths[2], K)
    return paths
