"""Matrix-free linear operators: Jacobians from VJP/JVP callbacks, and their algebra.

An operator maps arrays of ``in_shape`` to arrays of ``out_shape`` (any shapes: a batch
of states, a graph's node states, ...). The vector space is all of those elements:
inner products and norms run over every element. ``mv(x)`` is the product ``A x`` and
``rmv(y)`` the product ``A^T y``; a leaf built without one of them raises on use, and
``has_mv`` / ``has_rmv`` say so in advance.

Operators are immutable. The solve loop counts products by rebuilding the operator
with counting leaves (:meth:`Operator.with_counter`) for one solve, so nothing is kept
on the user's objects between solves.
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._checks import check_product, check_same_space
from ._space import ProductCounter, _Space, check_norm_bound
from ._sharding import Sharding

__all__ = [
    "Operator",
    "JacobianOperator",
    "FunctionOperator",
    "MatrixOperator",
    "Identity",
]


class Operator:
    """Base class of rbpsolve's linear operators.

    Subclasses define ``in_space``, ``out_space``, ``mv``, ``rmv``, ``has_mv``,
    ``has_rmv``, ``norm_bound`` and ``with_counter``. Users build operators with
    :class:`JacobianOperator`, :class:`FunctionOperator`, :class:`MatrixOperator`,
    :class:`Identity` and the algebra ``A.T``, ``A + B``, ``A - B``, ``c * A``,
    ``A @ B``, ``Identity(like) - A`` and ``A.normal()``.
    """

    in_space: _Space
    out_space: _Space

    # -- description -------------------------------------------------------------
    @property
    def in_shape(self) -> tuple:
        return self.in_space.shape

    @property
    def out_shape(self) -> tuple:
        return self.out_space.shape

    @property
    def dtype(self):
        return self.in_space.dtype

    @property
    def device(self):
        return self.in_space.device

    @property
    def xp(self):
        return self.in_space.xp

    @property
    def is_square(self) -> bool:
        return self.in_space.same_as(self.out_space)

    @property
    def norm_bound(self) -> float | None:
        """A known upper bound on the 2-norm of the operator, or None."""
        return None

    has_mv: bool = True
    has_rmv: bool = True

    def mv(self, x):
        raise NotImplementedError

    def rmv(self, y):
        raise NotImplementedError

    def with_counter(self, counter: ProductCounter) -> "Operator":
        raise NotImplementedError

    # -- algebra -------------------------------------------------------------------
    @property
    def T(self) -> "Operator":
        return Transpose(self)

    def __add__(self, other):
        if not isinstance(other, Operator):
            return NotImplemented
        return Sum(self, other)

    def __sub__(self, other):
        if not isinstance(other, Operator):
            return NotImplemented
        return Sum(self, Scaled(-1.0, other))

    def __neg__(self):
        return Scaled(-1.0, self)

    def __mul__(self, scalar):
        if isinstance(scalar, Operator) or not np.isscalar(scalar):
            return NotImplemented
        return Scaled(float(scalar), self)

    __rmul__ = __mul__

    def __matmul__(self, other):
        if not isinstance(other, Operator):
            return NotImplemented
        return Composed(self, other)

    def normal(self) -> "Operator":
        """The normal operator ``A^T A`` (symmetric positive semi-definite)."""
        return Composed(Transpose(self), self)

    # -- interop -------------------------------------------------------------------
    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` on flattened numpy vectors.

        For a non-numpy backend each product copies its vector to and from the host.
        """
        _refuse_sharded(self, "to_scipy")
        from ._interop import to_scipy  # _interop builds on this module: imported on use

        return to_scipy(self)

    def to_dense(self) -> np.ndarray:
        """The operator as a dense numpy matrix of shape (out size, in size), float64.

        Costs one product per column (or per row, through ``rmv``, if there is no ``mv``).
        Meant for tests and small diagnostics.
        """
        _refuse_sharded(self, "to_dense")
        n_in, n_out = self.in_space.size, self.out_space.size
        if self.has_mv:
            cols = []
            for j in range(n_in):
                e = np.zeros(n_in)
                e[j] = 1.0
                cols.append(_backend.to_numpy(self.mv(self.in_space.from_numpy(e))).reshape(-1))
            return np.asarray(np.stack(cols, axis=1), dtype=np.float64)
        rows = []
        for i in range(n_out):
            e = np.zeros(n_out)
            e[i] = 1.0
            rows.append(_backend.to_numpy(self.rmv(self.out_space.from_numpy(e))).reshape(-1))
        return np.asarray(np.stack(rows, axis=0), dtype=np.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape}, dtype={self.dtype})"


