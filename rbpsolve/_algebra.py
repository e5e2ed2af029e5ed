"""The algebra of operators: ``A.T``, ``c A``, ``A + B``, ``A @ B`` and ``I - M``."""

from __future__ import annotations

import math

from ._checks import check_same_space
from ._operator import Operator

__all__ = ["Wrapped", "Transpose", "Scaled", "Sum", "Composed", "IdentityMinus", "iteration_operator"]


class Wrapped(Operator):
    """What an operator built from one, ``op``, has unless it says otherwise: ``op``'s
    spaces, products and norm bound, and a counted copy made of a counted ``op``
    (:meth:`rewrap` builds the same wrapper around another operator)."""

    def __init__(self, op: Operator):
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
        return self.op.norm_bound

    def rewrap(self, op: Operator) -> "Wrapped":
        return type(self)(op)

    def with_counter(self, counter):
        return self.rewrap(self.op.with_counter(counter))


class Transpose(Wrapped):
    """``A^T``: swaps ``mv`` and ``rmv``."""

    def __init__(self, op: Operator):
        super().__init__(op)
        self.in_space, self.out_space = op.out_space, op.in_space

    @property
    def T(self):
        return self.op

    @property
    def has_mv(self):
        return self.op.has_rmv

    @property
    def has_rmv(self):
        return self.op.has_mv

    def mv(self, x):
        return self.op.rmv(x)

    def rmv(self, y):
        return self.op.mv(y)


class Scaled(Wrapped):
    """``c A`` for a real scalar ``c``."""

    def __init__(self, scale: float, op: Operator):
        if not math.isfinite(scale):
            raise ValueError(f"the scale of an operator must be finite; got {scale}")
        super().__init__(op)
        self.scale = float(scale)

    @property
    def norm_bound(self):
        q = self.op.norm_bound
        return None if q is None else abs(self.scale) * q

    def mv(self, x):
        return self.scale * self.op.mv(x)

    def rmv(self, y):
        return self.scale * self.op.rmv(y)

    def rewrap(self, op):
        return Scaled(self.scale, op)


class _Pair(Operator):
    """What an operator built from two, ``a`` and ``b``, has: a product when both have it,
    and a counted copy made of counted copies of the two."""

    def __init__(self, a: Operator, b: Operator):
        self.a, self.b = a, b

    @property
    def has_mv(self):
        return self.a.has_mv and self.b.has_mv

    @property
    def has_rmv(self):
        return self.a.has_rmv and self.b.has_rmv

    def with_counter(self, counter):
        return type(self)(self.a.with_counter(counter), self.b.with_counter(counter))


class Sum(_Pair):
    """``A + B``."""

    def __init__(self, a: Operator, b: Operator):
        check_same_space(a.in_space, b.in_space, "the left operand", "the right operand")
        check_same_space(a.out_space, b.out_space, "the left operand", "the right operand")
        super().__init__(a, b)
        self.in_space = a.in_space
        self.out_space = a.out_space

    @property
    def norm_bound(self):
        qa, qb = self.a.norm_bound, self.b.norm_bound
        return None if qa is None or qb is None else qa + qb

    def mv(self, x):
        return self.a.mv(x) + self.b.mv(x)

    def rmv(self, y):
        return self.a.rmv(y) + self.b.rmv(y)


class Composed(_Pair):
    """``A @ B``: first ``B``, then ``A``."""

    def __init__(self, a: Operator, b: Operator):
        check_same_space(a.in_space, b.out_space, "the left factor's input", "the right factor's output")
        super().__init__(a, b)
        self.in_space = b.in_space
        self.out_space = a.out_space

    @property
    def norm_bound(self):
        qa, qb = self.a.norm_bound, self.b.norm_bound
        return None if qa is None or qb is None else qa * qb

    def mv(self, x):
        return self.a.mv(self.b.mv(x))

    def rmv(self, y):
        return self.b.rmv(self.a.rmv(y))


class IdentityMinus(Wrapped):
    """``I - M`` for a square ``M``; ``solve_adjoint`` solves with ``IdentityMinus(J.T)``.

    FixedPoint and Neumann recognise this form and iterate with ``M`` directly, which
    avoids the cancellation of computing ``x - (x - M x)``.
    """

    def __init__(self, op: Operator):
        if not op.is_square:
            raise ValueError(
                f"I - M needs a square M; this one maps shape {op.in_shape} to {op.out_shape}"
            )
        super().__init__(op)

    @property
    def T(self):
        return IdentityMinus(Transpose(self.op))

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


def iteration_operator(a: Operator) -> Operator:
    """``M`` with ``A = I - M``: the operator stationary iterations multiply by."""
    if isinstance(a, IdentityMinus):
        return a.op
    return IdentityMinus(a)
