r"""One training run of the Hopfield task on the array API (numpy, cupy): :func:`.train.train_trial`'s
loop with the hand-written products of :mod:`.array_model` and :class:`..array_optim.Adam`.

The initial weights are drawn with numpy (``W_0 ~ init_scale * N(0, 1)`` from
``numpy.random.default_rng(seed)``), as are the corruption and the visiting order (the same
generators as the torch path), so that a torch run started from the same ``W_0``
(:func:`initial_weights`) takes the same steps: ``tests/test_task_hopfield_array.py`` checks the
first training steps to 1e-10 in float64.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..array_optim import Adam
from .array_methods import array_gradient
from .array_model import ArrayHopfield
from .patterns import corrupt
from .stats import verdict

__all__ = ["initial_weights", "train_trial_array"]


def initial_weights(n: int, seed: int, init_scale: float = 1e-3) -> np.ndarray:
    """``W_0``, ``(n, n)`` float64, from ``numpy.random.default_rng(seed)``."""
    return init_scale * np.random.default_rng(seed).standard_normal((n, n))


def _mean_loss(model, patterns, steps):
    total = 0.0
    for image in patterns:
        x = model.clamp(image)
        h = x
        for _ in range(steps):
            h = model.update(h, x)
        total += model.loss(h, image)
    return total / len(patterns)


def _retrieval_error(model, clean, noisy, steps):
    xp = model.xp
    errors = []
    for image, bad in zip(clean, noisy):
        x = model.clamp(bad)
        h = x
        for _ in range(steps):
            h = model.update(h, x)
        binary = xp.astype(model.output(h) >= 0.5, model.W0.dtype)
        target = xp.reshape(xp.asarray(image, dtype=model.W0.dtype), (-1,))
        errors.append(float(xp.mean(xp.abs(binary - target))))
    return float(np.mean(errors))


def train_trial_array(patterns: np.ndarray, config, xp, *, device=None, dtype=None, W0=None, progress=None) -> dict:
    """Train one network with ``config`` (a :class:`.train.TrainConfig`) on namespace ``xp``.

    ``W0`` (a numpy array) replaces the seeded draw; ``dtype`` defaults to ``xp.float32``. Returns
    the record of :func:`.train.train_trial` (without the retrieved images).
    """
    if config.regulariser != "none":
        raise ValueError("the array-API path has no Jacobian regularisers; use --backend torch for them")
    dtype = xp.float32 if dtype is None else dtype
    side = patterns.shape[-1]
    d = side * side
    n = 2 * d + config.hidden
    W0 = initial_weights(n, config.seed) if W0 is None else W0
    model = ArrayHopfield(xp.asarray(W0, dtype=dtype, device=device), d)
    clean = [xp.asarray(p.reshape(-1), dtype=dtype, device=device) for p in patterns]
    noise_rng = np.random.default_rng(config.seed)
    noisy = [xp.asarray(corrupt(p, config.corrupt_level, noise_rng).reshape(-1), dtype=dtype, device=device)
             for p in patterns]
    order_rng = np.random.default_rng(config.seed + 1)
    solve_rng = np.random.default_rng(config.seed + 2)
    optimizer = Adam(lr=config.lr)
    start = time.perf_counter()
    initial = _mean_loss(model, clean, config.steps)
    train_loss, valid, statuses, order = [], [], {}, []
    status, reason, num_vjp, num_jvp = None, "", 0, 0
    for it in range(config.iters):
        if it % config.valid_every == 0:
            valid.append((it, _retrieval_error(model, clean, noisy, config.steps)))
        if not order:
            order = list(order_rng.permutation(len(patterns)))
        step = array_gradient(model, clean[order.pop()], config.method, config.truncate, steps=config.steps,
                              rng=solve_rng)
        statuses[step.status] = statuses.get(step.status, 0) + 1
        num_vjp, num_jvp = num_vjp + step.num_vjp, num_jvp + step.num_jvp
        finite = math.isfinite(step.loss) and bool(xp.all(xp.isfinite(step.grad)))
        train_loss.append(step.loss if math.isfinite(step.loss) else None)
        if not finite:
            status, reason = "nan", f"non-finite loss or gradient at step {it}"
            break
        model = model.with_weights(optimizer.step(model.W0, step.grad))
        if progress is not None:
            progress()
    final = _mean_loss(model, clean, config.steps)
    status, reason = verdict(initial, final, status, reason)
    valid.append((len(train_loss), _retrieval_error(model, clean, noisy, config.steps)))
    return {"config": {**config.__dict__, "backend": xp.__name__}, "status": status, "reason": reason,
            "initial_loss": initial, "final_loss": final if math.isfinite(final) else None,
            "ratio": final / initial if math.isfinite(final) else None, "train_loss": train_loss, "valid": valid,
            "backward_status": statuses, "diverging_solves": None, "num_vjp": num_vjp, "num_jvp": num_jvp,
            "penalty": None, "spectrum": [],
            "seconds": time.perf_counter() - start}
