"""Success rates with 95% Wilson score intervals, and the paper's Table 1 beside them."""

from __future__ import annotations

import math

from ..methods import METHODS, label

__all__ = ["wilson", "verdict", "SUCCESS_RATIO", "PAPER_TABLE1", "PAPER_NAMES"]

#: Table 1's criterion: a trial succeeds when its final training loss is below this share of the initial one.
SUCCESS_RATIO = 0.5


def verdict(initial: float, final: float, status: str | None, reason: str) -> tuple[str, str]:
    """``(status, reason)`` of a trial: "nan" for a non-finite final loss (or an earlier ``status``),
    else "success" or "failed" by :data:`SUCCESS_RATIO` of ``initial``."""
    if status is None and not math.isfinite(final):
        return "nan", "non-finite final loss"
    if status is not None:
        return status, reason
    ok = final < SUCCESS_RATIO * initial
    return ("success" if ok else "failed"), f"final/initial loss {final / initial:.3f} {'<' if ok else '>='} {SUCCESS_RATIO}"

#: Table 1 of Liao et al. (2018): success rate (%) per truncation, 100 trials a cell in the paper.
PAPER_TABLE1 = {
    "tbptt": {10: 100, 20: 100, 30: 100},
    "rbp": {10: 1, 20: 4, 30: 99},
    "cg_rbp": {10: 100, 20: 100, 30: 100},
    "neumann_rbp": {10: 100, 20: 100, 30: 100},
}
#: Display names, from the shared table (canonical names; map older ones with ``methods.canonical``).
PAPER_NAMES = {m: label(m) for m in METHODS}


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    r"""The Wilson score interval for a binomial proportion (95% by default).

    .. math::

        \frac{\hat p + z^2/2n \pm z \sqrt{\hat p (1 - \hat p)/n + z^2/4n^2}}{1 + z^2/n}

    Returns ``(low, high)`` in [0, 1]; ``(0, 1)`` for ``n = 0``.
    """
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n; got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
