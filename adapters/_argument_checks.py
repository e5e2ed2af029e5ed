"""Argument checks the framework adapters share (no framework imported here)."""

from __future__ import annotations

import math

__all__ = ["positive_int", "positive_float", "check_entry_budget"]


def positive_int(name: str, value) -> int:
    """``value`` if it is an int >= 1 (not a bool), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def positive_float(name: str, value) -> float:
    """``float(value)`` if it is a finite number > 0 (not a bool); TypeError or ValueError naming ``name``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number; got {value!r}") from None
    if isinstance(value, bool) or not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return out


def check_entry_budget(size: int, max_size: int, what: str) -> None:
    """Refuse a regulariser that needs J's entries (one VJP each) on more than ``max_size`` of them."""
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be a positive int; got {max_size!r}")
    if size > max_size:
        raise ValueError(
            f"this regulariser needs J's entries: one VJP per entry of the {what} ({size} here), above "
            f"max_size={max_size}. Raise max_size if that cost is acceptable, pass batch_axis if the samples "
            "are independent (then the cost is one sample's size), or use jacobian_frobenius or "
            "smallest_eigenvalue_penalty, whose cost does not grow with the state"
        )