# ----------------------------------------------------------------------------- leaves
class FunctionOperator(Operator):
    """A general linear operator known through callbacks.

    Parameters
    ----------
    matvec : callable
        ``matvec(x)`` returns ``A x`` for ``x`` shaped like ``like_in``, as an array shaped
        like ``like_out``.
    rmatvec : callable, optional
        ``rmatvec(y)`` returns ``A^T y``. Needed by LSQR, CGNE and the dot test.
    like_in : array
        An array whose shape, dtype, device and namespace ``x`` has. Only its metadata is kept.
    like_out : array, optional
        The same for ``A x``; defaults to ``like_in`` (a square operator).
    norm_bound : float, optional
        A known upper bound on the 2-norm of ``A`` (used for error bounds).
    sharding : Sharding, optional
        ``like_in`` (and ``like_out``) are this process's blocks of arrays split over
        processes; the callbacks map blocks to blocks. See :class:`~rbpsolve.Sharding`.
    """

    _forward_name = "matvec"
    _transpose_name = "rmatvec"

    def __init__(self, matvec, rmatvec=None, *, like_in, like_out=None, norm_bound=None, sharding=None,
                 _counter=None):
        if matvec is not None and not callable(matvec):
            raise TypeError(f"{self._forward_name} must be callable; got {type(matvec).__name__}")
        if rmatvec is not None and not callable(rmatvec):
            raise TypeError(f"{self._transpose_name} must be callable; got {type(rmatvec).__name__}")
        if matvec is None and rmatvec is None:
            raise ValueError(f"give at least one of {self._forward_name} and {self._transpose_name}")
        norm_bound = check_norm_bound(norm_bound)
        self._matvec = matvec
        self._rmatvec = rmatvec
        self.in_space = like_in if isinstance(like_in, _Space) else _Space.like(like_in, "like_in", sharding)
        if like_out is None:
            self.out_space = self.in_space
        else:
            self.out_space = like_out if isinstance(like_out, _Space) else _Space.like(like_out, "like_out", sharding)
        self._norm_bound = norm_bound
        self._counter = _counter

    def _replace(self, **changes):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    @property
    def has_mv(self) -> bool:
        return self._matvec is not None

    @property
    def has_rmv(self) -> bool:
        return self._rmatvec is not None

    @property
    def norm_bound(self):
        return self._norm_bound

    def with_norm_bound(self, q: float):
        """A copy that declares ``q`` an upper bound on the operator's 2-norm."""
        return self._replace(_norm_bound=check_norm_bound(q))

    def with_counter(self, counter):
        return self._replace(_counter=counter)

    def mv(self, x):
        if self._matvec is None:
            raise NotImplementedError(
                f"this operator was built without {self._forward_name}=; products A v are not available"
            )
        if self._counter is not None:
            self._counter.jvp += 1
        return check_product(self._matvec(x), self.out_space, self._forward_name)

    def rmv(self, y):
        if self._rmatvec is None:
            raise NotImplementedError(
                f"this operator was built without {self._transpose_name}=; products A^T u are not available"
            )
        if self._counter is not None:
            self._counter.vjp += 1
        return check_product(self._rmatvec(y), self.in_space, self._transpose_name)


