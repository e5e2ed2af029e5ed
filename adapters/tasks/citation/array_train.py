r"""One training run of the citation task on the array API (numpy, cupy): :func:`.train.train`'s loop
with the hand-written products of :mod:`.array_model` and :class:`..array_optim.SGD`.

Full-batch SGD with momentum and weight decay on the GRU's and the output layer's parameters; the
loss is the cross-entropy of the training nodes' logits ``h^T W_out^T + b_out``. Its gradient with
respect to ``h^T`` is ``g = (softmax - onehot) W_out / n_train`` on the training nodes, and the GRU's
share comes from the method:

- ``bptt`` / ``tbptt``: back through the stored states (all ``T``, or the last ``K``);
- the RBP family: the adjoint ``(I - J^T) z = g`` with ``J`` at ``h^{T-1}``
  (:func:`.method_table.backward_solver`), then ``(dF/dtheta)^T z`` there.

The initial weights are drawn with numpy (``torch.nn.init.kaiming_normal_``'s law: ``N(0, 2 / fan_in)``,
zero biases) from ``numpy.random.default_rng(seed)``, or passed in; the split is the torch path's
(:func:`.features.random_split`), so a torch run from the same weights takes the same steps.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time

import array_api_compat
import numpy as np

import rbpsolve

from ..array_optim import SGD
from .array_model import ArrayGRUGraph, GRUWeights
from .array_sparse import Adjacency
from .config import Config, Prepared, prepare
from .features import random_split
from .method_table import method_name

__all__ = ["initial_weights", "train_array"]


def initial_weights(hidden: int, classes: int, seed: int) -> GRUWeights:
    """Kaiming-normal GRU and output weights (std ``sqrt(2 / hidden)``), zero biases, float64 numpy."""
    rng = np.random.default_rng(seed)
    std = math.sqrt(2.0 / hidden)
    return GRUWeights(std * rng.standard_normal((3 * hidden, hidden)), std * rng.standard_normal((3 * hidden, hidden)),
                      np.zeros(3 * hidden), np.zeros(3 * hidden), std * rng.standard_normal((classes, hidden)),
                      np.zeros(classes))


def _softmax(xp, s):
    e = xp.exp(s - xp.max(s, axis=1, keepdims=True))
    return e / xp.sum(e, axis=1, keepdims=True)


def _propagate(model, h, steps, keep):
    """``h^T``, and the last ``keep`` states before it (``h^{T-keep}, ..., h^{T-1}``)."""
    states = []
    for t in range(steps):
        if t >= steps - keep:
            states.append(h)
        h = model.update(h)
    return h, states


def _gnn_grads(model, states, g, method, K, rng):
    """The GRU parameters' gradient from ``g = dL/dh^T``, and the backward solve's status (or None)."""
    if method in ("bptt", "tbptt"):
        total, z = None, g
        for h_t in reversed(states):
            share = model.param_vjp(h_t, z)
            total = share if total is None else {k: total[k] + share[k] for k in share}
            z = model.vjp(h_t, z)
        return total, None
    from .method_table import backward_solver

    h_prev = states[-1]
    x0 = None
    if method == "rbp":  # the original RBP's start z_0 ~ U(0, 1)
        xp = model.xp
        x0 = xp.asarray(rng.random(tuple(g.shape)), dtype=g.dtype, device=array_api_compat.device(g))
    result = rbpsolve.solve_adjoint(model.operator(h_prev), g, backward_solver(method, K), x0=x0, throw=False)
    return model.param_vjp(h_prev, result.x), result.status.name


def train_array(config: Config, xp, data: Prepared | None = None, *, weights: GRUWeights | None = None,
                dtype=None, device=None, progress=None) -> dict:
    """Train one GRU graph network with ``config`` on namespace ``xp``; the record of :func:`.train.train`."""
    method = method_name(config.method)
    if method == "baseline":
        raise ValueError("the array-API path trains the GRU graph network; the baseline runs with --backend torch")
    data = data if data is not None else prepare(config.dataset, config.dim, config.root)
    dtype = xp.float32 if dtype is None else dtype
    weights = initial_weights(config.dim, data.num_classes, config.seed) if weights is None else weights
    params = {k: xp.asarray(v, dtype=dtype, device=device) for k, v in weights.as_dict().items()}
    adjacency = Adjacency(data.edges, len(data.labels), xp, dtype)
    train_ids, val_ids, test_ids = random_split(data.labeled_ids, config.seed, config.train_ratio, config.val_ratio)
    x = xp.asarray(data.x, dtype=dtype, device=device)
    labels = np.asarray(data.labels)
    onehot = np.zeros((len(train_ids), data.num_classes))
    onehot[np.arange(len(train_ids)), labels[train_ids]] = 1.0
    onehot = xp.asarray(onehot, dtype=dtype, device=device)
    train_idx = xp.asarray(np.asarray(train_ids, dtype=np.int64), device=device)
    optimisers = {k: SGD(config.lr, config.momentum, weight_decay=config.weight_decay) for k in params}
    rng = np.random.default_rng(config.seed + 2)
    keep = config.steps if method == "bptt" else config.truncate if method == "tbptt" else 1

    def accuracy(model, ids):
        h, _ = _propagate(model, x, config.steps, 0)
        pred = _to_numpy(xp.argmax(model.logits(h), axis=1))
        return 100.0 * float(np.mean(pred[ids] == labels[ids]))

    record = dict(config=dataclasses.asdict(config), backend=xp.__name__, train_loss=[], eval_epochs=[], val_acc=[],
                  test_acc=[], backward_status=collections.Counter(), skipped_steps=0, status="ok")
    best_val, test_at_best = -1.0, math.nan
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model = ArrayGRUGraph(GRUWeights(**params), adjacency)
        if epoch == 0 or (epoch + 1) % config.eval_every == 0:
            val, test = accuracy(model, val_ids), accuracy(model, test_ids)
            record["eval_epochs"].append(epoch)
            record["val_acc"].append(val)
            record["test_acc"].append(test)
            if val > best_val:
                best_val, test_at_best = val, test
        h_T, states = _propagate(model, x, config.steps, keep)
        h_train = xp.take(h_T, train_idx, axis=0)
        p = _softmax(xp, model.logits(h_train))
        loss = -float(xp.sum(onehot * xp.log(p))) / len(train_ids)
        if not math.isfinite(loss):
            record["status"] = "nonfinite_loss"
            break
        d_logits = (p - onehot) / len(train_ids)
        grads = {"out_weight": xp.matrix_transpose(d_logits) @ h_train, "out_bias": xp.sum(d_logits, axis=0)}
        g = xp.zeros_like(h_T)
        g = _scatter_rows(xp, g, train_ids, d_logits @ params["out_weight"], device)
        gnn, status = _gnn_grads(model, states, g, method, config.truncate, rng)
        grads.update(gnn)
        if status is not None:
            record["backward_status"][status] += 1
        if not all(bool(xp.all(xp.isfinite(v))) for v in grads.values()):
            record["status"] = "nonfinite_gradient"
            break
        params = {k: optimisers[k].step(params[k], grads[k]) for k in params}
        record["train_loss"].append(loss)
        if progress is not None:
            progress()
    model = ArrayGRUGraph(GRUWeights(**params), adjacency)
    record["seconds"] = time.perf_counter() - start
    record["best_val_acc"] = best_val
    record["test_acc_at_best_val"] = test_at_best
    diffs, h = [], x
    for _ in range(config.steps):  # ||h^t - h^{t-1}|| / (N d) after training (Fig. 3c)
        new = model.update(h)
        diffs.append(float(xp.linalg.vector_norm(xp.reshape(new - h, (-1,)))) / math.prod(h.shape))
        h = new
    record["diff_norm"] = diffs
    record["backward_status"] = dict(record["backward_status"])
    return record


def _to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)  # cupy's device-to-host copy, or numpy


def _scatter_rows(xp, target, rows, values, device):
    """``target`` with ``target[rows] = values`` (rows distinct), functionally: a one-hot product."""
    N = target.shape[0]
    select = np.zeros((N, len(rows)))
    select[np.asarray(rows), np.arange(len(rows))] = 1.0
    return target + xp.asarray(select, dtype=target.dtype, device=device) @ values
