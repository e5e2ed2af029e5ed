"""The arrays an operator takes and returns, and the checks of what users declare about them.

``_Space`` holds the shape, dtype, device and namespace of an operator's input or output;
``ProductCounter`` counts the products of one solve.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend

__all__ = ["ProductCounter", "check_not_matrix", "check_norm_bound"]


class ProductCounter:
    """Counts forward (``J v``, "jvp") and transpose (``J^T u``, "vjp") leaf products, and
    evaluations of a forward solver's map ``F``: the loop's one counter of work."""

    __slots__ = ("jvp", "vjp", "evaluations")

    def __init__(self):
        self.jvp = 0
        self.vjp = 0
        self.evaluations = 0


def check_not_matrix(array, name: str) -> None:
    """``np.matrix`` keeps two dimensions through every reduction and makes ``*`` a matrix
    product, which the solvers' elementwise arithmetic cannot work with."""
    if isinstance(array, np.matrix):
        raise TypeError(f"{name} is a numpy.matrix; pass a plain array instead: numpy.asarray({name})")


def check_norm_bound(value):
    """A declared ``||J||_2`` bound: None, or a finite real number >= 0 (as a float)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"norm_bound must be None or a number (an upper bound on the operator's 2-norm); got {value!r}")
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(
            f"norm_bound must be a finite number >= 0, a true upper bound on the operator's 2-norm "
            f"(the error bounds are only as good as it is); got {value}"
        )
    return value


class _Space:
    """Shape, dtype, device and namespace of the arrays an operator takes or returns."""

    __slots__ = ("shape", "dtype", "device", "xp")

    def __init__(self, shape, dtype, device, xp):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.device = device
        self.xp = xp

    @classmethod
    def like(cls, array, name: str) -> "_Space":
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            raise TypeError(
                f"{name} must be an array (numpy, torch, cupy or any array-API array) whose shape, "
                f"dtype and device the operator takes; got {type(array).__name__}"
            )
        check_not_matrix(array, name)
        xp = _backend.namespace(array)
        if not _backend.is_real_floating(xp, array.dtype):
            raise TypeError(
                f"{name} has dtype {array.dtype}; rbpsolve solves real floating-point systems: "
                f"pass float32 or float64 arrays"
            )
        return cls(array.shape, array.dtype, _backend.device_of(array), xp)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def zeros(self):
        return self.xp.zeros(self.shape, dtype=self.dtype, device=self.device)

    def from_numpy(self, a):
        return _backend.from_numpy(self.xp, np.reshape(a, self.shape), dtype=self.dtype, device=self.device)

    def same_as(self, other: "_Space") -> bool:
        return (
            self.shape == other.shape
            and self.dtype == other.dtype
            and self.xp is other.xp
            and str(self.device) == str(other.device)
        )
