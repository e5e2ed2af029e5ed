"""GMRES's small problem on the host: the Hessenberg matrix of a cycle, reduced to upper
triangular form by Givens rotations as its columns arrive (float64)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._error_estimate import triangular_sigma_min
from .._protocol import StepReport

__all__ = ["Rotated", "cycle_updates", "back_substitute"]

_SINGULAR = 1e-13  # |R_kk| <= this * ||A v_k||: a singular Krylov space, a breakdown
_LUCKY = 1e-14  # subdiagonal <= this * |R_kk|: an invariant Krylov space


class Rotated(NamedTuple):
    """The rotated Hessenberg matrix ``R`` of one GMRES cycle and the rotated ``beta e_1``.

    columns : tuple of arrays
        Column ``j`` of ``R`` (length ``j + 1``).
    cosines, sines : tuple of float
        The rotations, one a column.
    rhs : tuple of float
        ``Q^T beta e_1``; ``|rhs[-1]|`` is the residual norm of the cycle's best iterate.
    estimates : tuple of float
        That residual norm after each column.
    stop : tuple or None
        ``(index, verdict)`` of the column that ended the cycle early (``"lucky"``,
        ``"singular"``, ``"nonfinite"``), from :meth:`absorb_all`.
    steps : int
        How many columns were offered (the steps the cycle took).
    """

    columns: tuple = ()
    cosines: tuple = ()
    sines: tuple = ()
    rhs: tuple = ()
    estimates: tuple = ()
    stop: tuple | None = None
    steps: int = 0

    @staticmethod
    def empty() -> "Rotated":
        return Rotated()

    @staticmethod
    def start(beta: float) -> "Rotated":
        """A cycle starting from a residual of norm ``beta``."""
        return Rotated(rhs=(float(beta),))

    @property
    def width(self) -> int:
        return len(self.columns)

    @property
    def estimate(self) -> float:
        return abs(self.rhs[-1]) if self.rhs else math.inf

    def absorb(self, column, scale: float = 0.0) -> tuple["Rotated", str]:
        """Add Hessenberg column ``k`` (length ``k + 2``, the last entry the subdiagonal).

        ``scale``: the size of the quantities the column was computed from, where it
        exceeds the column's own norm (for ``A = I - M``, ``1 + ||M v_k||``: the entries
        ``1 - h_kk`` carry rounding of that size), so that "singular" means singular to
        rounding.

        Returns the grown matrix and a verdict: ``"ok"``, ``"lucky"`` (an invariant Krylov
        space: the cycle's answer is exact), or, leaving the matrix as it was,
        ``"singular"`` (the column depends on the earlier ones to rounding) or
        ``"nonfinite"`` (the product or its norm overflowed).
        """
        column = [float(v) for v in column]
        k = len(column) - 2
        before = max(math.hypot(*column), scale)  # ||A v_k|| (orthonormal V)
        subdiagonal = abs(column[-1])
        i = 0
        for c, s in zip(self.cosines, self.sines):
            top, below = column[i], column[i + 1]
            column[i], column[i + 1] = c * top + s * below, c * below - s * top
            i += 1
        denom = math.hypot(column[k], column[k + 1])
        if not (math.isfinite(denom) and math.isfinite(before)):
            return self, "nonfinite"
        if denom <= _SINGULAR * before:
            return self, "singular"
        c, s = column[k] / denom, column[k + 1] / denom
        rhs = list(self.rhs)
        rhs.append(-s * rhs[k])
        rhs[k] = c * rhs[k]
        grown = self._replace(
            columns=self.columns + (np.asarray(column[:k] + [denom]),),
            cosines=self.cosines + (c,),
            sines=self.sines + (s,),
            rhs=tuple(rhs),
            estimates=self.estimates + (abs(rhs[-1]),),
            steps=self.steps + 1,
        )
        return grown, "lucky" if subdiagonal <= _LUCKY * denom else "ok"

    def absorb_all(self, columns, scales) -> "Rotated":
        """Every column of a cycle read at once, stopping at the first that ends it."""
        rotated = self
        for index, (column, scale) in enumerate(zip(columns, scales)):
            grown, verdict = rotated.absorb(column, scale)
            if verdict != "ok":
                rotated = grown._replace(stop=(index, verdict))
                break
            rotated = grown
        return rotated._replace(steps=len(columns))

    def reports(self, *, verified_end: bool, end_residual: float | None = None) -> list:
        """One :class:`StepReport` a step of the cycle, as a tolerance run reports them.

        ``verified_end``: the cycle's last step reports ``end_residual``, the recomputed
        residual of the iterate formed at its end.
        """
        out = [StepReport(e) for e in self.estimates]
        if self.stop is not None and self.stop[1] in ("singular", "nonfinite"):
            last = self.estimates[-1] if self.estimates else (abs(self.rhs[0]) if self.rhs else math.nan)
            out.append(StepReport(last if self.stop[1] == "singular" else math.nan, breakdown=True))
        # Steps after the one that ended the cycle ran on a finished (or broken) space.
        while len(out) < self.steps:
            out.append(out[-1] if out else StepReport(math.nan, breakdown=True))
        if verified_end and out:
            out[-1] = StepReport(end_residual, verified=True)
        return out

    def _upper(self) -> np.ndarray:
        m = self.width
        upper = np.zeros((m, m))
        for j, col in enumerate(self.columns):
            upper[: len(col), j] = col
        return upper

    def solve(self):
        """``y`` minimising ``||beta e_1 - H y||`` (None before any column)."""
        if not self.columns:
            return None
        m = self.width
        return back_substitute(self._upper(), np.asarray(self.rhs[:m]))

    def sigma_pair(self) -> list:
        """``sigma_min`` of ``R`` one column before the end and at the end (for combine_sigma)."""
        if not self.columns:
            return []
        return [triangular_sigma_min(self.columns[:-1]), triangular_sigma_min(self.columns)]


def cycle_updates(rotated: Rotated) -> tuple:
    """``||x_k - x_{k-1}||`` for every step of a cycle: with an orthonormal basis it is
    ``||y_k - [y_{k-1}; 0]||`` of the small triangular solves (host, float64)."""
    m = rotated.width
    if m == 0:
        return ()
    # y_k solves the leading k x k block of R against rhs[:k] (later rotations change only
    # rhs[k:]), so one back substitution with the columns of the upper triangle of rhs
    # gives every y_k at once, padded with exact zeros below row k.
    rhs = np.triu(np.broadcast_to(np.asarray(rotated.rhs[:m])[:, None], (m, m)))
    ys = back_substitute(rotated._upper(), rhs)
    steps = np.diff(ys, axis=1, prepend=0.0)
    return tuple(float(v) for v in np.linalg.norm(steps, axis=0))


def back_substitute(upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``upper^{-1} rhs`` for an upper triangular ``upper`` (``m x m``, m at most a restart
    length) and a vector or matrix ``rhs``, by back substitution in numpy.

    Not scipy's ``solve_triangular``: its LAPACK call wakes the threads of scipy's own
    OpenBLAS, which then spin against torch's threads on a shared CPU (a batched GMRES on
    torch ran four times slower with it, 64 samples of 512 on 2 cores). The arithmetic is
    LAPACK's ``trsv``: row by row from the bottom. Non-finite values pass through.
    """
    m = upper.shape[0]
    out = np.zeros(rhs.shape)
    with np.errstate(all="ignore"):
        for i in range(m - 1, -1, -1):
            out[i] = (rhs[i] - upper[i, i + 1:] @ out[i + 1:]) / upper[i, i]
    return out
