"""Checks behind every claim of a result: the true residual, the rounding floor below
which no residual can be certified, and whether a fixed budget's series was converging."""

from __future__ import annotations

import math

from . import _backend
from ._algebra import IdentityMinus
from ._precision import product_eps

__all__ = ["true_residual", "series_not_converging", "FLOOR_FACTOR", "LIMIT_FACTOR"]

# The rounding level of a recomputed residual is about eps * (||b|| + ||A x||) times a
# small constant (the product's own rounding, the subtraction); FLOOR_FACTOR is that
# constant. A verified residual within LIMIT_FACTOR of the floor is as good as the dtype
# allows: a tolerance below the floor is then reported as Status.ACCURACY_LIMIT.
FLOOR_FACTOR = 8.0
LIMIT_FACTOR = 10.0


def true_residual(a, b, x):
    """``(r, norm(r), floor)`` with ``r = b - A x``: one product, one host transfer.

    ``floor = FLOOR_FACTOR * eps * (norm(b) + norm(A x) [+ norm(x) for A = I - M])`` is
    the rounding level of ``r`` as computed; for ``A = I - M`` the product ``A x = x - M x``
    can cancel, so ``norm(x)`` enters too.
    """
    r, values, eps = residual_norms(a, b, x)
    return r, values[0], float(rounding_floor(eps, values[1:]))


def residual_norms(a, b, x):
    """``(r, values, eps)``: ``r = b - A x`` (one product) and, in one transfer, the norms
    of ``r``, ``b``, ``A x`` (and ``x`` for ``A = I - M``), flat (a batched operator gives
    one value a sample for each), with the ``eps`` of the products."""
    xp = a.xp
    ax = a.mv(x)
    r = b - ax
    requests = [(r,), (b,), (ax,)] + ([(x,)] if isinstance(a, IdentityMinus) else [])
    scalars = _backend.reductions(xp, *requests)  # one all-reduce on a split state
    # The products' precision, which is coarser than b's where they run in float16/bfloat16.
    eps = max(float(xp.finfo(b.dtype).eps), product_eps(a))
    return r, _backend.to_host(xp, *scalars), eps


def rounding_floor(eps: float, norms):
    """``FLOOR_FACTOR * eps * sum(norms)``: the rounding level of a recomputed residual
    (over the first axis of a ``(k, batch)`` array of norms, one floor a sample)."""
    if isinstance(norms, list):
        return FLOOR_FACTOR * eps * math.fsum(norms)
    return FLOOR_FACTOR * eps * norms.sum(axis=0)


def series_not_converging(norms, eps: float) -> bool:
    """Whether the residual norms of a fixed budget's series say it was not converging.

    ``norms[0]`` is the residual of the start and ``norms[k]`` that of the ``k``-th
    partial sum (FixedPoint: of the ``k``-th iterate). Not converging means either the
    last is no smaller than the first (the sum is no better than the start: for ``x0 = 0``
    no better than ``x = 0``) or the last is larger than the one half-way through the
    budget (the terms grow at the end). A contraction (``||J|| < 1``) shrinks every term,
    so neither can happen; ``rho(J) > 1`` makes the terms grow; a non-normal ``J`` with
    ``rho(J) < 1`` may grow for a while, and if it still does at the end of the budget the
    tail of the series is not small and the truncated sum is no approximation. Both
    comparisons allow the rounding of the terms (``4 k eps`` relative after ``k`` terms
    of a dtype with precision ``eps``), so that ``||J|| = 1`` exactly is not converging.
    """
    norms = [float(v) for v in norms]
    if len(norms) < 2 or not all(math.isfinite(v) for v in norms):
        return False
    first, last = norms[0], norms[-1]
    # Terms at the rounding level of the sum (FixedPoint's update x_{k+1} - x_k cancels to
    # about eps * ||x||, and ||x|| <= the sum of the terms) say the series has converged.
    if last <= 16.0 * eps * sum(norms):
        return False
    slack = 1.0 - 4.0 * len(norms) * eps
    if last >= first * slack:
        return True
    middle = norms[(len(norms) - 1) // 2]
    return len(norms) >= 3 and last > middle * slack
