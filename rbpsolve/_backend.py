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

__all__ = [
    "namespace",
    "device_of",
    "vdot",
    "norm",
    "to_float",
    "to_numpy",
    "from_numpy",
    "describe_namespace",
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
    name = getattr(xp, "__name__", repr(xp))
    return name.replace("array_api_compat.", "")


def vdot(xp, a, b):
    """Real inner product over every element of ``a`` and ``b`` (a 0-d array)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        # BLAS dot, without the temporary of a * b: numpy's per-call overhead
        # dominates small solves.
        return np.vdot(a, b)
    return xp.sum(a * b)


def norm(xp, a):
    """Euclidean norm over every element of ``a`` (a 0-d array)."""
    if type(a) is np.ndarray:
        return np.sqrt(np.vdot(a, a))
    return xp.linalg.vector_norm(a)


def to_float(x) -> float:
    """A 0-d array (or Python number) as a Python float: one host synchronisation."""
    if isinstance(x, (int, float)):
        return float(x)
    if array_api_compat.is_torch_array(x):
        return float(x.detach().item())
    return float(x)


def to_numpy(x) -> np.ndarray:
    """A copy of ``x`` on the host as a numpy array (used by diagnostics and scipy interop)."""
    if isinstance(x, np.ndarray):
        return x
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


def finite_or_nan(value: float) -> bool:
    return math.isfinite(value)


def to_floats(xp, *scalars) -> list[float]:
    """Several 0-d arrays as Python floats with a single host transfer."""
    if all(isinstance(v, (np.ndarray, np.generic)) for v in scalars):
        return [float(v) for v in scalars]
    return [float(v) for v in to_numpy(xp.stack(scalars))]


def machine_eps(xp, dtype) -> float:
    """The machine epsilon of ``dtype`` as a Python float, read from ``xp.finfo``
    (no array is allocated and nothing is copied from the device)."""
    return float(xp.finfo(dtype).eps)


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
    return same_device(device_of(array), device)
