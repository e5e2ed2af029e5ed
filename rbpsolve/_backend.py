"""Every array-backend quirk of rbpsolve lives here.

The core computes with the array API standard through ``array_api_compat``:
``xp = namespace(*arrays)`` at each public entry, passed down. Nothing here
imports torch or cupy; ``array_api_compat`` recognises their arrays without
importing them.
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np

from ._sharding import Sharded

__all__ = [
    "namespace",
    "device_of",
    "vdot",
    "norm",
    "to_float",
    "to_numpy",
    "to_host",
    "transfer_count",
    "from_numpy",
    "describe_namespace",
    "reductions",
    "basis_products",
    "is_lazy",
    "persist",
]


def namespace(*arrays):
    """The array-API namespace shared by ``arrays``.

    Raises
    ------
    TypeError
        If the arrays come from different libraries, naming them.
    """
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as error:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in arrays})
        raise TypeError(
            f"arrays from different libraries were mixed ({', '.join(kinds)}); "
            "convert them to one library (for example all torch tensors) before solving"
        ) from error


def device_of(x):
    return array_api_compat.device(x)


def describe_namespace(xp) -> str:
    if type(xp) is Sharded:
        return describe_namespace(xp.xp) + " (sharded)"
    name = getattr(xp, "__name__", repr(xp))
    return name.replace("array_api_compat.", "")


def vdot(xp, a, b):
    """Real inner product over every element of ``a`` and ``b`` (a 0-d array); over all
    ranks for a :class:`~rbpsolve._sharding.Sharded` namespace."""
    if type(xp) is PerSample or type(xp) is Sharded:
        return xp.vdot(a, b)
    if type(a) is np.ndarray and type(b) is np.ndarray:
        # BLAS dot, without the temporary of a * b: numpy's per-call overhead
        # dominates small solves.
        return np.vdot(a, b)
    if array_api_compat.is_torch_array(a):
        # One fused reduction, without the temporary a * b (twice as fast at 2^18 entries).
        if a.ndim == 1 and b.ndim == 1:
            return a.dot(b)  # a reshape is a dispatched operation too (about 1 us)
        return a.reshape(-1).dot(b.reshape(-1))
    return xp.sum(a * b)


def norm(xp, a):
    """Euclidean norm over every element of ``a`` (a 0-d array); per sample for a
    :class:`PerSample` namespace."""
    if type(xp) is PerSample or type(xp) is Sharded:
        return xp.norm(a)
    if type(a) is np.ndarray:
        return np.sqrt(np.vdot(a, a))
    return xp.linalg.vector_norm(a)


def to_float(x) -> float:
    """A 0-d array (or Python number) as a Python float: one host transfer.

    numpy's float64 scalars subclass float, but stand for a device value here (a numpy
    reduction's result): they count as a transfer, like the 0-d arrays of other libraries.
    """
    if type(x) in _PYTHON_NUMBERS:
        return float(x)
    return to_host(None, x)[0]


def to_numpy(x) -> np.ndarray:
    """A copy of ``x`` on the host as a numpy array (used by diagnostics and scipy interop):
    one host transfer (counted, see :func:`transfer_count`)."""
    if isinstance(x, np.ndarray):
        return x
    _Transfers.count += 1
    return _host_copy(x)


def _host_copy(x) -> np.ndarray:
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def from_numpy(xp, a: np.ndarray, *, dtype, device):
    """``a`` in namespace ``xp`` with the given dtype and device."""
    return xp.asarray(np.ascontiguousarray(a), dtype=dtype, device=device)


def is_real_floating(xp, dtype) -> bool:
    return xp.isdtype(dtype, "real floating")


class _Transfers:
    """How many times rbpsolve moved values from arrays to Python (see :func:`to_host`)."""

    count = 0


def transfer_count() -> int:
    """The number of host transfers rbpsolve has made so far in this process.

    Every value the core moves from an array to Python goes through :func:`to_host`,
    which counts one transfer a call: on a GPU each is a synchronisation with the device.
    Tests read the difference around a solve.
    """
    return _Transfers.count


_PYTHON_NUMBERS = (float, int, bool)


def to_host(xp, *values) -> list[float]:
    """0-d or 1-d arrays (and Python numbers) as one flat list of Python floats.

    One host transfer for all of them: the arrays are stacked on their device (booleans
    and other dtypes cast to the first floating dtype among them) and moved together.
    Python numbers pass through without a transfer. This runs every step, so the common
    cases (numpy values, 0-d torch tensors) take short paths.
    """
    arrays = [v for v in values if type(v) not in _PYTHON_NUMBERS]
    if not arrays:
        return [float(v) for v in values]
    _Transfers.count += 1
    first = arrays[0]
    if type(first) not in _NUMPY_HOST and array_api_compat.is_dask_array(first):
        values, arrays = _dask_computed(values)
        first = arrays[0]
    if all(type(v) in _NUMPY_HOST for v in arrays):
        # Host memory already: numpy's scalars and arrays need only unpacking.
        out = []
        for v in values:
            if type(v) is np.ndarray and v.shape:
                out.extend(v.astype(np.float64, copy=False).ravel().tolist())
            else:
                out.append(float(v))
        return out
    if type(first) in _NUMPY_HOST:
        moved, flat = np.concatenate([np.reshape(np.asarray(v, dtype=np.float64), (-1,)) for v in arrays]).tolist(), False
    elif len(arrays) == 1 and not first.shape:
        moved, flat = [float(first)], True  # one value (a residual): nothing to stack
    else:
        moved, flat = _stacked(xp if xp is not None else namespace(*arrays), arrays), True
        if moved is None:
            moved, flat = _concatenated(xp if xp is not None else namespace(*arrays), arrays), False
    if flat and len(arrays) == len(values):
        return [float(v) for v in moved]
    out, at = [], 0
    for v in values:
        if type(v) in _PYTHON_NUMBERS:
            out.append(float(v))
            continue
        size = math.prod(v.shape) if v.shape else 1
        out.extend(moved[at: at + size])  # floats already: joined in a floating dtype
        at += size
    return out


_NUMPY_HOST = (np.float64, np.bool_, np.float32, np.ndarray)


def _dask_computed(values) -> tuple[list, list]:
    """``values`` with their dask arrays computed (numpy values), and those arrays.

    One ``dask.compute`` of them all, so that the graph they share (a step's products)
    runs once; stacking them first, as other libraries' values are, would only add a
    layer of graph to build. The results are then unpacked as numpy's are.
    """
    import dask

    lazy = [i for i, v in enumerate(values) if array_api_compat.is_dask_array(v)]
    computed = dask.compute(*(values[i] for i in lazy))
    values = list(values)
    for i, v in zip(lazy, computed):
        values[i] = v
    return values, [v for v in values if type(v) not in _PYTHON_NUMBERS]


def _stacked(xp, arrays):
    """The 0-d ``arrays`` of one dtype moved as one stack (the usual step), else None."""
    dtype = arrays[0].dtype
    if any(v.dtype != dtype or v.shape for v in arrays):
        return None
    joined = xp.stack(arrays)
    return joined.detach().tolist() if array_api_compat.is_torch_array(joined) else _host_copy(joined).tolist()


def _concatenated(xp, arrays):
    """Any 0-d or 1-d ``arrays``: cast to the first floating dtype, flattened, joined, moved."""
    if array_api_compat.is_torch_array(arrays[0]):
        floating = next((v.dtype for v in arrays if v.dtype.is_floating_point), arrays[0].dtype)
        joined = xp.concat([(v if v.dtype == floating else v.to(floating)).reshape(-1) for v in arrays])
        return joined.detach().tolist()
    floating = next((v.dtype for v in arrays if xp.isdtype(v.dtype, "real floating")), None)
    same = [v if floating is None or v.dtype == floating else xp.astype(v, floating) for v in arrays]
    joined = xp.concat([xp.reshape(v, (-1,)) for v in same])
    return joined.detach().tolist() if array_api_compat.is_torch_array(joined) else _host_copy(joined).tolist()


def select(xp, condition, a, b):
    """``a`` where the 0-d boolean ``condition`` holds, else ``b``, without a transfer.

    numpy's arrays live on the host, where reading ``condition`` moves nothing: the answer
    is one of the two arrays themselves (no copy). On other libraries the choice stays on
    the device (``where``: one pass over the arrays).
    """
    if type(condition) is np.bool_ or type(condition) is bool:
        return a if condition else b  # numpy (or Python) values: on the host already
    return where(xp, condition, a, b)


def sqrt_nonnegative(xp, value):
    """``sqrt(max(value, 0))`` of a 0-d value (a norm from a difference of squares that
    rounding took below zero), on its device."""
    if array_api_compat.is_torch_array(value):
        return value.clamp_min(0).sqrt()
    return xp.sqrt(xp.maximum(value, 0.0))


def is_torch(value) -> bool:
    """Whether ``value`` is a torch tensor (without importing torch)."""
    return array_api_compat.is_torch_array(value)


def where(xp, condition, a, b):
    """``xp.where(condition, a, b)``; on torch the tensor's own method, which skips
    array-api-compat's promotion checks (half the time of a step's small operations)."""
    if array_api_compat.is_torch_array(a):
        return a.where(condition, b)
    if array_api_compat.is_torch_array(b):
        return b.where(~condition, a)
    return xp.where(condition, a, b)


def minimum(xp, a, b):
    """``xp.minimum(a, b)`` of two arrays (NaN propagates on numpy and torch); on torch
    the tensor's own method (array-api-compat's wrapper costs five times as much)."""
    if type(a) is np.float64 and type(b) is np.float64:
        # numpy's reductions give float64 scalars: a Python comparison is a tenth of
        # np.minimum's cost (NaN propagates, as np.minimum's does).
        return b if (b < a or b != b) else a
    if array_api_compat.is_torch_array(a):
        return a.minimum(b)
    return xp.minimum(a, b)


def hypot(xp, a, b):
    """``sqrt(a^2 + b^2)`` of two 0-d values without overflow, on their device."""
    if type(a) is np.float64 and type(b) is np.float64:
        return np.float64(math.hypot(a, b))
    return xp.hypot(a, b)


def solve_small(xp, a, b):
    """``xp.linalg.solve(a, b)`` of small systems: ``a`` of shape ``(..., m, m)``, ``b`` of
    shape ``(..., m, k)`` (a stack of them in a batch).

    dask's ``linalg.solve`` takes one 2-D matrix only (it factors a chunked matrix): a
    stack of them, as the array API allows, is solved by numpy in one task instead (the
    systems are tiny: ``m`` is Anderson's memory).
    """
    if array_api_compat.is_dask_array(a):
        a, b = a.rechunk(-1), b.rechunk(-1)
        return a.map_blocks(np.linalg.solve, b, dtype=b.dtype, chunks=b.chunks)
    return xp.linalg.solve(a, b)


def machine_eps(xp, dtype) -> float:
    """The machine epsilon of ``dtype`` (no array allocated, nothing moved)."""
    return float(xp.finfo(dtype).eps)


def set_row(xp, matrix, index: int, row, scale=None):
    """``matrix`` with row ``index`` replaced by ``row`` (times ``scale``, if given).

    Written in place where the library allows it (numpy, torch, cupy: the same array is
    returned, and the scaling writes straight into the row, one pass); a functional
    update on immutable arrays (JAX: ``.at[].set``). A dask matrix gets the row as a
    new layer of its graph, then is persisted (:func:`persist`): a Krylov basis
    written row by row would otherwise be a chain of one layer a row, replayed by every
    later read of it. Its columns are chunked as ``row`` is (rechunked at the first write
    if need be).
    """
    if array_api_compat.is_jax_array(matrix):
        return matrix.at[index].set(row if scale is None else row * scale)
    if array_api_compat.is_dask_array(matrix):
        if matrix.chunks[1:] != row.chunks:
            # A basis allocated with dask's own chunks ("auto"): cut it as the state is,
            # so that its products with the state need no rechunking and the iterates
            # formed from it keep the caller's chunks. One block of rows: a write copies
            # the blocks it lands in (every row of them), but a block a row made the
            # Gram-Schmidt products dearer than the copies (GMRES(10) on 10^7 entries:
            # 470 against 370 ms a step).
            matrix = matrix.rechunk((matrix.shape[0],) + row.chunks)
        matrix[index, ...] = row if scale is None else row * scale
        return persist(matrix)[0]
    if scale is None:
        matrix[index, ...] = row
    elif type(matrix) is np.ndarray:
        np.multiply(row, scale, out=matrix[index])
    elif array_api_compat.is_torch_array(matrix):
        matrix[index].copy_(row).mul_(scale)  # in place: no temporary
    else:
        matrix[index, ...] = row * scale
    return matrix


def same_device(a, b) -> bool:
    """Whether two devices, as :func:`device_of` returns them, are the same.

    torch and cupy devices compare equal as objects, numpy's is the string ``"cpu"``.
    Device objects of a library that does not define equality are compared by name,
    the one place rbpsolve reads a device's ``str``.
    """
    if a is b or a == b:
        return True
    return str(a) == str(b)


def numpy_dtype(xp, dtype) -> np.dtype:
    """The numpy dtype that :func:`to_numpy` gives arrays of ``dtype``, without a device copy.

    Raises
    ------
    TypeError
        If numpy has no such dtype (torch's bfloat16, for one).
    """
    try:
        # numpy, cupy and JAX dtypes are numpy dtypes (or scalar types) already.
        return np.dtype(dtype)
    except TypeError:
        pass
    try:
        # torch.float32, array_api_strict.float64, ...: the name after the library's prefix.
        return np.dtype(str(dtype).rsplit(".", 1)[-1])
    except TypeError:
        # An empty array moves no data: what the library itself converts the dtype to.
        return to_numpy(xp.zeros((0,), dtype=dtype)).dtype


def on_device(array, device) -> bool:
    """Whether ``array`` lives on ``device``; checked at every product, so a numpy array
    (always on the host) answers without looking its device up."""
    if type(array) is np.ndarray:
        return True
    if array_api_compat.is_torch_array(array):
        return array.device == device  # torch.device objects compare by type and index
    return same_device(device_of(array), device)


def is_lazy(xp) -> bool:
    """Whether ``xp`` builds lazy arrays (dask: task graphs computed on demand), whose
    iterates the loops must :func:`persist` a step. A batch's :class:`PerSample`
    namespace answers for the namespace it wraps."""
    if type(xp) is PerSample:
        xp = xp.xp
    return array_api_compat.is_dask_namespace(xp)


def persist(*values) -> tuple:
    """``values`` with every dask array in them (nested in tuples, named tuples, lists,
    dicts and dataclasses too) computed and held in memory: ``dask.persist``, one pass
    over their shared graph.

    Why: a dask array is the graph of its whole history, and dask keeps no intermediate
    result. An iterate built from the previous one, whose norm is read every step, would
    recompute every earlier step at every read: step ``k`` costs ``k`` steps and the graph
    grows without end. Persisted, an iterate is a graph of its finished chunks, so a step
    costs one step. Anything that is not a dask array passes through unchanged (dask is
    imported here, on the first dask array, never when rbpsolve is).
    """
    import dask

    return dask.persist(*values)


def is_per_sample(xp) -> bool:
    """Whether ``xp`` is a batch's :class:`PerSample` namespace (one system a sample)."""
    return type(xp) is PerSample


class PerSample:
    """An array namespace for a batch of independent systems, the batch on axis 0.

    Everything but the reductions is the wrapped namespace's own (attribute lookups pass
    through). :func:`vdot` and :func:`norm` reduce over each sample's entries only and
    keep the reduced axes, so that a solver's per-sample scalars (shape ``(B, 1, ..., 1)``)
    broadcast against its batched vectors: the unbatched solver code then runs one
    independent recurrence per sample, with one batched product a step.
    """

    def __init__(self, xp, ndim: int):
        self.xp = xp
        self._axes = tuple(range(1, ndim))
        # A batch of sharded states: each sample's entries are split over the ranks, the
        # batch axis is whole on every rank. Per-sample partials are reduced together.
        self._sharded = xp if type(xp) is Sharded else None
        self.local = PerSample(xp.xp, ndim) if self._sharded is not None else self

    def __getattr__(self, name):
        return getattr(self.xp, name)

    def vdot(self, a, b):
        if self._sharded is not None:
            return self._sharded.reduce(self.local.vdot(a, b), "sum")
        if not self._axes:  # a batch of scalar systems
            return a * b
        if type(a) is np.ndarray and type(b) is np.ndarray:
            # Stacked (1, n) @ (n, 1) products: BLAS's dot a sample, bit for bit what the
            # unbatched np.vdot gives, so that a sample's recurrence is its solo one.
            batch = a.shape[0]
            inner = np.reshape(a, (batch, 1, -1)) @ np.reshape(b, (batch, -1, 1))
            return np.reshape(inner, (batch,) + (1,) * len(self._axes))
        return self.xp.sum(a * b, axis=self._axes, keepdims=True)

    def norm(self, a):
        if self._sharded is not None:
            return self.xp.sqrt(self.vdot(a, a))
        if not self._axes:
            return self.xp.abs(a)
        if type(a) is np.ndarray:
            return np.sqrt(self.vdot(a, a))  # as the unbatched norm of a numpy array
        return self.xp.linalg.vector_norm(a, axis=self._axes, keepdims=True)


def sharded_of(xp):
    """The :class:`Sharded` namespace behind ``xp`` (itself, or a batch's), else None."""
    if type(xp) is Sharded:
        return xp
    if type(xp) is PerSample:
        return xp._sharded
    return None


def local(xp):
    """``xp`` computing on this rank's data only (``xp`` itself when nothing is sharded)."""
    if type(xp) is Sharded:
        return xp.xp
    if type(xp) is PerSample:
        return xp.local
    return xp


def completed(xp, partials):
    """Sums over a state's entries that this rank computed on its block alone (a matrix
    product with a basis, say), completed over all ranks; unchanged when nothing is split."""
    sharded = sharded_of(xp)
    return partials if sharded is None else sharded.reduce(partials, "sum")


def reductions(xp, *requests):
    """Several independent reductions of one step, over all ranks in one all-reduce.

    Each request is ``(a,)`` for ``norm(a)`` or ``(a, b)`` for ``vdot(a, b)``; the answers
    come back in order. Without sharding each is exactly :func:`norm` or :func:`vdot` (so
    nothing changes for one process); on a sharded state the rank's partial sums are
    stacked and reduced together, and a norm is the root of its reduced square.
    """
    sharded = sharded_of(xp)
    if sharded is None:
        return [norm(xp, r[0]) if len(r) == 1 else vdot(xp, r[0], r[1]) for r in requests]
    mine = local(xp)
    partials = [vdot(mine, r[0], r[0] if len(r) == 1 else r[1]) for r in requests]
    return _rooted(sharded.xp, requests, _reduced_together(sharded, partials))


def basis_products(xp, basis, w, *extra):
    """``V w`` for the rows ``V`` of ``basis`` (``(k, n)``) and a flat ``w``, with the
    reductions ``extra`` (requests as in :func:`reductions`) of the same step: one
    all-reduce for them all on a sharded state. Returns ``[V w, *extra values]``."""
    # The operator @ of the array itself: array-api-compat's matmul re-checks the dtypes'
    # promotion at every call, a cost of the order of a small product.
    sharded = sharded_of(xp)
    if sharded is None:
        return [basis @ w] + reductions(xp, *extra)
    partials = [basis @ w] + [vdot(sharded.xp, r[0], r[0] if len(r) == 1 else r[1]) for r in extra]
    h, *values = _reduced_together(sharded, partials)
    return [h] + _rooted(sharded.xp, extra, values)


def _reduced_together(sharded, partials):
    """This rank's ``partials`` (arrays of any shapes) summed over all ranks, one all-reduce."""
    base = sharded.xp
    flat = [base.reshape(base.asarray(p), (-1,)) for p in partials]
    joined = sharded.reduce(base.concat(flat), "sum")
    out, at = [], 0
    for p, f in zip(partials, flat):
        out.append(base.reshape(joined[at: at + f.shape[0]], tuple(p.shape)))
        at += f.shape[0]
    return out


def _rooted(xp, requests, values):
    """Reduced squares of the norm requests (one array) rooted; inner products as they are."""
    return [xp.sqrt(v) if len(r) == 1 else v for r, v in zip(requests, values)]
