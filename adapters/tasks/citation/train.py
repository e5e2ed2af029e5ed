"""One training run of the citation task: a method, a data set, a seed -> curves and accuracies."""

from __future__ import annotations

import collections
import dataclasses
import math
import time
import warnings

import torch
import torch.nn.functional as F

import rbpsolve
from rbpsolve.adapters.torch import ConvergenceWarning

from .config import PCA_DIMS, Config, Prepared, prepare
from .features import random_split
from .methods import final_state
from .model import GRUGraphNet, LogisticBaseline

__all__ = ["Config", "Prepared", "prepare", "train", "PCA_DIMS"]

def _accuracy(logits: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> float:
    return 100.0 * float((logits[ids].argmax(dim=1) == labels[ids]).float().mean())


def train(config: Config, data: Prepared | None = None, progress=None, weights=None) -> dict:
    """Train one model; return its record (JSON-ready).

    Parameters
    ----------
    config : Config
    data : Prepared, optional
        Default ``prepare(config.dataset, config.dim, config.root)``.
    progress : callable, optional
        Called after each epoch with no argument (a tqdm ``update``).
    weights : .array_model.GRUWeights, optional
        Initial weights (numpy arrays) instead of the seeded torch draw; float64 ones make the
        model float64. To compare with the numpy path (:func:`.array_train.train_array`) step by step.

    Returns
    -------
    dict
        ``config``; ``train_loss`` per epoch; ``eval_epochs`` with ``val_acc`` and
        ``test_acc`` there; ``best_val_acc`` and ``test_acc`` (test accuracy at the epoch of
        best validation accuracy, the number of Table 2); ``diff_norm`` (``||h^t - h^{t-1}||
        / (N d)`` per step ``t`` after training, Fig. 3c); ``backward_status`` (count of each
        adjoint-solve status, RBP family); ``status`` ("ok", or why training stopped:
        "nonfinite_loss", "nonfinite_gradient"); ``skipped_steps``; ``seconds``.

    Notes
    -----
    A failed adjoint solve (e.g. FixedPoint diverging) is counted and its best iterate used
    (``on_failure="warn"``); a non-finite one skips the update and is counted; a non-finite
    loss or gradient stops the run with that status. Nothing non-finite reaches the weights.
    """
    data = data if data is not None else prepare(config.dataset, config.dim, config.root)
    if data.x.shape[1] != config.dim:
        raise ValueError(f"data has {data.x.shape[1]} PCA features but the config asks for {config.dim}")
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    train_ids, val_ids, test_ids = (torch.as_tensor(a, device=device) for a in
                                    random_split(data.labeled_ids, config.seed, config.train_ratio, config.val_ratio))
    x = torch.as_tensor(data.x, device=device)
    labels = torch.as_tensor(data.labels, device=device)
    gnn = config.method != "baseline"
    if gnn:
        model = GRUGraphNet(config.dim, data.num_classes, torch.as_tensor(data.edges), len(data.labels)).to(device)
        if weights is not None:
            model = model.to(torch.as_tensor(weights.weight_hh).dtype)
            with torch.no_grad():
                for name, value in weights.as_dict().items():
                    target = model.out.weight if name == "out_weight" else model.out.bias if name == "out_bias" \
                        else getattr(model.gru, name)
                    target.copy_(torch.as_tensor(value))
    else:
        model = LogisticBaseline(config.dim, data.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)

    def logits_of(train_mode: bool):
        if not gnn:
            return model(x), None
        if not train_mode:
            with torch.no_grad():
                h, _ = model.propagate(x, config.steps)
                return model.out(h), None
        h, report = final_state(model.step, x, config.method, config.steps, config.truncate)
        return model.out(h), report

    record = dict(config=dataclasses.asdict(config), train_loss=[], eval_epochs=[], val_acc=[], test_acc=[],
                  backward_status=collections.Counter(), skipped_steps=0, status="ok")
    best_val, test_at_best = -1.0, math.nan
    start = time.perf_counter()
    for epoch in range(config.epochs):
        if epoch == 0 or (epoch + 1) % config.eval_every == 0:
            logits, _ = logits_of(False)
            val, test = _accuracy(logits, labels, val_ids), _accuracy(logits, labels, test_ids)
            record["eval_epochs"].append(epoch)
            record["val_acc"].append(val)
            record["test_acc"].append(test)
            if val > best_val:
                best_val, test_at_best = val, test
        opt.zero_grad(set_to_none=True)
        logits, report = logits_of(True)
        loss = F.cross_entropy(logits[train_ids], labels[train_ids])
        if not torch.isfinite(loss):
            record["status"] = "nonfinite_loss"
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                loss.backward()
        except rbpsolve.SolveError:
            record["backward_status"][report.status or "NONFINITE"] += 1
            record["skipped_steps"] += 1
            record["train_loss"].append(float(loss.detach()))
            continue
        if report is not None and report.status is not None:
            record["backward_status"][report.status] += 1
        if not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None):
            record["status"] = "nonfinite_gradient"
            break
        opt.step()
        record["train_loss"].append(float(loss.detach()))
        if progress is not None:
            progress()
    record["seconds"] = time.perf_counter() - start
    record["best_val_acc"] = best_val
    record["test_acc_at_best_val"] = test_at_best
    record["diff_norm"] = model.propagate(x, config.steps)[1] if gnn else []
    record["backward_status"] = dict(record["backward_status"])
    return record
