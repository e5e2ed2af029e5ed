"""Scale-safe solves: the right-hand side is normalised by a power of two, once.

A right-hand side whose entries are tiny (float32 ``1e-23``, float64 ``1e-170``) has a
norm whose square underflows to zero, and one with huge entries a norm that overflows;
the solvers would then "converge" at ``x = 0`` or compare against an infinite tolerance.
The system is linear, so ``A x = b`` is solved as ``A x' = b / s`` and ``x = s x'``.
With ``s`` a power of two both scalings are exact (only the exponent changes), so a
well-scaled ``b`` gives bit-for-bit the answer of an unscaled solve; ``s`` is chosen only
when ``max |b_i|`` leaves the range where ``norm(b)`` is safe. This costs two array
scalings a solve instead of an overflow-safe (nrm2-style) norm at every step.
"""

from __future__ import annotations

import dataclasses
import math

from . import _backend

__all__ = ["right_hand_side_scale", "scale_array", "unscale_result"]


def _exponent_range(xp, dtype) -> int:
    """``e`` with ``2**e`` about the square root of the dtype's largest number."""
    return int(math.log2(float(xp.finfo(dtype).max))) // 2


def right_hand_side_scale(xp, b) -> tuple[int, float]:
    """``(k, max |b_i|)``: solve with ``b * 2**-k``; ``k = 0`` when ``b`` is safe as it is.

    Safe means ``max |b_i|`` within ``2**(+-e/2)`` where ``2**e`` is about the square root
    of the dtype's largest number: then ``norm(b)**2`` neither underflows nor overflows
    for any size a machine holds (float64: ``2**+-256``, float32: ``2**+-32``).
    """
    if math.prod(b.shape) == 0:
        return 0, 0.0  # an empty state: nothing to solve
    amax = _backend.to_float(xp.max(xp.abs(b)))
    if amax == 0.0 or not math.isfinite(amax):
        return 0, amax
    half = _exponent_range(xp, b.dtype) // 2
    exponent = math.frexp(amax)[1]  # amax = m * 2**exponent with m in [0.5, 1)
    if -half <= exponent <= half:
        return 0, amax
    return exponent, amax


def scale_array(xp, x, k: int):
    """``x * 2**k``, exact, in steps that no scalar of the dtype overflows."""
    if k == 0:
        return x
    step = max(1, _exponent_range(xp, x.dtype) - 1)
    while k != 0:
        part = max(-step, min(step, k))
        x = x * math.ldexp(1.0, part)
        k -= part
    return x


# Result.info entries measured in the units of b (the rest are ratios).
_SCALED_INFO = ("attainable", "prior_bound", "xnorm", "arnorm")


def unscale_result(result, k: int, xp):
    """The :class:`~rbpsolve.Result` of the scaled system, for the original one."""
    if k == 0:
        return result
    s = math.ldexp(1.0, k)

    def back(value):
        return None if value is None else value * s

    info = dict(result.info)
    for key in _SCALED_INFO:
        if info.get(key) is not None:
            info[key] = back(info[key])
    return dataclasses.replace(
        result,
        x=scale_array(xp, result.x, k),
        history=tuple(h * s for h in result.history),
        residual_norm=back(result.residual_norm),
        b_norm=back(result.b_norm),
        error_bound=back(result.error_bound),
        error_estimate=back(result.error_estimate),
        info=info,
    )
