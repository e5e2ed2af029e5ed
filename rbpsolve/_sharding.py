r"""States split over processes: the one reduction that completes the core's inner products.

A solve on a sharded state is the same solve on every rank: each rank holds a contiguous
block of the (flattened) state and of every vector the solver makes, applies its part of
the operator (the user's products, with whatever communication they need), and computes
its part of every inner product and norm,

.. math::

    \langle a, b \rangle = \sum_{r} \langle a_r, b_r \rangle, \qquad
    \|a\| = \Big(\sum_r \|a_r\|^2\Big)^{1/2},

which one all-reduce completes. All ranks then hold the same scalars to the last bit (an
all-reduce gives every rank the same result), so every stopping test, divergence check and
status is decided identically and every rank stops at the same step. The engine is the
user's (``torch.distributed`` through :func:`rbpsolve.adapters.torch.distributed.sharding`,
or any ``reduce`` callable, e.g. mpi4py's ``Allreduce``); the core never imports it.

:class:`Sharding` describes the split; :class:`Sharded` is the array namespace a sharded
operator's spaces carry, whose whole-array reductions (``sum``, ``max``, ``min``, ``all``,
``any``, ``linalg.vector_norm``) include the all-reduce. :func:`rbpsolve._backend.reductions`
reduces a step's independent scalars together, in one all-reduce.
"""

from __future__ import annotations

import math
import numbers

import array_api_compat

__all__ = ["Sharding", "Sharded"]


