"""Estimates of the error ``norm(x - x*)`` of a solve, from what the solve already knows.

Every :class:`~rbpsolve.Result` carries ``error_estimate``. Two kinds:

* **Krylov solvers** (GMRES, LSQR, CGNE): ``x - x* = -A^{-1} r``, so
  ``norm(x - x*) <= norm(A^{-1}) norm(r)``. The Krylov recurrences give, for free, a
  small matrix ``P`` with ``A V_k = W P`` for orthonormal ``V_k``, ``W`` (GMRES: the
  Hessenberg matrix, LSQR: the bidiagonal, CGNE: the Lanczos tridiagonal of ``A^T A``),
  so ``sigma_min(P) >= sigma_min(A)`` and ``norm(r) / sigma_min(P)`` estimates the bound.
  It errs on the optimistic side when the Krylov space has not yet seen the direction
  of ``A``'s smallest singular value (early steps; strongly non-normal ``J``), and on
  the pessimistic side when the residual avoids that direction.
* **Series** (FixedPoint, Neumann): the error is the tail of the series. With the last
  two terms ``t_{K-1}``, ``t_K`` and the observed factor ``lambda = <t_K, t_{K-1}> /
  ||t_{K-1}||^2``, the tail ``sum_{j>K} t_j ~ t_K lambda / (1 - lambda)`` when the terms
  are aligned (one dominant real eigenvalue); otherwise (oscillating terms, complex
  pairs) the norm ratio ``q = ||t_K|| / ||t_{K-1}||`` gives ``||t_K|| q / (1 - q)``,
  which over-estimates those cases. It assumes the observed contraction goes on: a
  non-normal ``J`` still in its transient can make it optimistic.

Each estimate comes with ``reliable``: False where its assumption visibly fails (the
smallest Ritz singular value still falling fast at the end, terms that do not contract
at a steady rate).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

__all__ = ["krylov_sigma_min", "triangular_sigma_min", "bidiagonal_sigma_min", "lanczos_sigma_min", "series_tail"]

# The smallest Ritz singular value counts as settled when its last step changed it by
# less than this fraction.
SETTLED = 0.1


def _smallest(matrix: np.ndarray) -> float:
    if matrix.size == 0 or not np.all(np.isfinite(matrix)):
        return math.nan
    return float(np.linalg.svd(matrix, compute_uv=False)[-1])


def triangular_sigma_min(columns) -> float:
    """``sigma_min`` of GMRES's rotated Hessenberg ``R`` (upper triangular, from its
    columns): the rotations are orthogonal, so it is ``sigma_min`` of ``H_bar``."""
    m = len(columns)
    if m == 0:
        return math.nan
    upper = np.zeros((m, m))
    for j, col in enumerate(columns):
        upper[: len(col), j] = col
    return _smallest(upper)


def _tridiagonal_lambda_min(diagonal, offdiagonal) -> float:
    """The smallest eigenvalue of a symmetric tridiagonal matrix (bisection: O(k))."""
    d = np.asarray(diagonal, dtype=np.float64)
    e = np.asarray(offdiagonal, dtype=np.float64)
    if d.size == 0 or not (np.all(np.isfinite(d)) and np.all(np.isfinite(e))):
        return math.nan
    if d.size == 1:
        return float(d[0])
    try:
        return float(scipy.linalg.eigvalsh_tridiagonal(d, e, select="i", select_range=(0, 0))[0])
    except (np.linalg.LinAlgError, ValueError):
        # Bisection failed on badly scaled entries (a wrecked recurrence): no estimate.
        return math.nan


def bidiagonal_sigma_min(alphas, betas) -> float:
    """``sigma_min`` of LSQR's lower bidiagonal ``B_k`` (``alphas`` on the diagonal,
    ``betas`` below it; ``k + 1`` rows), as ``sqrt(lambda_min(B_k^T B_k))``."""
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)[: a.size]
    if a.size == 0:
        return math.nan
    smallest = _tridiagonal_lambda_min(a**2 + b**2, b[:-1] * a[1:])
    return math.sqrt(smallest) if smallest > 0 else (0.0 if smallest <= 0 else math.nan)


def lanczos_sigma_min(steps, ratios) -> float:
    """``sqrt(lambda_min(T_k))`` of the Lanczos tridiagonal of ``A^T A`` that CG's step
    lengths ``alpha_j`` and ratios ``beta_j = gamma_{j+1} / gamma_j`` define (Saad,
    *Iterative Methods for Sparse Linear Systems*, Sec. 6.7.3)."""
    alpha = np.asarray(steps, dtype=np.float64)
    beta = np.asarray(ratios, dtype=np.float64)
    if alpha.size == 0:
        return math.nan
    with np.errstate(all="ignore"):
        diagonal = 1.0 / alpha
        diagonal[1:] += beta[:-1] / alpha[:-1]
        offdiagonal = np.sqrt(beta[:-1]) / alpha[:-1]
    smallest = _tridiagonal_lambda_min(diagonal, offdiagonal)
    return math.sqrt(smallest) if smallest > 0 else (0.0 if smallest <= 0 else math.nan)


def push(chain, pair):
    """``chain`` with ``pair`` appended, in O(1): a persistent list of nested tuples, so
    that an immutable solver state can carry all of a recurrence's coefficients without
    copying them at every step."""
    return (pair, chain)


def unroll(chain) -> tuple[list, list]:
    """The two coefficient sequences of a :func:`push` chain, oldest first."""
    firsts, seconds = [], []
    while chain:
        (a, b), chain = chain
        firsts.append(a)
        seconds.append(b)
    return firsts[::-1], seconds[::-1]


def successive_ratios(norms) -> list:
    """``||t_{k+1}|| / ||t_k||`` of the finite norms given, oldest first."""
    finite = [v for v in norms if math.isfinite(v)]
    return [after / before for before, after in zip(finite, finite[1:]) if before > 0]


def steady(ratios) -> bool:
    """Whether a sequence contracts at a steady rate: two or more ratios below 1 that agree
    within 5%."""
    return len(ratios) >= 2 and max(ratios) - min(ratios) <= 0.05 * max(ratios) and max(ratios) < 1


def combine_sigma(pair, earlier: float, earlier_settled: bool = False) -> tuple[float, bool]:
    """``(sigma, settled)`` of a Krylov run from the ``sigma_min`` of its small matrix one
    step before the end and at the end (``pair``; empty before any step), against the
    smallest ``earlier`` of previous runs (restart cycles): each is ``>= sigma_min(A)``, so
    the smaller one counts."""
    sigma, settled = krylov_sigma_min(pair)
    return (sigma, settled) if sigma < earlier else (earlier, earlier_settled)


def krylov_sigma_min(history_of_sigma) -> tuple[float, bool]:
    """``(sigma, settled)`` from the running smallest Ritz singular values, one a step."""
    values = [s for s in history_of_sigma if math.isfinite(s)]
    if not values:
        return math.nan, False
    sigma = min(values)
    settled = len(values) >= 2 and values[-2] - values[-1] <= SETTLED * values[-2]
    return sigma, settled


def krylov_estimate(residual_norm, sigma: float, settled: bool) -> tuple[float, bool]:
    """``norm(r) / sigma_min``, and whether it can be relied on."""
    if residual_norm is None or not math.isfinite(residual_norm):
        return math.inf, False
    if residual_norm == 0.0:
        return 0.0, True
    if not (sigma > 0 and math.isfinite(sigma)):
        return math.inf, False
    return residual_norm / sigma, settled


def series_tail(last_norm: float, previous_norm: float, inner: float, ratios) -> tuple[float, bool, float]:
    """``(estimate, reliable, factor)`` of the tail ``sum_{j>K} t_j`` of a series.

    ``last_norm = ||t_K||``, ``previous_norm = ||t_{K-1}||``, ``inner = <t_K, t_{K-1}>``;
    ``ratios`` are the last few ratios of successive term norms (for the steadiness test).
    """
    if last_norm == 0.0:
        return 0.0, True, 0.0
    if not (previous_norm > 0 and all(math.isfinite(v) for v in (last_norm, previous_norm, inner))):
        return math.inf, False, math.nan
    q = last_norm / previous_norm
    if q >= 1.0:
        return math.inf, False, q
    regular = steady(ratios)
    cosine = inner / (last_norm * previous_norm)
    if cosine > 0.99:
        lam = inner / previous_norm**2
        return last_norm * abs(lam) / abs(1.0 - lam), regular, lam
    # Oscillating or rotating terms: q / (1 - q) over-estimates their tail.
    worst = max([q, *ratios])
    if worst >= 1.0:
        return math.inf, False, worst
    return last_norm * worst / (1.0 - worst), regular, worst


def series_estimate(xp, last, previous, recent_norms) -> dict:
    """``error_estimate``, ``estimate_reliable`` and ``observed_factor`` of a series solver
    from its last two terms (FixedPoint: updates) ``last`` and ``previous`` and the norms of
    the last few terms, oldest first. One host transfer."""
    from . import _backend

    if last is None or previous is None:
        return {"error_estimate": math.inf, "estimate_reliable": False}
    last_norm, previous_norm, inner = _backend.to_host(
        xp, _backend.norm(xp, last), _backend.norm(xp, previous), _backend.vdot(xp, last, previous)
    )
    estimate, reliable, factor = series_tail(last_norm, previous_norm, inner, successive_ratios(recent_norms))
    return {"error_estimate": estimate, "estimate_reliable": reliable, "observed_factor": factor}


def record_update(record: tuple, norm: float) -> tuple:
    """``(last, worst)`` after one more update norm ``||x_k - x_{k-1}||``: the last norm and
    the largest ratio of successive norms over the whole run (None before there is one)."""
    last, worst = record
    if not math.isfinite(norm):
        return record
    if last is not None and last > 0:
        ratio = norm / last
        worst = ratio if worst is None else max(worst, ratio)
    return norm, worst


def update_tail(record: tuple) -> float:
    """A safety net for an unconverged Krylov solve: the iterates read as a series.

    ``x* - x_K`` is what later steps would still add. With the update norms
    ``||x_k - x_{k-1}||`` shrinking by at most ``q`` a step over the whole run (``record``
    from :func:`record_update`), that is about ``||x_K - x_{K-1}|| q / (1 - q)``; updates
    that ever grew give ``inf`` (no estimate). It catches what ``||r|| / sigma_min(P)``
    cannot see before the Krylov space has found ``A``'s smallest singular value: a solve
    still moving far. The whole run counts, not its last steps: a near-singular direction
    can show in an early growth and hide behind a few shrinking steps at the end.
    """
    last, worst = record
    if last is None or last == 0.0:
        return 0.0
    if worst is None or worst >= 1.0:
        return math.inf
    return last * worst / (1.0 - worst)


def records_of(norms) -> tuple:
    """The :func:`record_update` summary of a sequence of update norms."""
    record = (None, None)
    for norm in norms:
        record = record_update(record, norm)
    return record


# A Krylov residual that fell by less than this fraction over its last STAGNATION_STEPS steps
# is stagnating.
STAGNATION_DROP = 0.02
STAGNATION_STEPS = 2


def stagnation(history) -> float:
    """``inf`` where an unconverged minimal-residual solve stagnates, else 0.

    A plateau of the residual means the Krylov space is not capturing what remains of
    ``x*``: its iterates barely move (so :func:`update_tail` sees a small tail) while the
    error ``A^{-1} r`` can be as large as ``||r|| / sigma_min(A)``, which nothing in the
    solve has measured. No number is honest then.
    """
    values = [v for v in history if math.isfinite(v)]
    if len(values) <= STAGNATION_STEPS or values[-1] == 0.0:
        return 0.0
    earlier = values[-1 - STAGNATION_STEPS]
    return math.inf if values[-1] > (1.0 - STAGNATION_DROP) * earlier else 0.0

