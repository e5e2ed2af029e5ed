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
from ._sharding import Sharded, Sharding

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
    def like(cls, array, name: str, sharding: Sharding | None = None) -> "_Space":
        """The space of ``array`` (checked by :func:`~rbpsolve._checks.check_like`, as ``name``);
        with ``sharding``, ``array`` is this rank's block of a state split over processes."""
        xp = check_like(array, name)
        if sharding is not None:
            if not isinstance(sharding, Sharding):
                raise TypeError(
                    f"sharding must be an rbpsolve.Sharding (e.g. from "
                    f"rbpsolve.adapters.torch.distributed.sharding); got {type(sharding).__name__}"
                )
            sharding._check_local(math.prod(array.shape))
            xp = Sharded(xp, sharding)
        return cls(array.shape, array.dtype, _backend.device_of(array), xp)

    @property
    def sharding(self) -> Sharding | None:
        """How the arrays of this space are split over processes (None: not split)."""
        sharded = _backend.sharded_of(self.xp)  # a batch's per-sample namespace, too
        return None if sharded is None else sharded.sharding

    @property
    def size(self) -> int:
        """The number of elements this process holds (the whole state unless sharded)."""
        return math.prod(self.shape)

    @property
    def global_size(self) -> int:
        """The number of elements of the whole state, over all ranks when sharded: the
        dimension of the vector space (what caps a Krylov space)."""
        sharding = self.sharding
        return math.prod(self.shape) if sharding is None else sharding.global_size

    def block_of(self, whole: np.ndarray):
        """This process's block of ``whole``, a flat numpy vector of the whole state, as an
        array of this space. Random vectors are drawn whole in every process and cut here,
        so that a sharded estimate or dot test is the one-process one."""
        sharding = self.sharding
        if sharding is not None:
            whole = whole[sharding.offset: sharding.offset + self.size]
        return self.from_numpy(whole)

    def random_unit(self, seed: int):
        """A unit vector of this space drawn from ``seed`` (see :meth:`block_of`)."""
        v = np.random.default_rng(seed).standard_normal(self.global_size)
        return self.block_of(v / np.linalg.norm(v))

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
