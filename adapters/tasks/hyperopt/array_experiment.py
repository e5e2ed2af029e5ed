"""The meta-optimisation of the hyperparameter task on the array API (numpy, cupy): :func:`.experiment.optimise`
and :func:`.experiment.evaluate` with :func:`.array_hypergrad.array_meta_step` and :class:`..array_optim.Adam`.

Torch-free: the MNIST split comes from :func:`load_split_arrays` (numpy), the initial weights and the
mini-batch order from :func:`.array_hypergrad.numpy_start` (the same laws as the torch path, other draws).
"""

from __future__ import annotations

import math

import numpy as np

from .._cli import progress_bar
from ..array_optim import Adam
from .array_hypergrad import array_meta_step, numpy_start
from .array_sgd import ArrayTrainingStep
from .split import SPLIT, check_sizes, take_split

__all__ = ["load_split_arrays", "optimise_array", "evaluate_array"]



def load_split_arrays(root=None, *, sizes=SPLIT, download=False) -> dict:
    """:func:`.data.load_split` in numpy: ``{"train", "val", "test"}`` of ``(x float32 (N, 784), y int64)``,
    scaled to [0, 1] minus the mean training image (float64 before the cast, as there)."""
    from ..data.mnist import load_mnist

    check_sizes(sizes)
    xs, ys = [], []
    for part in ("train", "test"):
        images, labels = load_mnist(part, root=root, download=download)
        xs.append(images.reshape(len(images), -1).astype(np.float64) / 255.0)
        ys.append(np.asarray(labels, dtype=np.int64))
    x = (np.concatenate(xs) - xs[0].mean(axis=0)).astype(np.float32)
    y = np.concatenate(ys)
    return take_split(x, y, sizes)


def optimise_array(mlp, train, meta, xp, *, method: str, steps: int, truncate, meta_steps: int, meta_lr: float = 0.05,
                   decay_at: int | None = None, batch_size: int = 200, seed: int = 1234, lr: float = math.exp(-1.0),
                   momentum: float = 0.5, dtype=None, device=None, progress: bool = True, desc: str = "") -> dict:
    """``meta_steps`` meta steps of Adam on ``theta``; the record of :func:`.experiment.optimise`.

    ``train`` and ``meta`` are ``(x, y)`` numpy pairs; they are moved to ``xp`` once.
    """
    if meta_steps < 1:
        raise ValueError(f"meta_steps must be at least 1; got {meta_steps}")
    dtype = xp.float32 if dtype is None else dtype
    x_train, x_meta = (xp.asarray(a, dtype=dtype, device=device) for a in (train[0], meta[0]))
    L = mlp.num_tensors
    theta = xp.asarray(np.stack([np.full(L, math.log(lr)), np.full(L, math.log(momentum / (1 - momentum)))]),
                       dtype=dtype, device=device)
    opt = Adam(lr=meta_lr)
    decay_at = meta_steps // 2 if decay_at is None else decay_at
    start = numpy_start(mlp, x_train.shape[0], batch_size, steps, seed)  # the same every meta step, as the torch path
    record = {"method": method, "steps": steps, "truncate": truncate, "meta_steps": meta_steps, "meta_lr": meta_lr,
              "decay_at": decay_at, "batch_size": batch_size, "seed": seed, "backend": xp.__name__,
              "meta_loss_log10": [], "seconds": [], "solves": []}
    rng = np.random.default_rng(seed + 1)
    bar = progress_bar(total=meta_steps, desc=desc or f"{method} T={steps} K={truncate}", enabled=progress, leave=False)
    for i in range(meta_steps):
        r = array_meta_step(mlp, theta, x_train, train[1], x_meta, meta[1], method=method, steps=steps,
                            truncate=truncate, h0=start[0], schedule=start[1], rng=rng)
        if i == decay_at:
            opt.lr *= 0.1
        theta = opt.step(theta, r["grad"])
        record["meta_loss_log10"].append(math.log10(r["meta_loss"]))
        record["seconds"].append(r["seconds"])
        if r["solve"]:
            record["solves"].append(r["solve"])
        record["last_train_loss_log10"] = [math.log10(v) for v in r["train_losses"]]
        bar.set_postfix(meta_loss=f"{r['meta_loss']:.4f}")
        bar.update()
    bar.close()
    th = np.asarray(theta.get() if hasattr(theta, "get") else theta, dtype=np.float64)
    record["theta"] = th.tolist()
    record["lr"] = np.exp(th[0]).tolist()
    record["momentum"] = (1.0 / (1.0 + np.exp(-th[1]))).tolist()
    return record


def evaluate_array(mlp, theta, train, evaluation, xp, *, steps: int, batch_size: int = 200, seed: int = 1234,
                   dtype=None, device=None) -> tuple[float, float]:
    """Train ``steps`` steps with ``theta`` and return ``(loss, error rate)`` on ``evaluation`` (numpy pairs)."""
    dtype = xp.float32 if dtype is None else dtype
    theta = xp.asarray(np.asarray(theta), dtype=dtype, device=device)
    x_train = xp.asarray(train[0], dtype=dtype, device=device)
    h0, schedule = numpy_start(mlp, x_train.shape[0], batch_size, steps, seed)
    h = xp.asarray(h0, dtype=dtype, device=device)
    for idx in schedule:
        rows = xp.asarray(np.asarray(idx, dtype=np.int64), device=device)
        h = ArrayTrainingStep(mlp, theta, xp.take(x_train, rows, axis=0), train[1][idx])(h)
    x_eval = xp.asarray(evaluation[0], dtype=dtype, device=device)
    step = ArrayTrainingStep(mlp, theta, x_eval, evaluation[1])
    loss, _ = step.loss_and_grad(h[:mlp.num_params], weight_decay=False)
    logits = step._forward(step._unflatten(h[:mlp.num_params]))[-1]
    pred = xp.argmax(logits, axis=1)
    pred = pred.get() if hasattr(pred, "get") else np.asarray(pred)
    return float(loss), float(np.mean(pred != evaluation[1]))


