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

import math


import numpy as np

from . import _backend

__all__ = [
    "Operator",
    "JacobianOperator",
    "FunctionOperator",
    "MatrixOperator",
    "Identity",
    "IdentityMinus",
    "aslinearoperator",
    "dottest",
]


class ProductCounter:
    """Counts forward (``J v``, "jvp") and transpose (``J^T u``, "vjp") leaf products."""

    __slots__ = ("jvp", "vjp")

    def __init__(self):
        self.jvp = 0
        self.vjp = 0


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
        from scipy.sparse.linalg import LinearOperator

        n_in, n_out = self.in_space.size, self.out_space.size
        dtype = _backend.to_numpy(self.in_space.zeros()).dtype

        def apply(product, source, target):
            def call(v):
                x = source.from_numpy(np.asarray(v, dtype=dtype))
                return _backend.to_numpy(product(x)).reshape(-1)

            return call

        kwargs = {}
        if self.has_mv:
            kwargs["matvec"] = apply(self.mv, self.in_space, self.out_space)
        else:
            kwargs["matvec"] = _missing("A v products (a jvp/matvec)")
        if self.has_rmv:
            kwargs["rmatvec"] = apply(self.rmv, self.out_space, self.in_space)
        return LinearOperator((n_out, n_in), dtype=dtype, **kwargs)

    def to_dense(self) -> np.ndarray:
        """The operator as a dense numpy matrix of shape (out size, in size), float64.

        Costs one product per column (or per row, through ``rmv``, if there is no ``mv``).
        Meant for tests and small diagnostics.
        """
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


