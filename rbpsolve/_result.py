"""The outcome of a solve: :class:`Result`, :class:`Status` and :class:`SolveError`."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

__all__ = ["Status", "Result", "SolveError"]


class Status(enum.Enum):
    """How a solve ended. Each value is the message a user reads, saying what to try.

    ``Result.ok`` is true for :attr:`CONVERGED` and :attr:`BUDGET_SPENT` only.
    An ``ok`` status says what the returned ``x`` is: ``CONVERGED`` x met the tolerance
    on a verified residual; ``BUDGET_SPENT`` x is the fixed budget's iterate, and for
    the series solvers (FixedPoint, Neumann, RandomizedNeumann) that series was still
    converging when the budget ended (a diverging one is ``DIVERGED``).
    """

    CONVERGED = (
        "converged: the residual met the tolerance max(rtol * scale, atol), the scale being "
        "norm(b) for a linear solve and norm(F(h)) for a fixed-point solve"
    )
    BUDGET_SPENT = (
        "ran its fixed budget of max_steps steps (rtol = atol = 0 asks for no tolerance); "
        "Result.error_bound, where given, bounds the error"
    )
    MAX_STEPS = (
        "stopped at max_steps before reaching the tolerance: raise max_steps, loosen rtol/atol, "
        "or use a Krylov solver (GMRES, LSQR); rbpsolve.analyze(J) estimates the steps each solver needs"
    )
    DIVERGED = (
        "diverged: the residual grew by more than divergence_factor over its smallest value, or a "
        "fixed budget ended with its series not converging (the last term no smaller than the start's "
        "residual, or larger than the term half-way through the budget). FixedPoint and Neumann "
        "converge only when the spectral radius of J is below 1; use GMRES, LSQR or CGNE, which do "
        "not need it (or on_failure=rbpsolve.Fallback(rbpsolve.GMRES()) in the torch adapter)"
    )
    BREAKDOWN = (
        "the Krylov recurrence broke down (a zero denominator): I - J^T may be singular; "
        "LSQR returns a least-squares solution of singular systems"
    )
    LEAST_SQUARES = (
        "the system looks inconsistent (singular, with b outside its range): x is a least-squares "
        "solution whose residual cannot shrink further; check whether I - J^T is singular "
        "(rbpsolve.analyze), or pass throw=False to use x as it is"
    )
    NONFINITE = (
        "a NaN or inf appeared: the operator returned non-finite values or the iteration overflowed; "
        "check the vjp/jvp callbacks at this point, or solve in float64"
    )
    ACCURACY_LIMIT = (
        "the tolerance is below what this dtype can reach: the verified residual norm(b - A x) of x is "
        "at the rounding level eps * (norm(b) + norm(A x)) (Result.info['attainable']) and cannot be "
        "certified smaller; loosen rtol/atol to that level or solve in float64"
    )
    STOPPED = "stopped early because the callback returned True"

    @property
    def ok(self) -> bool:
        return self in (Status.CONVERGED, Status.BUDGET_SPENT)


@dataclasses.dataclass(frozen=True, eq=False)
class Result:
    """What a solve returns: the solution and everything known about how good it is.

    Attributes
    ----------
    x : array
        The solution, in the namespace, dtype, device and shape of the right-hand side.
    status : Status
        How the solve ended; ``status.value`` says what to try when it failed.
    num_steps : int
        Iterations taken (each costs at least one operator product).
    history : tuple of float
        One norm per step: the residual (or, for FixedPoint and Neumann, the norm of the
        update, which is the residual of the previous iterate). See each solver's Notes.
    num_vjp, num_jvp : int
        Products with J^T (vector-Jacobian) and with J (Jacobian-vector) spent. For a
        general operator A, ``num_jvp`` counts products A v and ``num_vjp`` products A^T u.
    residual_norm : float or None
        A residual norm of the solve; ``residual_kind`` says which one.
    residual_kind : str or None
        What ``residual_norm`` is:

        - ``"verified"``: ``norm(b - A x)`` recomputed for the returned ``x`` with one
          more product (counted in ``num_vjp``/``num_jvp``). Every ``CONVERGED`` and
          ``ACCURACY_LIMIT`` linear solve is decided on this figure (unless the solver
          was built with ``verify=False``).
        - ``"recurrence"``: carried by the Krylov recurrence for the returned ``x`` (CGNE,
          LSQR; GMRES inside a cycle): exact in exact arithmetic, but it can drift below
          the true residual in floating point.
        - ``"previous iterate"``: FixedPoint, Neumann and RandomizedNeumann: the last
          update (or series term), which is the residual of the previous iterate; the
          returned ``x`` has residual ``J^T`` times it, at most ``||J||`` times as large.
        - None: no residual (a forward solve, or ``b = 0``).
    b_norm : float
        ``norm(b)``, the scale of ``rtol``.
    error_bound : float or None
        An upper bound on ``norm(x - x_exact)`` where theory gives one, that is where a
        bound ``q < 1`` on the norm of J is known (``JacobianOperator(norm_bound=q)``).
    error_estimate : float
        An estimate of ``norm(x - x_exact)``, on every result (``math.inf`` where the
        solve gives nothing to estimate it from, e.g. a diverged series). Krylov solvers
        (GMRES, LSQR, CGNE): ``residual_norm / sigma``, ``sigma`` the smallest singular
        value of the small matrix their recurrence builds, never below ``sigma_min(A)``
        (unconverged: at least the tail of their own updates, and ``math.inf`` where the
        residual stagnates);
        series (FixedPoint, Neumann, RandomizedNeumann): the tail of the series from the
        observed contraction of its last terms; forward solves: the same from the
        residual norms. Unlike ``error_bound`` it is not rigorous: see
        ``estimate_reliable`` and :mod:`rbpsolve._error_estimate` for when it misleads.
    estimate_reliable : bool or None
        False where the estimate's own assumption visibly fails: the Krylov space's
        smallest singular value was still falling at the end (it may not have seen
        ``A``'s), or the series' terms did not contract at a steady rate (a transient of
        a non-normal J). A reliable estimate can still be optimistic on strongly
        non-normal J; an unreliable one is a hint, not a figure to act on.
    solver : object
        The settings of the solver that produced ``x``.
    info : dict
        Solver-specific estimates (LSQR: ``anorm``, ``acond``, ``arnorm``, ``xnorm``).
    attempts : tuple of Result
        The other results of a :class:`~rbpsolve.Fallback` chain, in the chain's order: the
        failures before the returned one, or, when every member failed, every attempt but
        the returned best one (``info["fallback_index"]`` is its place in the chain).
    sample_status, sample_num_steps, sample_residual_norm, sample_error_estimate : numpy arrays or None
        A batched solve (``batch_axis=k``): one entry a sample, on the host (``sample_status``
        holds :class:`Status` members; in a :class:`~rbpsolve.Fallback` member's attempt,
        None for the samples an earlier member solved). ``info["sample_results"]`` holds
        each sample's own Result (the figures a solo solve would report). The batch's own fields keep their meaning for the
        whole batch, as one vector: ``status`` is ok only if every sample is ok (otherwise
        the gravest of the samples' statuses), ``num_steps`` the steps the batch took (the
        most any sample took), ``history`` the norm over the batch of each sample's latest
        residual, ``residual_norm``, ``error_bound`` and ``error_estimate`` the root sum of
        squares of the samples' figures; ``num_vjp`` and ``num_jvp`` count batched product
        calls (one call multiplies every sample). ``info`` holds ``batch_size`` and
        ``batch_axis``, and a solver's per-sample figures as arrays (RandomizedNeumann's
        ``drawn_steps`` and ``capped``). None for an unbatched solve.
    """

    x: Any
    status: Status
    num_steps: int
    history: tuple
    num_vjp: int
    num_jvp: int
    residual_norm: float | None
    b_norm: float
    error_bound: float | None
    solver: Any
    info: dict = dataclasses.field(default_factory=dict)
    attempts: tuple = ()
    residual_kind: str | None = None
    error_estimate: float | None = None
    estimate_reliable: bool | None = None
    sample_status: Any = None
    sample_num_steps: Any = None
    sample_residual_norm: Any = None
    sample_error_estimate: Any = None

    @property
    def batch_summary(self) -> str | None:
        """The samples' statuses in words, e.g. ``"62 converged, 2 diverged: samples 7, 41"``
        (None for an unbatched solve)."""
        if self.sample_status is None:
            return None
        counts, failing = {}, {}
        for i, status in enumerate(self.sample_status):
            counts[status] = counts.get(status, 0) + 1
            if status is not None and not status.ok:
                failing.setdefault(status, []).append(i)
        parts = []
        for status, n in counts.items():
            if status is None:  # a Fallback member's samples an earlier member solved
                parts.append(f"{n} solved by an earlier member")
                continue
            part = f"{n} {status.name.lower().replace('_', ' ')}"
            if status in failing:
                samples = failing[status]
                shown = ", ".join(str(i) for i in samples[:10]) + (", ..." if len(samples) > 10 else "")
                part += f": sample{'s' if len(samples) > 1 else ''} {shown}"
            parts.append(part)
        text = ", ".join(parts)
        return text

    @property
    def ok(self) -> bool:
        """True if the solve met its tolerance or spent its fixed budget."""
        return self.status.ok

    @property
    def relative_residual(self) -> float | None:
        if self.residual_norm is None or self.b_norm == 0:
            return None
        return self.residual_norm / self.b_norm

    def __repr__(self) -> str:
        fields = [
            f"status={self.status.name}",
            f"num_steps={self.num_steps}",
            f"num_vjp={self.num_vjp}",
            f"num_jvp={self.num_jvp}",
            f"residual_norm={_fmt(self.residual_norm)}",
            f"error_bound={_fmt(self.error_bound)}",
            f"error_estimate={_fmt(self.error_estimate)}",
            f"solver={self.solver!r}",
        ]
        if self.attempts:
            fields.append(f"attempts={len(self.attempts)}")
        if self.sample_status is not None:
            fields.append(f"samples={self.batch_summary!r}")
        return "Result(" + ", ".join(fields) + ")"


def _fmt(value):
    return "None" if value is None else f"{value:.3e}"


class SolveError(RuntimeError):
    """A solve failed; ``.result`` holds the :class:`Result` with the last iterate.

    Raised by ``solve`` and ``solve_adjoint`` when ``throw=True`` and the status is not ok.
    """

    def __init__(self, result: Result):
        self.result = result
        solver = type(result.solver).__name__
        super().__init__(
            f"{solver} {result.status.name} after {result.num_steps} steps: {result.status.value}"
        )
