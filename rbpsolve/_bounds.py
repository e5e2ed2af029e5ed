"""Error bounds of the Neumann series and of contractions (Proposition 2 of Liao et al.)."""

from __future__ import annotations

import math

__all__ = ["neumann_bound", "neumann_steps", "contraction_bound"]


def _check_norm(norm_J: float) -> float:
    q = float(norm_J)
    if not (q >= 0 and math.isfinite(q)):
        raise ValueError(f"norm_J must be a finite number >= 0; got {norm_J}")
    return q


def neumann_bound(K: int, norm_J: float, *, inverse_norm: float | None = None) -> float:
    r"""Proposition 2: ``||sum_{t<=K} J^t - (I - J)^{-1}|| <= ||(I - J)^{-1}|| ||J||^{K+1}``.

    Parameters
    ----------
    K : int
        Truncation (the ``max_steps`` of :class:`~rbpsolve.Neumann`), ``K >= 0``.
    norm_J : float
        An upper bound ``q`` on ``||J||_2``.
    inverse_norm : float, optional
        ``||(I - J)^{-1}||_2`` if known; otherwise ``1 / (1 - q)``, which needs ``q < 1``.

    Returns
    -------
    float
        The bound on the operator error; times ``||g||`` it bounds ``||z_K - z||``.

    Examples
    --------
    >>> round(neumann_bound(20, 0.9), 6)
    1.09419
    """
    if isinstance(K, bool) or not isinstance(K, int) or K < 0:
        raise ValueError(f"K must be an int >= 0; got {K!r}")
    q = _check_norm(norm_J)
    if inverse_norm is None:
        if q >= 1:
            raise ValueError(
                f"with ||J|| = {q} >= 1 the Neumann series has no bound from ||J|| alone; "
                "pass inverse_norm=||(I - J)^{-1}|| if you know it (the bound then grows with K)"
            )
        inverse_norm = 1.0 / (1.0 - q)
    return float(inverse_norm) * q ** (K + 1)


def neumann_steps(rtol: float, norm_J: float) -> int:
    r"""The smallest truncation ``K`` whose Proposition-2 bound, relative to
    ``||(I - J)^{-1}||``, is at most ``rtol``: ``||J||^{K+1} <= rtol``.

    Examples
    --------
    >>> neumann_steps(1e-6, 0.9)
    131
    """
    q = _check_norm(norm_J)
    if not (0 < rtol < 1):
        raise ValueError(f"rtol must lie in (0, 1); got {rtol}")
    if q >= 1:
        raise ValueError(f"||J|| = {q} >= 1: Proposition 2 gives no truncation; use GMRES or LSQR")
    if q == 0:
        return 0
    return max(0, math.ceil(math.log(rtol) / math.log(q) - 1 - 1e-12))


def contraction_bound(norm_J: float, step_norm: float) -> float:
    r"""A-posteriori certificate of a contraction: ``||z - z_k|| <= q / (1 - q) ||z_k - z_{k-1}||``.

    Holds for the fixed-point iteration ``z_k = J^T z_{k-1} + g`` and for the Neumann
    partial sums (where ``z_k - z_{k-1}`` is the last term) whenever ``||J|| <= q < 1``.
    """
    q = _check_norm(norm_J)
    if q >= 1:
        raise ValueError(f"the certificate needs ||J|| < 1; got {q}")
    return q / (1.0 - q) * float(step_norm)
