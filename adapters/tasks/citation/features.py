"""Node inputs and label splits of the citation task: PCA of the bag-of-words, random 1/49/50 splits."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

__all__ = ["pca", "random_split"]


def pca(features, k: int) -> np.ndarray:
    r"""Project the rows of ``features`` on their top ``k`` principal directions.

    Parameters
    ----------
    features : (N, F) scipy.sparse matrix or ndarray
    k : int
        Components, ``1 <= k < min(N, F)`` (64 for Cora and 16 for Pubmed in the original code).

    Returns
    -------
    numpy.ndarray
        ``(N, k)`` float32 scores ``(X - 1 \mu^T) V_k``, ``V_k`` the top ``k`` right singular
        vectors of the centred matrix, each signed so its largest-magnitude entry is positive.

    Notes
    -----
    The original code (``utils/data_helper.py`` of lrjconan/RBP) calls scikit-learn's
    ``PCA(n_components=k)``, which computes the same projection up to the sign of each
    component. Here the centred matrix is never formed: ARPACK (``scipy.sparse.linalg.svds``)
    works on ``X - 1 \mu^T`` as a linear operator, so the sparse features stay sparse.
    """
    X = scipy.sparse.csr_matrix(features, dtype=np.float64)
    n, f = X.shape
    if not (isinstance(k, int) and 1 <= k < min(n, f)):
        raise ValueError(f"k must be an int in [1, {min(n, f) - 1}] for features of shape {X.shape}; got {k!r}")
    mu = np.asarray(X.mean(axis=0)).ravel()
    ones = np.ones(n)
    centred = scipy.sparse.linalg.LinearOperator(
        (n, f), dtype=np.float64,
        matvec=lambda v: X @ v.ravel() - ones * (mu @ v.ravel()),
        rmatvec=lambda u: X.T @ u.ravel() - mu * u.ravel().sum(),
    )
    v0 = np.full(min(n, f), 1.0 / np.sqrt(min(n, f)))  # deterministic start
    _, s, vt = scipy.sparse.linalg.svds(centred, k=k, v0=v0, which="LM")
    order = np.argsort(s)[::-1]
    vt = vt[order]
    signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
    vt = vt * signs[:, None]
    return np.asarray(X @ vt.T - mu @ vt.T, dtype=np.float32)


def random_split(ids: np.ndarray, seed: int, train_ratio: float = 0.01, val_ratio: float = 0.49):
    """Split labelled node ids at random into train / validation / test.

    As ``dataset/citation.py`` of the original code: a permutation from
    ``numpy.random.RandomState(seed)``, ``int(n * train_ratio)`` training ids,
    ``int(n * val_ratio)`` validation ids, the rest (about 50%) test.

    Returns
    -------
    train, val, test : numpy.ndarray
        Disjoint int64 arrays covering ``ids``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if not (0 < train_ratio and 0 < val_ratio and train_ratio + val_ratio < 1):
        raise ValueError(f"need 0 < train_ratio, 0 < val_ratio, train_ratio + val_ratio < 1; got {train_ratio}, {val_ratio}")
    perm = ids[np.random.RandomState(seed).permutation(len(ids))]
    n_train, n_val = int(len(ids) * train_ratio), int(len(ids) * val_ratio)
    if n_train < 1:
        raise ValueError(f"train_ratio {train_ratio} of {len(ids)} labelled nodes leaves no training node")
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