class JacobianOperator(FunctionOperator):
    """The Jacobian J = dF/dh of an update h -> F(h) at a fixed point, from callbacks.

    Parameters
    ----------
    vjp : callable
        ``vjp(u)`` returns ``J^T u`` (a vector-Jacobian product, reverse mode).
    jvp : callable, optional
        ``jvp(v)`` returns ``J v`` (a Jacobian-vector product, forward mode). Needed by
        CGNE and LSQR on ``I - J^T`` and by the norm estimate.
    like : array
        An array shaped like the state h (any shape); its shape, dtype, device and
        namespace are those of ``u`` and ``v``. Only its metadata is kept.
    norm_bound : float, optional
        A known upper bound ``q`` on ``||J||_2`` (for example a Lipschitz constant of F
        in h). With ``q < 1``, results carry rigorous error bounds (Proposition 2 of
        Liao et al. 2018).
    sharding : Sharding, optional
        ``like`` is this process's block of a state split over processes (a graph's
        nodes partitioned over ranks, say): ``vjp`` and ``jvp`` map blocks to blocks,
        exchanging what they need with the other ranks themselves, and the solvers'
        inner products and norms are completed by the sharding's all-reduce, so that
        every rank gets its block of the single-process answer and stops at the same
        step. Solve on every rank together. See :class:`~rbpsolve.Sharding`.

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> W = np.array([[0.5, 0.2], [0.0, 0.3]])
    >>> J = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(2))
    >>> res = rbpsolve.solve_adjoint(J, np.ones(2), rbpsolve.GMRES(rtol=1e-12))
    >>> bool(np.allclose((np.eye(2) - W.T) @ res.x, np.ones(2)))
    True
    """

    _forward_name = "jvp"
    _transpose_name = "vjp"

    def __init__(self, vjp, jvp=None, *, like, norm_bound=None, sharding: Sharding | None = None):
        if vjp is None:
            raise ValueError("vjp is required: rbpsolve solves (I - J^T) z = g with products J^T u")
        space = like if isinstance(like, _Space) else _Space.like(like, "like", sharding)
        super().__init__(jvp, vjp, like_in=space, like_out=None, norm_bound=norm_bound)


class MatrixOperator(Operator):
    """A dense 2-D array ``a`` acting on 1-D vectors by ``a @ x`` (and ``a.T @ y``)."""

    def __init__(self, a, *, norm_bound=None, _counter=None):
        space = _Space.like(a, "a")
        if len(space.shape) != 2:
            raise ValueError(f"MatrixOperator needs a 2-D array; got shape {space.shape}")
        self.a = a
        self.in_space = _Space((space.shape[1],), space.dtype, space.device, space.xp)
        self.out_space = _Space((space.shape[0],), space.dtype, space.device, space.xp)
        self._norm_bound = check_norm_bound(norm_bound)
        self._counter = _counter

    @property
    def norm_bound(self):
        return self._norm_bound

    def with_counter(self, counter):
        return MatrixOperator(self.a, norm_bound=self._norm_bound, _counter=counter)

    def mv(self, x):
        if self._counter is not None:
            self._counter.jvp += 1
        return check_product(self.xp.matmul(self.a, x), self.out_space, "matvec")

    def rmv(self, y):
        if self._counter is not None:
            self._counter.vjp += 1
        return check_product(self.xp.matmul(self.xp.matrix_transpose(self.a), y), self.in_space, "rmatvec")


class Identity(Operator):
    """The identity on arrays shaped like ``like``. ``Identity(like) - J`` is ``I - J``."""

    def __init__(self, like):
        self.in_space = like if isinstance(like, _Space) else _Space.like(like, "like")
        self.out_space = self.in_space

    norm_bound = 1.0

    def mv(self, x):
        return x

    def rmv(self, y):
        return y

    def with_counter(self, counter):
        return self

    def __sub__(self, other):
        if isinstance(other, Operator):
            check_same_space(self.in_space, other.in_space, "I", "the operator")
            check_same_space(self.out_space, other.out_space, "I", "the operator")
            return IdentityMinus(other)
        return NotImplemented


def _refuse_sharded(op: "Operator", what: str) -> None:
    if op.in_space.sharding is not None or op.out_space.sharding is not None:
        raise ValueError(
            f"{what} needs the whole operator in one process, but this one acts on a state split over "
            f"processes (sharding=); build the operator from the whole state to inspect it"
        )


# The algebra's classes subclass Operator, whose methods build them: imported last.
from ._algebra import Composed, IdentityMinus, Scaled, Sum, Transpose  # noqa: E402
