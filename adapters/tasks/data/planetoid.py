"""The Planetoid citation graphs (Cora, Citeseer, Pubmed) from their published ``ind.<name>.*`` files.

Files (Yang, Cohen & Salakhutdinov, ICML 2016; ``kimiyoung/planetoid``), under
``<data root>/planetoid/``:

- ``x``, ``tx``, ``allx``: ``scipy.sparse.csr_matrix`` bag-of-words features of the labelled
  training nodes, the test nodes, and all non-test nodes (``x == allx[:len(x)]``);
- ``y``, ``ty``, ``ally``: the one-hot labels of the same rows;
- ``graph``: ``{node: [neighbours]}``;
- ``test.index``: the node id of each row of ``tx``, one per line.

Each file is checked against its published size and sha256 before it is read, and the pickles
are read with a restricted unpickler that runs no code (:mod:`._unpickle`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import scipy.sparse

from ._files import DataFileError, data_root, verified_path
from ._unpickle import restricted_loads

__all__ = ["Planetoid", "load_planetoid", "PLANETOID_FILES", "DATASETS"]

DATASETS = ("cora", "citeseer", "pubmed")
SUFFIXES = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")

#: name -> suffix -> (size in bytes, sha256), from shared/data/README.md (kimiyoung/planetoid @ af6abf46).
PLANETOID_FILES = {
    "cora": {
        "x": (22119, "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab"),
        "y": (4054, "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1"),
        "tx": (148025, "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a"),
        "ty": (28135, "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad"),
        "allx": (257305, "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543"),
        "ally": (47959, "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71"),
        "graph": (59847, "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d"),
        "test.index": (5000, "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875"),
    },
    "citeseer": {
        "x": (31087, "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6"),
        "y": (3014, "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924"),
        "tx": (260321, "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21"),
        "ty": (24135, "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce"),
        "allx": (595021, "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668"),
        "ally": (55623, "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95"),
        "graph": (61987, "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7"),
        "test.index": (5000, "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4"),
    },
    "pubmed": {
        "x": (23172, "fbe9cb5c47200d1b7769a26e579be3b7130b556831f9d850e77c4c74f2599b33"),
        "y": (854, "e6c807633307a07ed659249006536a147c7999c797f11a2560752990181b41b3"),
        "tx": (405505, "4eb5f5d0f30f26497eb0ac6ac9719d09c67e284f1ed0385c93f3ef27a671da3d"),
        "ty": (12135, "ee2e0d4819d9fbcc403689c3bf2e49face401b605932f093bc58ab6461130fdd"),
        # Not in shared/data: no public copy was found (size and sha256 from D61-IA/FisherGCN's LFS pointer).
        "allx": (7578385, "508e538e2abdccdd54c4d3e9f49d638b4af7107d85845f66ddea5a5152658b7e"),
        "ally": (224739, "0c37bbe3b5014ec365e9d393cf4791925e5ed94fb194305d74f064a8d7b50f0e"),
        "graph": (471808, "5b89f0036ca22909471f1e6558eb42fa06e0c730a577bde5b058b40638f81dc9"),
        "test.index": (6000, "b101d421688bbaecbd82e8a18f1e282378d6830f3a37666f28ebc47f844341b5"),
    },
}

_HINT = (
    "The Planetoid files are published in github.com/kimiyoung/planetoid (data/) and tkipf/gcn (gcn/data/); "
    "put them in <data root>/planetoid/."
)
_PUBMED_ALLX_HINT = (
    "ind.pubmed.allx (7,578,385 bytes, sha256 508e538e2abdccdd54c4d3e9f49d638b4af7107d85845f66ddea5a5152658b7e, "
    "a csr_matrix (18717, 500)) is known to be missing from the shared data: no public copy was found "
    "(see shared/data/README.md), so Pubmed cannot be loaded; use cora or citeseer."
)


@dataclasses.dataclass(frozen=True, eq=False)
class Planetoid:
    """One citation graph, in node order.

    Attributes
    ----------
    name : str
        ``"cora"``, ``"citeseer"`` or ``"pubmed"``.
    features : scipy.sparse.csr_matrix
        ``(N, F)`` float32 bag-of-words; row ``i`` is node ``i`` (zero for unlabelled nodes).
    labels : numpy.ndarray
        ``(N,)`` int64 class of each node; ``-1`` for the nodes with no label (Citeseer's
        15 isolated ids missing from ``test.index``).
    edges : numpy.ndarray
        ``(2, E)`` int64 directed pairs ``(source, target)`` of the undirected graph: each
        edge once in each direction, no duplicates, no self-loops, sorted.
    train_ids, val_ids, test_ids : numpy.ndarray
        The standard Planetoid split (Yang et al. 2016; Kipf & Welling 2017): the labelled
        rows of ``x``, the next 500 nodes, and ``test.index``.
    self_loops : int
        Self-loops in the ``graph`` file, dropped from ``edges``.
    """

    name: str
    features: scipy.sparse.csr_matrix
    labels: np.ndarray
    edges: np.ndarray
    train_ids: np.ndarray
    val_ids: np.ndarray
    test_ids: np.ndarray
    self_loops: int

    @property
    def num_nodes(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    @property
    def labeled_ids(self) -> np.ndarray:
        """Ids of the nodes that have a label, ascending."""
        return np.flatnonzero(self.labels >= 0)


def planetoid_path(name: str, suffix: str, root: str | os.PathLike | None = None):
    """Checked path of ``ind.<name>.<suffix>`` (size and sha256 verified).

    Raises
    ------
    DataFileError
        Missing, truncated or altered; for ``ind.pubmed.allx`` the message says it is the
        file known to be missing, with its size and sha256.
    """
    size, sha = PLANETOID_FILES[name][suffix]
    hint = _PUBMED_ALLX_HINT if (name, suffix) == ("pubmed", "allx") else _HINT
    return verified_path(data_root(root) / "planetoid" / f"ind.{name}.{suffix}", sha256=sha, size=size, hint=hint)


def read_planetoid_file(name: str, suffix: str, root: str | os.PathLike | None = None):
    """One verified file, parsed: a csr_matrix, an ndarray, a dict or (``test.index``) an int64 array."""
    path = planetoid_path(name, suffix, root)
    if suffix == "test.index":
        try:
            return np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
        except ValueError as error:
            raise DataFileError(f"{path} should hold one integer a line: {error}") from None
    obj = restricted_loads(path.read_bytes(), source=str(path))
    if scipy.sparse.issparse(obj):
        # A csr_matrix rebuilt from an old scipy's __dict__: make a clean one.
        obj = scipy.sparse.csr_matrix((obj.data, obj.indices, obj.indptr), shape=obj.shape, dtype=np.float32)
    return obj


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise ValueError(f"unknown Planetoid data set {name!r}: choose one of {', '.join(DATASETS)}")
    return name.lower()


def load_planetoid(name: str, root: str | os.PathLike | None = None) -> Planetoid:
    """Load a Planetoid citation graph from ``<root>/planetoid/ind.<name>.*``.

    Parameters
    ----------
    name : {"cora", "citeseer", "pubmed"}
    root : path-like, optional
        The data directory (default ``$RBPSOLVE_DATA``, else the user cache).

    Returns
    -------
    Planetoid

    Raises
    ------
    DataFileError
        A file is missing, truncated or altered (for Pubmed: ``ind.pubmed.allx`` is missing
        from the shared data, and the message says so), or the files disagree.
    UnsafePickleError
        A pickle names something other than the numpy/scipy classes these files hold.

    Notes
    -----
    Node ``i < len(allx)`` has row ``i`` of ``allx``/``ally``; row ``j`` of ``tx``/``ty`` is node
    ``test.index[j]``. ``N`` is the number of nodes of ``graph``. In Citeseer 15 ids inside
    the test range are isolated and absent from ``test.index``: they get zero features and
    label ``-1`` (Kipf & Welling's loader gives them zero rows too).
    """
    name = _check_name(name)
    # allx first: the one file known to be missing (Pubmed) fails before the others are read.
    d = {s: read_planetoid_file(name, s, root) for s in ("allx", "ally", "tx", "ty", "x", "y", "graph", "test.index")}
    return assemble(name, d)


def assemble(name: str, d: dict) -> Planetoid:
    """Build a :class:`Planetoid` from the parsed files ``d`` (suffix -> object); see :func:`load_planetoid`."""
    allx, ally, tx, ty, graph, test_index = d["allx"], d["ally"], d["tx"], d["ty"], d["graph"], d["test.index"]
    n_all, n_test = allx.shape[0], tx.shape[0]
    if not isinstance(graph, dict):
        raise DataFileError(f"ind.{name}.graph should hold a dict node -> neighbours; got {type(graph).__name__}")
    n = len(graph)
    _expect(name, ally.shape[0] == n_all and ty.shape[0] == n_test == len(test_index),
            f"allx/ally have {n_all}/{ally.shape[0]} rows, tx/ty/test.index {n_test}/{ty.shape[0]}/{len(test_index)}")
    _expect(name, tx.shape[1] == allx.shape[1] and ty.shape[1] == ally.shape[1],
            f"feature widths {allx.shape[1]}/{tx.shape[1]}, label widths {ally.shape[1]}/{ty.shape[1]}")
    _expect(name, len(set(test_index.tolist())) == n_test and test_index.min() >= n_all and test_index.max() < n,
            f"test.index must hold {n_test} distinct ids in [{n_all}, {n}); got range "
            f"[{test_index.min()}, {test_index.max()}]")
    _expect(name, d["x"].shape[0] <= n_all and d["y"].shape[0] == d["x"].shape[0], "x/y do not fit inside allx")

    # Features and labels in node order; Citeseer's isolated ids stay zero / -1.
    a, t = allx.tocoo(), tx.tocoo()
    features = scipy.sparse.csr_matrix(
        (np.concatenate([a.data, t.data]), (np.concatenate([a.row, test_index[t.row]]), np.concatenate([a.col, t.col]))),
        shape=(n, allx.shape[1]), dtype=np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    labels[:n_all] = _onehot_to_int(ally, name, "ally")
    labels[test_index] = _onehot_to_int(ty, name, "ty")

    edges, self_loops = _edges(graph, n, name)
    n_train = d["x"].shape[0]
    return Planetoid(
        name=name,
        features=features,
        labels=labels,
        edges=edges,
        train_ids=np.arange(n_train, dtype=np.int64),
        val_ids=np.arange(n_train, n_train + 500, dtype=np.int64),
        test_ids=np.sort(test_index),
        self_loops=self_loops,
    )


def _expect(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise DataFileError(f"the ind.{name}.* files disagree: {what}. Fetch the published files again.")


def _onehot_to_int(y: np.ndarray, name: str, suffix: str) -> np.ndarray:
    y = np.asarray(y)
    # Citeseer's ty has rows of zeros only where Kipf's loader pads; here every row must be one-hot
    # except all-zero rows, which keep label -1.
    out = np.argmax(y, axis=1).astype(np.int64)
    out[y.sum(axis=1) == 0] = -1
    return out


def _edges(graph: dict, n: int, name: str) -> tuple[np.ndarray, int]:
    src, dst = [], []
    for node, neighbours in graph.items():
        src.extend([int(node)] * len(neighbours))
        dst.extend(int(v) for v in neighbours)
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise DataFileError(f"ind.{name}.graph names nodes outside 0..{n - 1}. Fetch the published file again.")
    loops = src == dst
    self_loops = int(np.unique(src[loops]).size)
    src, dst = src[~loops], dst[~loops]
    both = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1)
    keys = np.unique(both[0] * n + both[1])
    return np.stack([keys // n, keys % n]), self_loops
