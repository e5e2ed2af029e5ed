"""The meta-optimisation loop (Adam on ``theta``) and the grid of Figure 5.

Settings of the paper's code (``config/hypergrad.yaml``, ``runner/hypergrad_runner.py``):
Adam with learning rate 0.05, decayed tenfold after half of the meta steps (the code:
at meta step 50 of 100), the meta-loss recorded as ``log10``.
"""

from __future__ import annotations

import math

import torch

from .._cli import progress_bar
from ..methods import canonical
from .hypergrad import METHODS, Data, meta_step
from .sgd import MLP, TrainingStep, hyper_init, init_state
from .hypergrad import batch_schedule

__all__ = ["PAPER_GRID", "FIG5_METHODS", "optimise", "evaluate"]

#: (training steps T, truncation K) of Figure 5's eight panels. The caption lists (1500, 100)
#: twice; the panel between (500, 100) and (1500, 100) is taken to be (1000, 100), the one cell
#: of the two rows' pattern it leaves out.
PAPER_GRID = ((100, 50), (500, 50), (1000, 50), (1500, 50), (100, 100), (500, 100), (1000, 100), (1500, 100))
FIG5_METHODS = ("bptt", "tbptt", "rbp", "neumann_rbp")


def optimise(
    mlp: MLP,
    data: Data,
    *,
    method: str,
    steps: int,
    truncate: int | None,
    meta_steps: int,
    meta_lr: float = 0.05,
    decay_at: int | None = None,
    batch_size: int = 200,
    seed: int = 1234,
    lr: float = math.exp(-1.0),
    momentum: float = 0.5,
    progress: bool = True,
    desc: str = "",
    theta_at=(),
) -> dict:
    """Run ``meta_steps`` meta steps of Adam on ``theta``; a JSON-ready record.

    Returns
    -------
    dict
        ``meta_loss_log10`` (one per meta step, before its update), ``last_train_loss_log10``
        (every training step of the last meta step: Figure 5), the final learning rates
        and momenta per tensor, ``theta``, seconds per meta step and the adjoint solves; with
        ``theta_at``, also ``theta_at``: ``{"s": theta}`` for each meta step ``s`` listed, the
        ``theta`` with which meta step ``s`` (counted from 1) trains, i.e. after ``s - 1``
        updates (the one whose meta-loss is ``meta_loss_log10[s - 1]``; Figure 6).
    """
    if meta_steps < 1:
        raise ValueError(f"meta_steps must be at least 1; got {meta_steps}")
    theta_at = sorted({int(s) for s in theta_at})
    if theta_at and not 1 <= theta_at[0] <= theta_at[-1] <= meta_steps:
        raise ValueError(f"theta_at lists meta steps counted from 1, at most meta_steps = {meta_steps}; got {theta_at}")
    method = canonical(method, METHODS)
    device = data.x_train.device
    theta = torch.nn.Parameter(hyper_init(mlp, lr=lr, momentum=momentum, device=device))
    opt = torch.optim.Adam([theta], lr=meta_lr)
    decay_at = meta_steps // 2 if decay_at is None else decay_at
    record = {"method": method, "steps": steps, "truncate": truncate, "meta_steps": meta_steps,
              "meta_lr": meta_lr, "decay_at": decay_at, "batch_size": batch_size, "seed": seed,
              "meta_loss_log10": [], "seconds": [], "solves": []}
    if theta_at:
        record["theta_at"] = {}
    bar = progress_bar(total=meta_steps, desc=desc or f"{method} T={steps} K={truncate}", enabled=progress, leave=False)
    for i in range(meta_steps):
        if i + 1 in theta_at:
            record["theta_at"][str(i + 1)] = theta.detach().cpu().tolist()
        r = meta_step(mlp, theta, data, method=method, steps=steps, truncate=truncate, batch_size=batch_size, seed=seed)
        if i == decay_at:
            for group in opt.param_groups:
                group["lr"] *= 0.1
        opt.zero_grad()
        theta.grad = r.grad
        opt.step()
        record["meta_loss_log10"].append(math.log10(r.meta_loss))
        record["seconds"].append(r.seconds)
        if r.solve:
            record["solves"].append(r.solve)
        record["last_train_loss_log10"] = [math.log10(v) for v in r.train_losses]
        bar.set_postfix(meta_loss=f"{r.meta_loss:.4f}")
        bar.update()
    bar.close()
    th = theta.detach()
    record["theta"] = th.cpu().tolist()
    record["lr"] = torch.exp(th[0]).cpu().tolist()
    record["momentum"] = torch.sigmoid(th[1]).cpu().tolist()
    return record


@torch.no_grad()
def evaluate(mlp: MLP, theta: torch.Tensor, x_train, y_train, x_eval, y_eval, *, steps: int, batch_size=200, seed=1234):
    """Train ``steps`` steps with ``theta`` (no graph) and return ``(loss, error rate)`` on ``(x_eval, y_eval)``."""
    gen = torch.Generator().manual_seed(seed)
    h = init_state(mlp, gen, dtype=theta.dtype, device=theta.device)
    for idx in batch_schedule(x_train.shape[0], batch_size, steps, gen):
        idx = idx.to(x_train.device)
        h = TrainingStep(mlp, theta, x_train[idx], y_train[idx])(h)
    logits = mlp.logits(h[: mlp.num_params], x_eval)
    loss = torch.nn.functional.cross_entropy(logits, y_eval)
    err = (logits.argmax(dim=1) != y_eval).double().mean()
    return float(loss), float(err)


def gradient_agreement(mlp: MLP, data: Data, grid, methods, *, batch_size=200, seed=1234, progress=True) -> list:
    """At the paper's starting ``theta``: each method's hypergradient against BPTT's, per (T, K).

    Returns a list of ``{"steps", "truncate", "method", "cosine", "rel_error", "norm", "seconds"}``
    with ``cosine = <g, g_bptt> / (|g| |g_bptt|)`` and ``rel_error = |g - g_bptt| / |g_bptt|``
    over the 16 hyperparameters.
    """
    theta = hyper_init(mlp, device=data.x_train.device)
    rows, exact = [], {}
    methods = [canonical(m, METHODS) for m in methods]
    cells = [(T, K, m) for T, K in grid for m in methods if m != "bptt"]
    bar = progress_bar(total=len(cells), desc="hypergradients", enabled=progress, leave=False)
    for T, K, m in cells:
        bar.update()
        if T not in exact:
            exact[T] = meta_step(mlp, theta, data, method="bptt", steps=T, batch_size=batch_size, seed=seed).grad
        r = meta_step(mlp, theta, data, method=m, steps=T, truncate=K, batch_size=batch_size, seed=seed)
        g, ref = r.grad.flatten().double(), exact[T].flatten().double()
        rows.append({"steps": T, "truncate": K, "method": m,
                     "cosine": float(g @ ref / (g.norm() * ref.norm())),
                     "rel_error": float((g - ref).norm() / ref.norm()),
                     "norm": float(g.norm()), "bptt_norm": float(ref.norm()), "seconds": r.seconds})
    bar.close()
    return rows
