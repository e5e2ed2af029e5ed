"""Classical Gram-Schmidt against a stored basis: the one orthogonalisation of Arnoldi
(GMRES) and of the Lanczos/Arnoldi estimates (:mod:`rbpsolve._estimates`).

Each pass is two matrix-vector products with the basis (``h = V w``, ``w - h V``),
friendlier to GPUs than modified Gram-Schmidt's ``k`` dependent inner products. A second
pass restores orthogonality where the first cancelled most of ``w`` (the DGKS criterion;
Daniel, Gragg, Kaufman and Stewart, Math. Comp. 30, 1976), or always where the caller
asks (full reorthogonalisation, for Ritz values).
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend

__all__ = ["DGKS", "project_out", "orthogonalise"]

DGKS = 1.0 / math.sqrt(2.0)


def project_out(xp, basis, w, *extra):
    """One pass: ``(w - V^T V w, V w, *extra)`` for the rows ``V`` of ``basis`` (``(k, n)``)
    and a flat ``w`` (``(n,)``), on the device; ``extra`` are inner products of the same
    step (pairs, as in :func:`rbpsolve._backend.reductions`), reduced with ``V w`` in one
    all-reduce when the state is split over processes."""
    h, *values = _backend.basis_products(xp, basis, w, *extra)
    return (w - h @ basis, h, *values)


def orthogonalise(xp, basis, w, *, twice: bool = False):
    """``w`` made orthogonal to the rows of ``basis``.

    Returns ``(w, coefficients, norm, before)``: the new ``w`` (flat, on the device), the
    coefficients summed over the passes (a float64 numpy array), ``||w||`` after and
    before. One host transfer a pass: the first moves ``h`` with ``||w||^2``, and the norm
    after it is ``sqrt(||w||^2 - ||h||^2)`` (Pythagoras, exact for an orthonormal basis and
    accurate to rounding unless the pass cancelled most of ``w``, which is exactly when a
    second pass is taken and the norm recomputed). Non-finite values are returned as they
    are, for the caller to report.
    """
    w, h, w_sq = project_out(xp, basis, w, (w, w))
    if _backend.is_lazy(xp):
        # dask: w computed with the values read, so that the next Krylov vector (built
        # from this one) does not replay every earlier step's graph.
        w, h, w_sq = _backend.persist(w, h, w_sq)
    values = _backend.to_host(xp, h, w_sq)
    coefficients, before_sq = np.asarray(values[:-1]), values[-1]
    before = math.sqrt(before_sq) if before_sq >= 0 else math.nan
    norm = math.sqrt(max(before_sq - float(coefficients @ coefficients), 0.0))
    if twice or not norm >= DGKS * before:
        w, h = project_out(xp, basis, w)
        again = _backend.to_host(xp, h, _backend.norm(xp, w))  # the norm after the pass: a second reduction
        coefficients, norm = coefficients + np.asarray(again[:-1]), again[-1]
    return w, coefficients, norm, before
