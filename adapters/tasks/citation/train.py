"""One training run of the citation task: a method, a data set, a seed -> curves and accuracies."""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import rbpsolve
from rbpsolve.adapters.torch import ConvergenceWarning

from ..data.planetoid import load_planetoid
from .features import pca, random_split
from .methods import GNN_METHODS, final_state, method_name
from .model import GRUGraphNet, LogisticBaseline

__all__ = ["Config", "Prepared", "prepare", "train", "PCA_DIMS"]

#: PCA dimension (= hidden size) per data set: 64 for Cora and 16 for Pubmed as the original configs;
#: Citeseer has no original config and gets Cora's 64.
PCA_DIMS = {"cora": 64, "citeseer": 64, "pubmed": 16}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run; the defaults are the original code's (``config/cora.yaml`` of lrjconan/RBP).

    Attributes
    ----------
    dataset, method : str
    seed : int
        Drives both the random 1/49/50 split and the initialisation.
    steps : int
        ``T``, propagation steps (100).
    truncate : int
        ``K``: TBPTT's kept steps, the RBP solvers' step budget (5).
    epochs : int
        Full-batch SGD steps (2000).
    lr, momentum, weight_decay : float
        SGD with momentum (1e-3, 0.9, 5e-4).
    eval_every : int
        Validation/test accuracy every this many epochs, and at the first (20).
    hidden : int or None
        PCA dimension = state size; None takes :data:`PCA_DIMS`.
    train_ratio, val_ratio : float
        The random split (0.01, 0.49; the rest is test).
    device : str
    root : str or None
        Data directory (see :func:`rbpsolve.adapters.tasks.data.data_root`).
    """

    dataset: str = "cora"
    method: str = "neumann_rbp"
    seed: int = 0
    steps: int = 100
    truncate: int = 5
    epochs: int = 2000
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eval_every: int = 20
    hidden: int | None = None
    train_ratio: float = 0.01
    val_ratio: float = 0.49
    device: str = "cpu"
    root: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "method", method_name(self.method))  # canonical; ValueError if unknown
        for name in ("steps", "truncate", "epochs", "eval_every"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if self.method in GNN_METHODS and self.truncate >= self.steps:
            raise ValueError(f"truncate ({self.truncate}) must be below steps ({self.steps})")

    @property
    def dim(self) -> int:
        return self.hidden if self.hidden is not None else PCA_DIMS[self.dataset]


@dataclasses.dataclass(frozen=True, eq=False)
class Prepared:
    """A data set ready for training: PCA inputs and the graph, as numpy arrays."""

    name: str
    x: np.ndarray  # (N, d) float32
    labels: np.ndarray  # (N,) int64, -1 unlabelled
    edges: np.ndarray  # (2, E) int64
    labeled_ids: np.ndarray
    num_classes: int


@functools.lru_cache(maxsize=4)
def prepare(dataset: str, dim: int, root: str | None = None) -> Prepared:
    """Load ``dataset`` and reduce its features to ``dim`` principal components (cached)."""
    g = load_planetoid(dataset, root)
    return Prepared(dataset, pca(g.features, dim), g.labels, g.edges, g.labeled_ids, g.num_classes)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> float:
    return 100.0 * float((logits[ids].argmax(dim=1) == labels[ids]).float().mean())


def train(config: Config, data: Prepared | None = None, progress=None) -> dict:
    """Train one model; return its record (JSON-ready).

    Parameters
    ----------
    config : Config
    data : Prepared, optional
        Default ``prepare(config.dataset, config.dim, config.root)``.
    progress : callable, optional
        Called after each epoch with no argument (a tqdm ``update``).

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
