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

__all__ = ["right_hand_side_scale", "sample_scales", "scale_array", "scale_samples", "unscale_result"]


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
    return _exponent(amax, _exponent_range(xp, b.dtype) // 2), amax


def _exponent(amax: float, half: int) -> int:
    """The ``k`` of :func:`right_hand_side_scale` for a largest entry ``amax``."""
    if amax == 0.0 or not math.isfinite(amax):
        return 0
    exponent = math.frexp(amax)[1]  # amax = m * 2**exponent with m in [0.5, 1)
    return 0 if -half <= exponent <= half else exponent


def sample_scales(xp, b) -> tuple[list, list]:
    """``(k, max |b_i|)`` of each sample of a batch (samples on axis 0), one transfer: a
    batch is as many systems, each scaled on its own (one scale for the batch would push
    a sample far smaller than the largest below the dtype's range)."""
    size = b.shape[0]
    if size == 0 or math.prod(b.shape) == 0:
        return [0] * size, [0.0] * size
    amax = xp.abs(b) if b.ndim == 1 else xp.max(xp.abs(b), axis=tuple(range(1, b.ndim)))
    values = _backend.to_host(xp, amax)
    half = _exponent_range(xp, b.dtype) // 2
    return [_exponent(v, half) for v in values], values


def scale_samples(xp, x, ks):
    """``x_i * 2**ks[i]`` for each sample (axis 0), exact, in steps that no scalar of the
    dtype overflows (as :func:`scale_array`, one factor a sample)."""
    remaining = [int(k) for k in ks]
    step = max(1, _exponent_range(xp, x.dtype) - 1)
    shape = (len(remaining),) + (1,) * (x.ndim - 1)
    while any(remaining):
        parts = [max(-step, min(step, k)) for k in remaining]
        factors = xp.asarray([math.ldexp(1.0, p) for p in parts], dtype=x.dtype, device=_backend.device_of(x))
        x = x * xp.reshape(factors, shape)
        remaining = [k - p for k, p in zip(remaining, parts)]
    return x


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
