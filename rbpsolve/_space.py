"""The arrays an operator takes and returns, and the bound users declare on its norm.

``_Space`` holds the shape, dtype, device and namespace of an operator's input or output
(the checks of arrays against it are in ``_checks``); ``ProductCounter`` counts the
products of one solve.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._checks import check_like

__all__ = ["ProductCounter", "check_norm_bound"]


class ProductCounter:
    """Counts forward (``J v``, "jvp") and transpose (``J^T u``, "vjp") leaf products, and
    evaluations of a forward solver's map ``F``: the loop's one counter of work."""

    __slots__ = ("jvp", "vjp", "evaluations")

    def __init__(self):
        self.jvp = 0
        self.vjp = 0
        self.evaluations = 0


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

    __slots__ = ("shape", "dtype", "device", "xp", "array_type")

    def __init__(self, shape, dtype, device, xp):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.device = device
        self.xp = xp
        # The Python type of an array already found to be of library xp: the check at
        # every product then needs no namespace lookup (rbpsolve._checks).
        self.array_type = None

    @classmethod
    def like(cls, array, name: str) -> "_Space":
        """The space of ``array`` (checked by :func:`~rbpsolve._checks.check_like`, as ``name``)."""
        xp = check_like(array, name)
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
            and _backend.same_device(self.device, other.device)
        )
