"""Figure 6 of Liao et al. (2018): t-SNE of the hidden-state trajectories of TBPTT and Neumann-RBP.

The "hidden state" of this task is the state of the SGD-with-momentum recurrence,
``h_t = [w_t; v_t]``. For a method and a meta step ``s``, the trajectory is
``h_0, h_1, ..., h_T``: the ``T`` training steps from the seeded start, with the same
mini-batches as every meta step, taken with the ``theta`` with which meta step ``s`` of that
method's meta-optimisation trains (:func:`record_thetas`, via ``optimise(theta_at=...)``).

What is embedded (:func:`embed`): the ``T + 1`` flattened **weight** vectors ``w_t`` (44,860
numbers for the paper's network); the velocities are left out because they carry nothing
more (``v_{t+1} = (w_{t+1} - w_t) / alpha``). They are first projected on their top
principal components (at most 50, as scikit-learn's documentation advises for t-SNE of
high-dimensional data: it removes noise and makes the pairwise distances cheap; with
``T + 1 <= 51`` points the projection is exact), then embedded in 2-D by scikit-learn's
``TSNE`` (PCA initialisation, a fixed seed, perplexity ``min(30, (n - 1) / 3)``). Each
trajectory is embedded on its own: the four panels' axes are not comparable, only the
shape of each path is.

scikit-learn and matplotlib are imported lazily (the ``[plot]`` extra).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .experiment import optimise
from .hypergrad import batch_schedule
from .sgd import MLP, TrainingStep, init_state

__all__ = ["PAPER_METHODS", "PAPER_META_STEPS", "require_sklearn", "record_thetas", "trajectory", "embed",
           "figure6", "run", "panels_of"]

PAPER_METHODS = ("tbptt", "neumann_rbp")
PAPER_META_STEPS = (20, 40)
MISSING_SKLEARN = ("Figure 6 (t-SNE) needs scikit-learn: pip install scikit-learn "
                   "(or pip install 'rbpsolve[plot]')")


def require_sklearn():
    """``sklearn.manifold.TSNE`` and ``sklearn.decomposition.PCA``; a one-line ``ModuleNotFoundError`` if missing."""
    try:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
    except ImportError:
        raise ModuleNotFoundError(MISSING_SKLEARN) from None
    return TSNE, PCA


def record_thetas(mlp: MLP, data, *, method: str, meta_steps=PAPER_META_STEPS, **kwargs) -> dict:
    """Meta-optimise with ``method`` up to the last of ``meta_steps``; the record of
    :func:`~.experiment.optimise`, whose ``theta_at`` maps each listed meta step to its ``theta``.

    ``kwargs`` go to :func:`~.experiment.optimise` (``steps``, ``truncate``, ``batch_size``,
    ``seed``, ...); its ``meta_steps`` defaults to the last one asked for.
    """
    at = sorted({int(s) for s in meta_steps})
    if not at:
        raise ValueError("meta_steps must list at least one meta step")
    kwargs.setdefault("meta_steps", at[-1])
    return optimise(mlp, data, method=method, theta_at=at, **kwargs)


@torch.no_grad()
def trajectory(mlp: MLP, theta, x_train, y_train, *, steps: int, batch_size: int = 200, seed: int = 1234):
    """The states ``h_0 .. h_T`` of ``steps`` training steps with ``theta``: a ``(T + 1, 2P)`` tensor.

    The same start and mini-batches as a meta step with this ``seed`` (every step on a
    mini-batch; the RBP methods' full-batch last step is not taken, so that both methods'
    trajectories are the same recurrence).
    """
    theta = torch.as_tensor(theta, dtype=x_train.dtype, device=x_train.device)
    gen = torch.Generator().manual_seed(seed)
    h = init_state(mlp, gen, dtype=theta.dtype, device=theta.device)
    states = torch.empty((steps + 1, h.numel()), dtype=h.dtype, device=h.device)
    states[0] = h
    for t, idx in enumerate(batch_schedule(x_train.shape[0], batch_size, steps, gen)):
        idx = idx.to(x_train.device)
        h = TrainingStep(mlp, theta, x_train[idx], y_train[idx])(h)
        states[t + 1] = h
    return states


def embed(points, *, components: int = 50, perplexity: float | None = None, seed: int = 0):
    """2-D t-SNE of the rows of ``points`` ``(n, d)``, after projection on the top ``components`` principal components.

    Returns a float64 numpy array ``(n, 2)``. ``perplexity`` defaults to ``min(30, (n - 1) / 3)``
    (it must stay below ``n``).
    """
    import numpy as np

    TSNE, PCA = require_sklearn()
    x = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    n = x.shape[0]
    if x.ndim != 2 or n < 4:
        raise ValueError(f"points must be (n, d) with n >= 4 states; got shape {x.shape}")
    k = min(components, n - 1, x.shape[1])
    if k < x.shape[1]:
        x = PCA(n_components=k, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (n - 1) / 3) if perplexity is None else perplexity
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def figure6(panels: dict, path, *, title: str | None = None) -> Path:
    """Plot 2-D embeddings, rows = methods, columns = meta steps, points coloured by training step.

    Parameters
    ----------
    panels : dict
        ``{(method, meta_step): xy}`` with ``xy`` of shape ``(T + 1, 2)`` (row ``t``: state ``h_t``).
    path : path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..methods import label

    methods = list(dict.fromkeys(m for m, _ in panels))
    steps = sorted({s for _, s in panels})
    fig, axes = plt.subplots(len(methods), len(steps), figsize=(4.2 * len(steps), 3.6 * len(methods)), squeeze=False)
    for r, m in enumerate(methods):
        for c, s in enumerate(steps):
            ax = axes[r, c]
            if (m, s) not in panels:
                ax.axis("off")
                continue
            xy = np.asarray(panels[(m, s)], dtype=float)
            t = np.arange(len(xy))
            ax.plot(xy[:, 0], xy[:, 1], color="0.75", lw=0.6, zorder=1)
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=t, cmap="viridis", s=9, zorder=2)
            ax.scatter(*xy[0], marker="s", s=40, facecolor="none", edgecolor="k", zorder=3, label="$h_0$")
            ax.scatter(*xy[-1], marker="*", s=80, color="r", zorder=3, label="$h_T$")
            ax.set_title(f"{label(m)}, meta step {s}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(sc, ax=ax, label="training step t")
    axes.flat[0].legend(fontsize=8, loc="best")
    fig.suptitle(title or "t-SNE of the training trajectories (weights); cf. Fig. 6 of Liao et al. 2018", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(mlp: MLP, data, *, steps: int, truncate: int, methods=PAPER_METHODS, meta_steps=PAPER_META_STEPS,
        batch_size: int = 200, seed: int = 1234, meta_lr: float = 0.05, progress: bool = True) -> dict:
    """Record ``theta`` at ``meta_steps`` for each method, unroll the trajectories, embed them: a JSON-ready dict.

    Keys: the settings, and ``runs``: per method its ``meta_loss_log10`` (every meta step run),
    ``theta_at`` and, per recorded meta step, ``embedding`` (``(T + 1) x 2``), ``meta_loss``
    (the last state's loss on the meta set) and ``seconds``. The meta-optimisation runs only
    up to the last meta step listed, so its learning-rate decay falls at half of that.
    """
    import time

    require_sklearn()  # fail before the meta-optimisation, not after
    at = sorted({int(s) for s in meta_steps})
    P = mlp.num_params
    out = {"steps": steps, "truncate": truncate, "meta_steps": at, "batch_size": batch_size, "seed": seed,
           "meta_lr": meta_lr, "train_size": int(data.x_train.shape[0]), "layers": list(mlp.layers),
           "embedded": f"weights w_t (t = 0..T, {P} numbers each), top min(50, T) principal components, "
                       "then 2-D t-SNE (init pca, perplexity min(30, T/3), random_state 0), one per panel",
           "runs": {}}
    for method in methods:
        t0 = time.perf_counter()
        rec = record_thetas(mlp, data, method=method, meta_steps=at, steps=steps,
                            truncate=None if method == "bptt" else truncate, batch_size=batch_size, seed=seed,
                            meta_lr=meta_lr, progress=progress, desc=f"{method} theta at {at}")
        run_ = {"meta_loss_log10": rec["meta_loss_log10"], "theta_at": rec["theta_at"],
                "meta_seconds": time.perf_counter() - t0, "panels": {}}
        for s in at:
            t1 = time.perf_counter()
            states = trajectory(mlp, rec["theta_at"][str(s)], data.x_train, data.y_train, steps=steps,
                                batch_size=batch_size, seed=seed)
            w = states[:, :P]
            meta_loss = float(mlp.loss(w[-1], data.x_meta, data.y_meta))
            xy = embed(w, seed=0)
            run_["panels"][str(s)] = {"embedding": xy.tolist(), "meta_loss": meta_loss,
                                      "log10_meta_loss": math.log10(meta_loss),
                                      "seconds": time.perf_counter() - t1}
            del states, w
        out["runs"][method] = run_
    return out


def panels_of(result: dict) -> dict:
    """``{(method, meta_step): xy}`` from the dict of :func:`run` (or its JSON), for :func:`figure6`."""
    return {(m, int(s)): p["embedding"] for m, r in result["runs"].items() for s, p in r["panels"].items()}
