"""The settings of one citation run and its prepared data (torch-free: the numpy/cupy path reads them too)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ..data.planetoid import load_planetoid
from .features import pca
from .method_table import GNN_METHODS, method_name

__all__ = ["Config", "Prepared", "prepare", "PCA_DIMS"]

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
