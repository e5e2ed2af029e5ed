"""The citation graph's message-passing matrix on numpy (scipy.sparse) or cupy (cupyx.scipy.sparse).

The one place where the array-API code switches on the backend: the array API standard has no
sparse arrays, and the graph (E edges, N nodes) must not become a dense ``N x N`` matrix. Everything
else in :mod:`.array_model` is the standard.
"""

from __future__ import annotations

import array_api_compat
import numpy as np

__all__ = ["Adjacency"]


class Adjacency:
    """``A`` with ``A[target, source] = `` the number of edges ``source -> target`` (so ``A @ h`` sums
    each node's in-neighbours' states, as ``index_add_`` does in the torch model), and ``A^T``.

    Parameters
    ----------
    edges : (2, E) integer array (numpy)
        Directed pairs ``(source, target)``.
    num_nodes : int
    xp : namespace
        ``array_api_compat.numpy`` or ``array_api_compat.cupy``; the matrices live there.
    dtype
        The states' dtype.
    """

    def __init__(self, edges, num_nodes: int, xp, dtype):
        edges = np.asarray(edges)
        if edges.ndim != 2 or edges.shape[0] != 2:
            raise ValueError(f"edges must have shape (2, E); got {edges.shape}")
        if array_api_compat.is_cupy_namespace(xp):
            import cupy
            from cupyx.scipy import sparse
            to_device = cupy.asarray
        elif array_api_compat.is_numpy_namespace(xp):
            from scipy import sparse
            to_device = np.asarray
        else:
            raise TypeError(f"the graph's sparse matrix needs numpy or cupy; got {xp.__name__} (array_api_strict "
                            "and other libraries have no sparse matrices in the array API standard)")
        np_dtype = np.dtype(str(xp.empty(0, dtype=dtype).dtype))
        data = to_device(np.ones(edges.shape[1], dtype=np_dtype))
        rows, cols = to_device(edges[1].astype(np.int64)), to_device(edges[0].astype(np.int64))
        # coo -> csr sums duplicate edges, as index_add_ adds a message per edge
        self.A = sparse.coo_matrix((data, (rows, cols)), shape=(num_nodes, num_nodes)).tocsr()
        self.AT = self.A.T.tocsr()

    def __matmul__(self, h):
        return self.A @ h

    def transpose_matmul(self, u):
        """``A^T u``."""
        return self.AT @ u
