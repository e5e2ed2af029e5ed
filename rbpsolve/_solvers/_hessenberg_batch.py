"""The rotated Hessenberg matrices of a batch of GMRES cycles, one a sample, as host arrays:
:class:`~rbpsolve._solvers._hessenberg.Rotated`'s arithmetic for every sample at once.

A step of a batched GMRES offers each stepping sample one new column; applying the
samples' earlier rotations one rotation index at a time over all of them (identity
rotations, ``c = 1, s = 0``, where a sample has fewer) costs a few numpy operations an
index instead of a Python loop a sample. ``batch[i]`` gives sample ``i`` as a
:class:`Rotated` (for its cycle's end and its conclusions), and ``batch[i] = rotated``
loads one.
"""

from __future__ import annotations

import numpy as np

from ._hessenberg import _LUCKY, _SINGULAR, Rotated, back_substitute

__all__ = ["RotatedBatch"]


class RotatedBatch:
    """``batch`` rotated Hessenberg matrices of at most ``cycle`` columns (float64)."""

    def __init__(self, batch: int, cycle: int):
        self.upper = np.zeros((batch, cycle, cycle))
        self.cosines = np.ones((batch, cycle))
        self.sines = np.zeros((batch, cycle))
        self.rhs = np.zeros((batch, cycle + 1))
        self.estimates = np.zeros((batch, cycle))
        self.width = np.zeros(batch, dtype=np.int64)
        self.steps = np.zeros(batch, dtype=np.int64)
        self.started = np.zeros(batch, dtype=bool)
        self.stop = [None] * batch

    def estimate(self, i: int) -> float:
        """``|rhs[-1]|``: the residual norm of sample ``i``'s cycle's best iterate."""
        return abs(float(self.rhs[i, self.width[i]])) if self.started[i] else float("inf")

    def solve(self, i: int) -> np.ndarray:
        """``y`` minimising ``||beta e_1 - H y||`` for sample ``i`` (a cycle with columns)."""
        w = int(self.width[i])
        return back_substitute(self.upper[i, :w, :w], self.rhs[i, :w])

    def __getitem__(self, i: int) -> Rotated:
        w = int(self.width[i])
        if not self.started[i]:
            return Rotated.empty()
        return Rotated(
            columns=tuple(self.upper[i, : j + 1, j].copy() for j in range(w)),
            cosines=tuple(float(v) for v in self.cosines[i, :w]),
            sines=tuple(float(v) for v in self.sines[i, :w]),
            rhs=tuple(float(v) for v in self.rhs[i, : w + 1]),
            estimates=tuple(float(v) for v in self.estimates[i, :w]),
            stop=self.stop[i],
            steps=int(self.steps[i]),
        )

    def __setitem__(self, i: int, rotated: Rotated) -> None:
        w = rotated.width
        self.upper[i] = 0.0
        for j, column in enumerate(rotated.columns):
            self.upper[i, : len(column), j] = column
        self.cosines[i], self.sines[i] = 1.0, 0.0
        self.cosines[i, :w], self.sines[i, :w] = rotated.cosines, rotated.sines
        self.rhs[i] = 0.0
        self.rhs[i, : len(rotated.rhs)] = rotated.rhs
        self.estimates[i, :w] = rotated.estimates
        self.width[i], self.steps[i] = w, rotated.steps
        self.started[i], self.stop[i] = bool(rotated.rhs), rotated.stop

    def absorb(self, samples, columns: np.ndarray, scales: np.ndarray) -> list:
        """Column ``width[i]`` of each of ``samples`` (rows of ``columns``, ``cycle + 1``
        entries, zero past each sample's ``width + 2``), as :meth:`Rotated.absorb` for each.

        Returns one verdict a sample: ``"ok"``, ``"lucky"``, or (the sample's matrix left
        as it was) ``"singular"``, ``"nonfinite"``.
        """
        index = np.asarray(samples, dtype=np.int64)
        rows = np.arange(len(index))
        width = self.width[index]
        col = np.array(columns, dtype=np.float64)
        with np.errstate(all="ignore"):
            before = np.maximum(np.sqrt(np.einsum("ij,ij->i", col, col)), scales)  # ||A v_k||
            subdiagonal = np.abs(col[rows, width + 1])
            cosines, sines = self.cosines[index], self.sines[index]
            for j in range(int(width.max(initial=0))):
                c, s = cosines[:, j], sines[:, j]
                top, below = col[:, j].copy(), col[:, j + 1].copy()
                col[:, j], col[:, j + 1] = c * top + s * below, c * below - s * top
            diagonal, below = col[rows, width], col[rows, width + 1]
            denom = np.hypot(diagonal, below)
            nonfinite = ~(np.isfinite(denom) & np.isfinite(before))
            singular = ~nonfinite & (denom <= _SINGULAR * before)
            taken = ~nonfinite & ~singular
            lucky = taken & (subdiagonal <= _LUCKY * denom)
            c_new, s_new = diagonal / denom, below / denom
        t = np.flatnonzero(taken)
        if t.size:
            it, wt, k = index[t], width[t], np.arange(t.size)
            cycle = self.upper.shape[1]
            column = col[t, :cycle].copy()
            column[k, wt] = denom[t]
            column[np.arange(cycle)[None, :] > wt[:, None]] = 0.0  # the rotated-away subdiagonal
            self.upper[it, :, wt] = column
            self.cosines[it, wt], self.sines[it, wt] = c_new[t], s_new[t]
            start = self.rhs[it, wt]
            self.rhs[it, wt + 1], self.rhs[it, wt] = -s_new[t] * start, c_new[t] * start
            self.estimates[it, wt] = np.abs(self.rhs[it, wt + 1])
            self.width[it] += 1
            self.steps[it] += 1
        return ["nonfinite" if nonfinite[r] else "singular" if singular[r] else "lucky" if lucky[r] else "ok"
                for r in rows]