def _missing(what):
    def call(_):
        raise NotImplementedError(f"this operator has no {what}")

    return call


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
    """

    _forward_name = "matvec"
    _transpose_name = "rmatvec"

    def __init__(self, matvec, rmatvec=None, *, like_in, like_out=None, norm_bound=None, _counter=None):
        if matvec is not None and not callable(matvec):
            raise TypeError(f"{self._forward_name} must be callable; got {type(matvec).__name__}")
        if rmatvec is not None and not callable(rmatvec):
            raise TypeError(f"{self._transpose_name} must be callable; got {type(rmatvec).__name__}")
        if matvec is None and rmatvec is None:
            raise ValueError(f"give at least one of {self._forward_name} and {self._transpose_name}")
        norm_bound = check_norm_bound(norm_bound)
        self._matvec = matvec
        self._rmatvec = rmatvec
        self.in_space = like_in if isinstance(like_in, _Space) else _Space.like(like_in, "like_in")
        if like_out is None:
            self.out_space = self.in_space
        else:
            self.out_space = like_out if isinstance(like_out, _Space) else _Space.like(like_out, "like_out")
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
        return _checked(self._matvec(x), self.out_space, self._forward_name)

    def rmv(self, y):
        if self._rmatvec is None:
            raise NotImplementedError(
                f"this operator was built without {self._transpose_name}=; products A^T u are not available"
            )
        if self._counter is not None:
            self._counter.vjp += 1
        return _checked(self._rmatvec(y), self.in_space, self._transpose_name)


def _checked(out, space: _Space, name: str):
    shape = getattr(out, "shape", None)
    if shape is None:
        raise TypeError(f"{name} returned {type(out).__name__}, not an array")
    library = _library_of(out)
    if library is not space.xp:
        kind = f"{type(out).__module__.split('.')[0]}.{type(out).__name__}"
        raise TypeError(
            f"{name} returned a {kind} but the operator works on {_backend.describe_namespace(space.xp)} "
            f"arrays; return an array of the library of its `like` array (convert inside the callback)"
        )
    if tuple(shape) != space.shape:
        raise ValueError(
            f"{name} returned an array of shape {tuple(shape)} but the operator maps to arrays of "
            f"shape {space.shape}; the callback must return an array shaped like its `like` array"
        )
    if out.dtype != space.dtype:
        # Rebuilding the operator in the returned dtype is a fix only for a real floating dtype.
        rebuild = (
            f" or build the operator with a `like` array of {out.dtype}"
            if _backend.is_real_floating(space.xp, out.dtype)
            else ""
        )
        raise TypeError(
            f"{name} returned dtype {out.dtype} but the operator works in {space.dtype}; "
            f"cast inside the callback{rebuild}"
        )
    return out


def _library_of(out):
    try:
        return _backend.namespace(out)
    except TypeError:
        return None


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

    def __init__(self, vjp, jvp=None, *, like, norm_bound=None):
        if vjp is None:
            raise ValueError("vjp is required: rbpsolve solves (I - J^T) z = g with products J^T u")
        space = like if isinstance(like, _Space) else _Space.like(like, "like")
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
        return _checked(self.xp.matmul(self.a, x), self.out_space, "matvec")

    def rmv(self, y):
        if self._counter is not None:
            self._counter.vjp += 1
        return _checked(self.xp.matmul(self.xp.matrix_transpose(self.a), y), self.in_space, "rmatvec")


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
            _require_same(self.in_space, other.in_space, "I", "the operator")
            _require_same(self.out_space, other.out_space, "I", "the operator")
            return IdentityMinus(other)
        return NotImplemented


# ----------------------------------------------------------------------------- algebra
def _require_same(a: _Space, b: _Space, left: str, right: str):
    if a.xp is not b.xp:
        raise TypeError(
            f"{left} uses {_backend.describe_namespace(a.xp)} arrays but {right} uses "
            f"{_backend.describe_namespace(b.xp)}; build both from arrays of one library"
        )
    if a.shape != b.shape:
        raise ValueError(f"{left} acts on arrays of shape {a.shape} but {right} on shape {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"{left} works in {a.dtype} but {right} in {b.dtype}; build both with one dtype")
    if str(a.device) != str(b.device):
        raise ValueError(f"{left} lives on device {a.device} but {right} on {b.device}; move one of them")


class Transpose(Operator):
    """``A^T``: swaps ``mv`` and ``rmv``."""

    def __init__(self, op: Operator):
        self.op = op
        self.in_space = op.out_space
        self.out_space = op.in_space

    @property
    def T(self):
        return self.op

    @property
    def has_mv(self):
        return self.op.has_rmv

    @property
    def has_rmv(self):
        return self.op.has_mv

    @property
    def norm_bound(self):
        return self.op.norm_bound

    def mv(self, x):
        return self.op.rmv(x)

    def rmv(self, y):
        return self.op.mv(y)

    def with_counter(self, counter):
        return Transpose(self.op.with_counter(counter))


class Scaled(Operator):
    """``c A`` for a real scalar ``c``."""

    def __init__(self, scale: float, op: Operator):
        if not math.isfinite(scale):
            raise ValueError(f"the scale of an operator must be finite; got {scale}")
        self.scale = float(scale)
        self.op = op
        self.in_space = op.in_space
        self.out_space = op.out_space

    @property
    def has_mv(self):
        return self.op.has_mv

    @property
    def has_rmv(self):
        return self.op.has_rmv

    @property
    def norm_bound(self):
        q = self.op.norm_bound
        return None if q is None else abs(self.scale) * q

    def mv(self, x):
        return self.scale * self.op.mv(x)

    def rmv(self, y):
        return self.scale * self.op.rmv(y)

    def with_counter(self, counter):
        return Scaled(self.scale, self.op.with_counter(counter))


class Sum(Operator):
    """``A + B``."""

    def __init__(self, a: Operator, b: Operator):
        _require_same(a.in_space, b.in_space, "the left operand", "the right operand")
        _require_same(a.out_space, b.out_space, "the left operand", "the right operand")
        self.a, self.b = a, b
        self.in_space = a.in_space
        self.out_space = a.out_space

    @property
    def has_mv(self):
        return self.a.has_mv and self.b.has_mv

    @property
    def has_rmv(self):
        return self.a.has_rmv and self.b.has_rmv

    @property
    def norm_bound(self):
        qa, qb = self.a.norm_bound, self.b.norm_bound
        return None if qa is None or qb is None else qa + qb

    def mv(self, x):
        return self.a.mv(x) + self.b.mv(x)

    def rmv(self, y):
        return self.a.rmv(y) + self.b.rmv(y)

    def with_counter(self, counter):
        return Sum(self.a.with_counter(counter), self.b.with_counter(counter))


class Composed(Operator):
    """``A @ B``: first ``B``, then ``A``."""

    def __init__(self, a: Operator, b: Operator):
        _require_same(a.in_space, b.out_space, "the left factor's input", "the right factor's output")
        self.a, self.b = a, b
        self.in_space = b.in_space
        self.out_space = a.out_space

    @property
    def has_mv(self):
        return self.a.has_mv and self.b.has_mv

    @property
    def has_rmv(self):
        return self.a.has_rmv and self.b.has_rmv

    @property
    def norm_bound(self):
        qa, qb = self.a.norm_bound, self.b.norm_bound
        return None if qa is None or qb is None else qa * qb

    def mv(self, x):
        return self.a.mv(self.b.mv(x))

    def rmv(self, y):
        return self.b.rmv(self.a.rmv(y))

    def with_counter(self, counter):
        return Composed(self.a.with_counter(counter), self.b.with_counter(counter))


class IdentityMinus(Operator):
    """``I - M`` for a square ``M``; ``solve_adjoint`` solves with ``IdentityMinus(J.T)``.

    FixedPoint and Neumann recognise this form and iterate with ``M`` directly, which
    avoids the cancellation of computing ``x - (x - M x)``.
    """

    def __init__(self, op: Operator):
        if not op.is_square:
            raise ValueError(
                f"I - M needs a square M; this one maps shape {op.in_shape} to {op.out_shape}"
            )
        self.op = op
        self.in_space = op.in_space
        self.out_space = op.out_space

    @property
    def T(self):
        return IdentityMinus(Transpose(self.op))

    @property
    def has_mv(self):
        return self.op.has_mv

    @property
    def has_rmv(self):
        return self.op.has_rmv

    @property
    def norm_bound(self):
        q = self.op.norm_bound
        return None if q is None else 1.0 + q

    @property
    def inverse_norm_bound(self) -> float | None:
        """``1 / (1 - q)`` bounds ``||(I - M)^{-1}||`` when ``||M|| <= q < 1``."""
        q = self.op.norm_bound
        return None if q is None or q >= 1 else 1.0 / (1.0 - q)

    def mv(self, x):
        return x - self.op.mv(x)

    def rmv(self, y):
        return y - self.op.rmv(y)

    def with_counter(self, counter):
        return IdentityMinus(self.op.with_counter(counter))


def iteration_operator(a: Operator) -> Operator:
    """``M`` with ``A = I - M``: the operator stationary iterations multiply by."""
    if isinstance(a, IdentityMinus):
        return a.op
    return IdentityMinus(a)


# ----------------------------------------------------------------------------- interop
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
