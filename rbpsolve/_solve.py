"""The two entry points, ``solve`` and ``solve_adjoint``, and their input checks."""

from __future__ import annotations

from typing import Callable

from ._checks import check_input, check_solver_kind
from ._algebra import IdentityMinus, Transpose
from ._interop import aslinearoperator
from ._operator import Operator
from ._batched_checks import check_batch, run_batched
from ._fallback import Fallback, run
from ._result import Result

__all__ = ["solve", "solve_adjoint", "Fallback"]


def solve(A, b, solver, *, x0=None, callback: Callable | None = None, throw: bool = True,
          batch_axis: int | None = None) -> Result:
    """Solve ``A x = b`` (or ``min ||b - A x||`` with LSQR and CGNE) matrix-free.

    Parameters
    ----------
    A : Operator, scipy LinearOperator, sparse matrix or 2-D array
        The operator; non-rbpsolve objects go through :func:`aslinearoperator`.
    b : array
        Right-hand side, shaped like ``A``'s output, of its namespace, dtype and device.
    solver : solver settings or Fallback
        e.g. ``rbpsolve.GMRES(rtol=1e-8)``.
    x0 : array, optional
        Start (zero by default); never modified.
    callback : callable, optional
        ``callback(info)`` after every step with an :class:`StepInfo`; returning True
        stops the solve with ``Status.STOPPED``.
    throw : bool
        Raise :class:`SolveError` (carrying the Result) when the status is not ok;
        with False, return the Result whatever happened.
    batch_axis : int, optional
        Solve one independent system per slice along this axis of ``b`` (a batch of
        samples; you assert that ``A`` does not couple them, as in a deep-equilibrium
        model). Inner products, norms, stopping tests and divergence checks are then per
        sample; a sample that has stopped is frozen while the others go on; each step
        still makes one batched product. The Result holds per-sample records
        (``sample_status``, ...): see :class:`Result`. Supported by FixedPoint, Neumann,
        CGNE, LSQR and RandomizedNeumann (one random depth a sample: see its Notes).

    Returns
    -------
    Result

    Raises
    ------
    TypeError, ValueError
        Bad input, with the problem and the fix named.
    SolveError
        With ``throw=True``, when the solve did not converge.
    """
    A = aslinearoperator(A)
    chain = check_solver_kind(solver, "linear")
    check_input(b, A.out_space, "b", "A maps to arrays")
    if x0 is not None:
        check_input(x0, A.in_space, "x0", "A acts on arrays")
    for s in chain:
        _check_products(s, A, square_msg="A", mv_msg="products A v (matvec)", rmv_msg="products A^T u (rmatvec)")
    if batch_axis is not None:
        return run_batched(solver, A, b, x0, callback, throw, check_batch(solver, A, batch_axis))
    return run(solver, A, b, x0, callback, throw)


def solve_adjoint(J, g, solver, *, x0=None, callback: Callable | None = None, throw: bool = True,
                  batch_axis: int | None = None) -> Result:
    r"""Solve the adjoint system ``(I - J^T) z = g`` of recurrent back-propagation.

    At a fixed point ``h* = F(h*)`` with ``J = dF/dh`` and ``g = dL/dh*``, the gradient of
    ``L`` with respect to parameters ``w`` is ``z^T dF/dw`` (implicit function theorem;
    Eq. 6 of Liao et al. 2018).

    Parameters
    ----------
    J : JacobianOperator (or any square Operator)
        The Jacobian, known through ``vjp`` (and ``jvp`` for CGNE and LSQR).
    g : array
        Shaped like the state, of ``J``'s namespace, dtype and device.
    solver, x0, callback, throw, batch_axis
        As in :func:`solve`; with ``batch_axis``, ``J`` acts on the whole batch (one VJP a
        step for every sample) and must not couple samples.

    Returns
    -------
    Result
        ``x`` is ``z``; ``num_vjp`` and ``num_jvp`` count products with ``J^T`` and ``J``.

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> W = 0.5 * np.eye(3)
    >>> J = rbpsolve.JacobianOperator(lambda u: W.T @ u, like=np.zeros(3))
    >>> rbpsolve.solve_adjoint(J, np.ones(3), rbpsolve.Neumann(max_steps=60)).x.round(6)
    array([2., 2., 2.])
    """
    if not isinstance(J, Operator):
        raise TypeError(
            f"J must be an rbpsolve operator such as rbpsolve.JacobianOperator(vjp, jvp, like=h); "
            f"got {type(J).__name__}"
        )
    if not J.is_square:
        raise ValueError(
            f"J must map the state to itself; this one maps shape {J.in_shape} to {J.out_shape}"
        )
    chain = check_solver_kind(solver, "linear")
    check_input(g, J.in_space, "g", "J acts on arrays")
    if x0 is not None:
        check_input(x0, J.in_space, "x0", "J acts on arrays")
    A = IdentityMinus(Transpose(J))
    for s in chain:
        _check_products(
            s,
            A,
            square_msg="J",
            mv_msg="products J^T u (a vjp)",
            rmv_msg="products J v (a jvp), but J was built without jvp=; pass jvp= or use "
            "FixedPoint, Neumann or GMRES, which need only vjp",
        )
    if batch_axis is not None:
        return run_batched(solver, A, g, x0, callback, throw, check_batch(solver, A, batch_axis))
    return run(solver, A, g, x0, callback, throw)


def _check_products(solver, A, *, square_msg, mv_msg, rmv_msg):
    name = type(solver).__name__
    if solver.needs_square and not A.is_square:
        raise ValueError(f"{name} needs a square system; {square_msg} maps shape {A.in_shape} to {A.out_shape}: use LSQR")
    if solver.needs_mv and not A.has_mv:
        raise ValueError(f"{name} needs {mv_msg}, which this operator cannot make")
    if solver.needs_rmv and not A.has_rmv:
        raise ValueError(f"{name} needs {rmv_msg}")
