r"""One meta step of the hyperparameter task on the array API: :func:`.hypergrad.meta_step` with the
hand-written products of :class:`.array_sgd.ArrayTrainingStep`.

Train ``T`` steps of SGD with momentum from ``h_0`` on the scheduled mini-batches, take the
meta-loss (cross-entropy on the meta set at ``w_T``) and its gradient with respect to
``theta``:

- ``bptt`` / ``tbptt``: back through the stored states (all ``T`` or the last ``K``):
  ``grad += (dF_t/dtheta)^T z_{t+1}``, ``z_t = J_t^T z_{t+1}``;
- the RBP methods: the last step on the whole training set (as the torch path and the paper's
  code), ``J`` at ``h_{T-1}``, ``z`` from the shared table's solver on ``(I - J^T) z = dL/dh_T``, and
  ``grad = (dF_T/dtheta)^T z``; ``rbp`` starts at ``z_0 ~ U(0, 1)`` from ``rng``.

The initial state and the mini-batch schedule are arguments (numpy arrays): the numpy path draws
them with numpy (:func:`numpy_start`), and a torch run given the same ones takes the same steps.
"""

from __future__ import annotations

import math
import time

import array_api_compat
import numpy as np

import rbpsolve

from .. import methods as _table
from .array_sgd import ArrayTrainingStep

__all__ = ["numpy_start", "array_meta_step"]

UNROLL = ("bptt", "tbptt")
RBP = ("neumann_rbp", "rbp", "cg_rbp", "gmres")


def numpy_start(mlp, n_train: int, batch_size: int, steps: int, seed: int):
    """``(h_0, schedule)``: weights ``N(0, e^-6)`` and zero velocities, and ``steps`` index arrays of a
    fresh permutation every epoch, from ``numpy.random.default_rng(seed)`` (the torch path's laws)."""
    if not 1 <= batch_size <= n_train:
        raise ValueError(f"batch_size must lie in [1, {n_train}] (the training set size); got {batch_size}")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(mlp.num_params) * math.exp(-3.0)
    per_epoch = math.ceil(n_train / batch_size)
    schedule = []
    for i in range(steps):
        if i % per_epoch == 0:
            perm = rng.permutation(n_train)
        start = (i * batch_size) % n_train
        schedule.append(perm[start:min(n_train, start + batch_size)])
    return np.concatenate([w, np.zeros_like(w)]), schedule


def array_meta_step(mlp, theta, x_train, y_train, x_meta, y_meta, *, method: str, steps: int, truncate=None,
                    h0, schedule, rng=None) -> dict:
    """``{"meta_loss", "grad" (2, L), "train_losses", "seconds", "solve"}`` of one meta step.

    ``theta``, ``x_train``, ``x_meta`` are arrays of one namespace; ``y_train``, ``y_meta`` numpy int
    labels; ``h0`` (numpy) and ``schedule`` (numpy index arrays) as :func:`numpy_start` returns them.
    """
    method = _table.canonical(method, UNROLL + RBP)
    if method != "bptt" and (isinstance(truncate, bool) or not isinstance(truncate, int) or truncate < 1):
        raise ValueError(f"method {method!r} needs truncate K, a positive int; got {truncate!r}")
    if len(schedule) != steps:
        raise ValueError(f"schedule has {len(schedule)} batches for {steps} steps")
    t0 = time.perf_counter()
    xp = array_api_compat.array_namespace(theta, x_train)
    device = array_api_compat.device(x_train)
    P = mlp.num_params
    h = xp.asarray(h0, dtype=theta.dtype, device=device)
    y_train = np.asarray(y_train)

    def batch_step(idx):
        rows = xp.asarray(np.asarray(idx, dtype=np.int64), device=device)
        return ArrayTrainingStep(mlp, theta, xp.take(x_train, rows, axis=0), y_train[np.asarray(idx)])

    keep = steps if method == "bptt" else min(truncate, steps) if method == "tbptt" else 1
    losses, stored = [], []
    last_steps = steps if method in UNROLL else steps - 1
    for t in range(last_steps):
        step = batch_step(schedule[t])
        if t >= steps - keep:
            stored.append((step, h))
        h = step(h)
        losses.append(step.last_loss)
    solve = {}
    if method in RBP:
        step = ArrayTrainingStep(mlp, theta, x_train, y_train)  # the last step on the whole training set
        stored = [(step, h)]
        h = step(h)
        losses.append(step.last_loss)
    meta = ArrayTrainingStep(mlp, theta, x_meta, y_meta)
    meta_loss, gw = meta.loss_and_grad(h[:P], weight_decay=False)
    g = xp.concat([gw, xp.zeros_like(gw)])  # L does not depend on the velocities
    if method in UNROLL:
        grad, z = None, g
        for step, h_t in reversed(stored):
            share = step.theta_vjp(h_t, z)
            grad = share if grad is None else grad + share
            z = step.vjp(h_t, z)
    else:
        step, h_prev = stored[0]
        x0 = None
        if method == "rbp":  # the code starts RBP's iteration at z ~ U(0, 1)
            rng = np.random.default_rng(0) if rng is None else rng
            x0 = xp.asarray(rng.random(2 * P), dtype=g.dtype, device=device)
        res = rbpsolve.solve_adjoint(step.operator(h_prev), g, _table.solver(method, truncate), x0=x0, throw=False)
        grad = step.theta_vjp(h_prev, res.x)
        solve = {"status": res.status.name, "num_vjp": int(res.num_vjp), "num_jvp": int(res.num_jvp)}
    return {"meta_loss": float(meta_loss), "grad": grad, "train_losses": losses,
            "seconds": time.perf_counter() - t0, "solve": solve}
