"""scipy interoperability (``aslinearoperator``, ``Operator.to_scipy``) and the dot test."""

from __future__ import annotations

import numpy as np

from . import _backend
from ._operator import FunctionOperator, MatrixOperator, Operator

__all__ = ["aslinearoperator", "dottest"]


def aslinearoperator(obj, *, norm_bound=None) -> Operator:
    """An rbpsolve operator from a scipy ``LinearOperator``, a sparse or dense matrix.

    rbpsolve operators are returned unchanged. scipy operators and sparse matrices act on
    1-D float numpy vectors; a 2-D array of any array-API library becomes a
    :class:`MatrixOperator` in that library. The reverse conversion is
    :meth:`Operator.to_scipy`.
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
        if type(obj).__name__ == "_CustomLinearOperator":
            has_rmatvec = getattr(obj, "_CustomLinearOperator__rmatvec_impl", 1) is not None
        else:
            # scipy's rmatvec raises NotImplementedError unless a subclass defines _rmatvec
            # or _adjoint (scipy's own sparse and composite operators define one of them).
            cls = type(obj)
            has_rmatvec = (
                cls._rmatvec is not spla.LinearOperator._rmatvec or cls._adjoint is not spla.LinearOperator._adjoint
            )
        return FunctionOperator(
            lambda x: _real_product(obj.matvec(x), dtype, m, "matvec"),
            (lambda y: _real_product(obj.rmatvec(y), dtype, n, "rmatvec")) if has_rmatvec else None,
            like_in=np.zeros(n, dtype=dtype),
            like_out=np.zeros(m, dtype=dtype),
            norm_bound=norm_bound,
        )
    if hasattr(obj, "shape") and len(obj.shape) == 2:
        return MatrixOperator(obj, norm_bound=norm_bound)
    raise TypeError(
        "aslinearoperator takes an rbpsolve operator, a scipy LinearOperator, a scipy sparse matrix "
        f"or a 2-D array; got {type(obj).__name__}"
    )


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


def dottest(op: Operator, *, seed: int = 0, rtol: float | None = None, raise_error: bool = True) -> bool:
    """Check ``<A v, u> == <v, A^T u>`` on random vectors (the adjoint dot test).

    Parameters
    ----------
    op : Operator
        Needs both ``mv`` and ``rmv``.
    seed : int
        Seed of the random vectors (drawn in float64 on the host, then cast).
    rtol : float, optional
        Tolerance on ``|<A v, u> - <v, A^T u>| / (||A v|| ||u|| + ||v|| ||A^T u||)``;
        default ``eps ** (2/3)`` of the operator's dtype.
    raise_error : bool
        Raise ``AssertionError`` on a mismatch instead of returning False.

    Returns
    -------
    bool
        Whether the two inner products agree.
    """
    if not (op.has_mv and op.has_rmv):
        raise ValueError("the dot test needs both products A v and A^T u; this operator lacks one")
    xp = op.xp
    rng = np.random.default_rng(seed)
    v = op.in_space.from_numpy(rng.standard_normal(op.in_space.size))
    u = op.out_space.from_numpy(rng.standard_normal(op.out_space.size))
    av, atu = op.mv(v), op.rmv(u)
    lhs = _backend.to_float(_backend.vdot(xp, av, u))
    rhs = _backend.to_float(_backend.vdot(xp, v, atu))
    scale = _backend.to_float(_backend.norm(xp, av)) * _backend.to_float(_backend.norm(xp, u)) + _backend.to_float(
        _backend.norm(xp, v)
    ) * _backend.to_float(_backend.norm(xp, atu))
    if rtol is None:
        rtol = float(np.finfo(_backend.to_numpy(op.in_space.zeros()).dtype).eps) ** (2.0 / 3.0)
    error = abs(lhs - rhs) / scale if scale > 0 else abs(lhs - rhs)
    passed = bool(error <= rtol)
    if not passed and raise_error:
        raise AssertionError(
            f"dot test failed: <A v, u> = {lhs!r} but <v, A^T u> = {rhs!r} "
            f"(relative mismatch {error:.2e} > rtol {rtol:.2e}); the transpose product is not the adjoint"
        )
    return passed
