"""Low precision (float16, bfloat16): products in the input dtype, everything else in float32.

Mixed-precision training hands the adjoint solve float16 or bfloat16 states. Their
Krylov recurrences and inner products cannot be trusted (bfloat16 has ``eps = 7.8e-3``
and only 8 bits of mantissa; a float16 norm overflows past 65504), so the solve runs on
float32 copies: each product casts its argument to the input dtype, calls the user's
callback there, and casts the answer back to float32 (:class:`Promoted`). The result is
returned in the input dtype. The residual verification and the rounding floor use the
input dtype's ``eps``, since that is the precision of every product.
"""

from __future__ import annotations

import numpy as np

from ._algebra import IdentityMinus, Wrapped
from ._operator import Operator
from ._space import _Space

__all__ = ["is_low_precision", "promote", "product_eps", "default_rtol", "Promoted", "DEFAULT_RTOL"]

# The default relative tolerance where float32 or float64 products allow it ...
DEFAULT_RTOL = 1e-5
# ... and, for low-precision products, this many times their eps (float16: 1.6e-2,
# bfloat16: 0.125): a product of a state of norm ||x|| carries an error of about
# eps * ||x||, and ||x|| is often several times ||b||.
LOW_PRECISION_RTOL_EPS = 16.0


def is_low_precision(xp, dtype) -> bool:
    """float16, bfloat16 and any other floating dtype narrower than 32 bits."""
    return xp.finfo(dtype).bits < 32


def default_rtol(eps: float) -> float:
    """The ``rtol`` of a solver built with ``rtol=None``, for products of precision ``eps``:
    ``1e-5``, or ``16 eps`` where that is larger (float16, bfloat16)."""
    return max(DEFAULT_RTOL, LOW_PRECISION_RTOL_EPS * eps)


class Promoted(Wrapped):
    """``A`` on float32 arrays: each product casts to ``A``'s dtype and back."""

    def __init__(self, op: Operator):
        super().__init__(op)
        self.in_space = _promoted_space(op.in_space)
        self.out_space = _promoted_space(op.out_space)
        self.product_eps = float(op.xp.finfo(op.in_space.dtype).eps)

    def mv(self, x):
        xp = self.xp
        return xp.astype(self.op.mv(xp.astype(x, self.op.in_space.dtype)), self.out_space.dtype)

    def rmv(self, y):
        xp = self.xp
        return xp.astype(self.op.rmv(xp.astype(y, self.op.out_space.dtype)), self.in_space.dtype)


def _promoted_space(space: _Space) -> _Space:
    return _Space(space.shape, space.xp.float32, space.device, space.xp)


def promote(a: Operator) -> Operator:
    """``a`` working on float32; ``I - M`` keeps its form (the series iterate with ``M``)."""
    if isinstance(a, IdentityMinus):
        return IdentityMinus(Promoted(a.op))
    return Promoted(a)


def product_eps(a) -> float:
    """The ``eps`` of the dtype the products of ``a`` (an operator or a forward map) are
    computed in."""
    inner = a.op if isinstance(a, IdentityMinus) else a
    eps = getattr(inner, "product_eps", None)
    if eps is not None:
        return eps
    return float(a.xp.finfo(a.in_space.dtype).eps)


def promote_map(F):
    """The forward map ``F`` (a :class:`~rbpsolve._forward._base.Map`) on float32 states."""
    from ._forward._base import Map

    xp, low = F.xp, F.in_space.dtype

    def on_float32(h):
        return xp.astype(F(xp.astype(h, low)), xp.float32)

    promoted = Map(on_float32, _promoted_space(F.in_space))
    promoted.product_eps = float(xp.finfo(low).eps)
    return promoted


def finite_cast(xp, x, dtype):
    """``x`` cast to ``dtype``, and whether it stayed finite (float16 overflows past 65504)."""
    with np.errstate(over="ignore"):  # numpy warns on the cast; the overflow is reported
        out = xp.astype(x, dtype)
    return out, bool(xp.all(xp.isfinite(out)))
