"""scipy interoperability both ways: :func:`aslinearoperator` and ``Operator.to_scipy``.

Only scipy's public API is used: a ``LinearOperator``'s ``shape``, ``dtype``, ``matvec``
and ``rmatvec``, and its documented behaviour that ``rmatvec`` raises
``NotImplementedError`` when the operator has no adjoint.
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._operator import FunctionOperator, MatrixOperator, Operator

__all__ = ["aslinearoperator", "to_scipy"]


def aslinearoperator(obj, *, norm_bound=None) -> Operator:
    """An rbpsolve operator from a scipy ``LinearOperator``, a sparse or dense matrix.

    rbpsolve operators are returned unchanged. scipy operators and sparse matrices act on
    1-D float numpy vectors; a 2-D array of any array-API library becomes a
    :class:`MatrixOperator` in that library. The reverse conversion is
    :meth:`Operator.to_scipy`.

    Notes
    -----
    scipy does not say in advance whether a ``LinearOperator`` has an adjoint
    (``LinearOperator(shape, matvec=f)`` has none; ``rmatvec`` raises
    ``NotImplementedError``). The first time a solver or the dot test asks for ``A^T u``
    (``has_rmv``), the operator calls ``rmatvec`` once on a zero vector to find out: one
    product that is not counted in ``num_vjp``, and none for solvers that need only ``A v``.
    """
    if isinstance(obj, Operator):
        return obj
    import scipy.sparse
    import scipy.sparse.linalg as spla

    if scipy.sparse.issparse(obj):
        matrix = obj.tocsr()
        return aslinearoperator(spla.aslinearoperator(matrix), norm_bound=norm_bound)
    if isinstance(obj, spla.LinearOperator):
        m, n = obj.shape
        dtype = np.dtype(obj.dtype) if obj.dtype is not None else np.dtype(np.float64)
        if dtype.kind != "f":
            raise TypeError(f"rbpsolve solves real floating-point systems; this operator has dtype {dtype}")
        return _ScipyOperator(
            lambda x: _real_product(obj.matvec(x), dtype, m, "matvec"),
            lambda y: _real_product(obj.rmatvec(y), dtype, n, "rmatvec"),
            like_in=np.zeros(n, dtype=dtype),
            like_out=np.zeros(m, dtype=dtype),
            norm_bound=norm_bound,
            _adjoint=_AdjointProbe(obj, np.zeros(m, dtype=dtype)),
        )
    if hasattr(obj, "shape") and len(obj.shape) == 2:
        return MatrixOperator(obj, norm_bound=norm_bound)
    raise TypeError(
        "aslinearoperator takes an rbpsolve operator, a scipy LinearOperator, a scipy sparse matrix "
        f"or a 2-D array; got {type(obj).__name__}"
    )


class _AdjointProbe:
    """Whether a scipy ``LinearOperator`` has ``rmatvec``: asked of scipy once, then kept.

    Shared by the copies of one converted operator (``with_counter`` makes one per
    solve), so a scipy operator is probed at most once.
    """

    __slots__ = ("_obj", "_zero", "_answer")

    def __init__(self, obj, zero):
        self._obj = obj
        self._zero = zero
        self._answer = None

    def __call__(self) -> bool:
        if self._answer is None:
            try:
                self._obj.rmatvec(self._zero)
            except NotImplementedError:
                self._answer = False
            else:
                self._answer = True
        return self._answer


class _ScipyOperator(FunctionOperator):
    """A scipy ``LinearOperator`` as a :class:`FunctionOperator` whose ``has_rmv`` asks scipy."""

    def __init__(self, matvec, rmatvec, *, like_in, like_out, norm_bound, _adjoint):
        super().__init__(matvec, rmatvec, like_in=like_in, like_out=like_out, norm_bound=norm_bound)
        self._adjoint = _adjoint

    @property
    def has_rmv(self) -> bool:
        return self._adjoint()

    def rmv(self, y):
        if not self.has_rmv:
            raise NotImplementedError(
                "this scipy LinearOperator has no rmatvec (no adjoint); products A^T u are not available"
            )
        return super().rmv(y)


def _real_product(out, dtype, size, name):
    """A scipy operator's product as a real array of ``dtype``; complex values are refused
    (casting would drop their imaginary parts, with only a warning)."""
    out = np.asarray(out)
    if np.iscomplexobj(out):
        raise TypeError(
            f"the scipy LinearOperator's {name} returned complex values (dtype {out.dtype}) though it "
            f"declares dtype {dtype}; rbpsolve solves real systems: return real arrays (or solve the "
            f"real and imaginary parts as two real systems)"
        )
    return np.asarray(out, dtype=dtype).reshape(size)


def to_scipy(op: Operator):
    """``op`` as a ``scipy.sparse.linalg.LinearOperator`` on flattened numpy vectors
    (the body of :meth:`Operator.to_scipy`)."""
    from scipy.sparse.linalg import LinearOperator

    n_in, n_out = op.in_space.size, op.out_space.size
    dtype = _backend.numpy_dtype(op.xp, op.dtype)

    def apply(product, source):
        def call(v):
            x = source.from_numpy(np.asarray(v, dtype=dtype))
            return _backend.to_numpy(product(x)).reshape(-1)

        return call

    kwargs = {}
    if op.has_mv:
        kwargs["matvec"] = apply(op.mv, op.in_space)
    else:
        kwargs["matvec"] = _missing("A v products (a jvp/matvec)")
    if op.has_rmv:
        kwargs["rmatvec"] = apply(op.rmv, op.out_space)
    return LinearOperator((n_out, n_in), dtype=dtype, **kwargs)


def _missing(what):
    def call(_):
        raise NotImplementedError(f"this operator has no {what}")

    return call