class Sharding:
    r"""How a state is split over processes, and the all-reduce that joins their parts.

    Parameters
    ----------
    reduce : callable
        ``reduce(values, op)`` takes a 1-D array of this rank's partial values (of the
        state's library, device and floating dtype) and ``op`` in ``{"sum", "max",
        "min"}``, and returns an array of the same shape holding the values combined over
        all ranks: the same on every rank. It is a collective: every rank calls it the same
        number of times, in the same order, which the solvers guarantee (their decisions
        come from reduced values only). It must not modify ``values`` (a copy is fine).
    offset : int
        Where this rank's block starts in the flattened global state (C order).
    global_size : int
        The number of elements of the whole state, over all ranks.

    Notes
    -----
    A rank's block is a contiguous run ``[offset, offset + n_local)`` of the flattened
    global state; a state of shape ``(N, d)`` split by rows is such a split. The offsets
    place the random start vectors of the estimates (:func:`rbpsolve.estimate_norm`, ...):
    every rank draws the whole vector from the seed and keeps its block, so a sharded
    estimate is the single-process one. Sizes that cap a method (GMRES's restart length)
    use ``global_size``.

    Examples
    --------
    One process holding everything is the trivial split (``reduce`` returns its input):

    >>> import numpy as np, rbpsolve
    >>> one = rbpsolve.Sharding(lambda values, op: values, offset=0, global_size=3)
    >>> J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(3), sharding=one)
    >>> rbpsolve.solve_adjoint(J, np.ones(3), rbpsolve.GMRES(rtol=1e-12)).x
    array([2., 2., 2.])
    """

    def __init__(self, reduce, *, offset: int, global_size: int):
        if not callable(reduce):
            raise TypeError(f"reduce must be callable, reduce(values, op) -> values combined over ranks; "
                            f"got {type(reduce).__name__}")
        for name, value in (("offset", offset), ("global_size", global_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        self.reduce = reduce
        self.offset = int(offset)
        self.global_size = int(global_size)

    def _check_local(self, local_size: int) -> None:
        """Refuse a local block that does not fit in the global state."""
        if self.offset + local_size > self.global_size:
            raise ValueError(
                f"this rank's block of {local_size} elements at offset {self.offset} runs past the global "
                f"state of {self.global_size} elements; offset and global_size must describe the whole "
                f"state (rbpsolve.adapters.torch.distributed.sharding computes them)"
            )

    def __repr__(self) -> str:
        return f"Sharding(offset={self.offset}, global_size={self.global_size})"


class Sharded:
    """The array namespace of a sharded space: ``xp``'s, with whole-array reductions that
    include the all-reduce of ``sharding``.

    Every reduction of an array of this namespace is over the state's entries, which are
    split over the ranks: the whole array (``axis=None``), or in a batch of states (samples
    on axis 0, whole on every rank) the axes of a sample. Small arrays that every rank
    holds whole (Krylov coefficients, Anderson's Gram matrices) are reduced with the base
    namespace instead (:func:`rbpsolve._backend.local`).
    """

    def __init__(self, xp, sharding: Sharding):
        self.xp = xp
        self.sharding = sharding
        self.linalg = _Linalg(self)

    def __getattr__(self, name):
        return getattr(self.xp, name)

    def reduce(self, values, op: str = "sum"):
        """``values`` (this rank's partials, any shape) combined over all ranks."""
        xp = self.xp
        shape = tuple(values.shape)
        flat = xp.reshape(xp.asarray(values), (-1,))
        out = self.sharding.reduce(flat, op)
        if type(out) is not type(flat):
            raise TypeError(
                f"the sharding's reduce returned a {type(out).__module__}.{type(out).__name__} for values of type "
                f"{type(flat).__module__}.{type(flat).__name__}; it must return an array of the type it was given"
            )
        if tuple(out.shape) != tuple(flat.shape):
            raise ValueError(
                f"the sharding's reduce returned {getattr(out, 'shape', type(out).__name__)} for values of "
                f"shape {tuple(flat.shape)}; it must return an array of the shape it was given"
            )
        return xp.reshape(out, shape)

    def sum(self, x, /, *, axis=None, dtype=None, keepdims=False):
        return self.reduce(self.xp.sum(x, axis=axis, dtype=dtype, keepdims=keepdims), "sum")

    def max(self, x, /, *, axis=None, keepdims=False):
        return self.reduce(self._extreme(x, axis, keepdims, self.xp.max, -math.inf), "max")

    def min(self, x, /, *, axis=None, keepdims=False):
        return self.reduce(self._extreme(x, axis, keepdims, self.xp.min, math.inf), "min")

    def _extreme(self, x, axis, keepdims, local, empty):
        # A rank may hold no element (an uneven split): it contributes the neutral value.
        if math.prod(x.shape) == 0:
            axes = range(x.ndim) if axis is None else [axis] if isinstance(axis, int) else axis
            axes = {a % x.ndim for a in axes}
            shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape) if keepdims or i not in axes)
            return self.xp.full(shape, empty, dtype=x.dtype, device=array_api_compat.device(x))
        return local(x, axis=axis, keepdims=keepdims)

    def all(self, x, /, *, axis=None, keepdims=False):
        return self._logical(self.xp.all(x, axis=axis, keepdims=keepdims), "min")

    def any(self, x, /, *, axis=None, keepdims=False):
        return self._logical(self.xp.any(x, axis=axis, keepdims=keepdims), "max")

    def _logical(self, local, op):
        xp = self.xp
        as_number = xp.astype(local, xp.float32)  # min/max over ranks of 0/1
        return self.reduce(as_number, op) > 0.5

    def vdot(self, a, b):
        from . import _backend

        return self.reduce(_backend.vdot(self.xp, a, b), "sum")

    def norm(self, a):
        return self.xp.sqrt(self.vdot(a, a))

    def __repr__(self) -> str:
        return f"Sharded({getattr(self.xp, '__name__', self.xp)!r}, {self.sharding!r})"


class _Linalg:
    """``xp.linalg`` of a :class:`Sharded` namespace: the vector norm over all ranks."""

    def __init__(self, sharded: Sharded):
        self._sharded = sharded

    def __getattr__(self, name):
        return getattr(self._sharded.xp.linalg, name)

    def vector_norm(self, x, /, *, axis=None, keepdims=False, ord=2):
        sharded = self._sharded
        if ord == 2:
            return sharded.xp.sqrt(sharded.sum(x * x, axis=axis, keepdims=keepdims))
        if ord == math.inf:
            return sharded.max(sharded.xp.abs(x), axis=axis, keepdims=keepdims)
        raise NotImplementedError(f"vector_norm of order {ord} on a sharded array")
