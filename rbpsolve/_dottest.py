"""The adjoint dot test ``<A v, u> == <v, A^T u>`` (pylops ``dottest``)."""

from __future__ import annotations

import numpy as np

from . import _backend
from ._operator import Operator

__all__ = ["dottest"]


def dottest(op: Operator, *, seed: int = 0, rtol: float | None = None, raise_error: bool = True) -> bool:
    """Check ``<A v, u> == <v, A^T u>`` on random vectors (the adjoint dot test).

    Parameters
    ----------
    op : Operator
        Needs both ``mv`` and ``rmv``.
    seed : int
        Seed of the random vectors (drawn in float64 on the host, then cast).
    rtol : float, optional
        Tolerance on ``|<A v, u> - <v, A^T u>| / (||A v|| ||u|| + ||v|| ||A^T u||)``;
        default ``eps ** (2/3)`` of the operator's dtype.
    raise_error : bool
        Raise ``AssertionError`` on a mismatch instead of returning False.

    Returns
    -------
    bool
        Whether the two inner products agree.
    """
    if not (op.has_mv and op.has_rmv):
        raise ValueError("the dot test needs both products A v and A^T u; this operator lacks one")
    xp = op.xp
    rng = np.random.default_rng(seed)
    v = op.in_space.block_of(rng.standard_normal(op.in_space.global_size))
    u = op.out_space.block_of(rng.standard_normal(op.out_space.global_size))
    av, atu = op.mv(v), op.rmv(u)
    lhs, rhs, av_norm, u_norm, v_norm, atu_norm = _backend.to_host(
        xp, *_backend.reductions(xp, (av, u), (v, atu), (av,), (u,), (v,), (atu,)))
    scale = av_norm * u_norm + v_norm * atu_norm
    if rtol is None:
        rtol = _backend.machine_eps(xp, op.dtype) ** (2.0 / 3.0)
    error = abs(lhs - rhs) / scale if scale > 0 else abs(lhs - rhs)
    passed = bool(error <= rtol)
    if not passed and raise_error:
        raise AssertionError(
            f"dot test failed: <A v, u> = {lhs!r} but <v, A^T u> = {rhs!r} "
            f"(relative mismatch {error:.2e} > rtol {rtol:.2e}); the transpose product is not the adjoint"
        )
    return passed
