"""``analyze(J)``: is J a contraction, how conditioned is I - J, and which solver to use.

The report keeps apart what is *proved* from what is *estimated*. Only a declared
``norm_bound`` proves anything; Lanczos and Arnoldi give estimates, and a Lanczos
estimate of ``||J||`` can only fall short of it, so an estimate below 1 is never
reported as a contraction. Products that are not finite end the analysis as the
outcome "nonfinite", not as an exception.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import _backend
from ._bounds import neumann_steps
from ._estimates import (Estimate, check_int, check_rtol, estimate_norm, estimate_singular_values,
                         estimate_spectral_radius)
from ._operator import Identity, Operator

__all__ = ["analyze", "Report", "SolverAdvice"]

_VERDICTS = ("contraction", "likely contraction", "likely asymptotic", "likely divergent", "nonfinite")


@dataclasses.dataclass(frozen=True)
class SolverAdvice:
    """Whether a solver suits this J, and how many steps it needs for ``rtol``.

    Attributes
    ----------
    solver : str
    safe : bool
        True only when the solver's convergence does not rest on an estimate:
        FixedPoint and Neumann with a declared ``norm_bound`` q < 1; GMRES, LSQR and
        CGNE whenever J's products are finite (they need no contraction, and their
        status reports a singular ``I - J``).
    steps : int or None
        Step budget for a relative residual ``rtol``: an upper bound (in exact
        arithmetic) when ``certain``, otherwise an estimate.
    why : str
        The reason, with each figure labelled as a bound or an estimate.
    likely : bool
        Whether the estimates say the solver converges (True whenever ``safe``).
        FixedPoint and Neumann on an undeclared J are at best "likely".
    certain : bool
        Whether ``steps`` follows from a declared bound rather than from estimates.
    """

    solver: str
    safe: bool
    steps: int | None
    why: str
    likely: bool = False
    certain: bool = False

    @property
    def label(self) -> str:
        """``"safe"``, ``"likely"`` or ``"UNSAFE"``, as printed in the report."""
        return "safe" if self.safe else "likely" if self.likely else "UNSAFE"


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`analyze` found; ``str(report)`` prints it.

    Attributes
    ----------
    size : int
        Number of unknowns.
    norm : Estimate or None
        Lanczos estimate of ``||J||_2``, never above the true value (None without a
        jvp, or when an earlier product was not finite).
    declared_norm_bound : float or None
        The bound given as ``JacobianOperator(norm_bound=...)``.
    spectral_radius : Estimate
        Arnoldi estimate of ``rho(J)``, which can be too low or too high.
    sigma_max, sigma_min : float or None
        Extreme singular values of ``I - J``: ``1 + q`` and ``1 - q`` when ``certified``
        (bounds), otherwise Lanczos estimates (None without a jvp).
    condition : float or None
        ``sigma_max / sigma_min``: with ``certified`` the rigorous bound
        ``(1 + q) / (1 - q)``, otherwise an estimate that tends to be too low.
    contraction : str
        The verdict: "contraction" (proved by a declared bound q < 1), "likely
        contraction" (the estimate of ``||J||`` is below 1), "likely asymptotic"
        (estimated ``rho(J) < 1`` but ``||J||`` estimated ``>= 1`` or unknown),
        "likely divergent" (estimated ``rho(J) >= 1``) or "nonfinite" (a product of J
        was NaN or inf).
    advice : tuple of SolverAdvice
    rtol : float
        The relative tolerance the step budgets are for.
    g_norm : float or None
    certified : bool
        True only when a declared bound ``q < 1``, not contradicted by the estimates,
        proves J a contraction.
    declared_bound_contradicted : bool
        The estimates exceed the declared bound beyond rounding; since neither estimate
        can exceed ``||J||``, the declaration is wrong and was ignored.
    nonfinite_at : str or None
        Where a product was not finite, e.g. "the vjp at Arnoldi step 1".
    """

    size: int
    norm: Estimate | None
    declared_norm_bound: float | None
    spectral_radius: Estimate
    sigma_max: float | None
    sigma_min: float | None
    condition: float | None
    contraction: str
    advice: tuple
    rtol: float
    g_norm: float | None = None
    _cond_cost: tuple = (0, 0)
    certified: bool = False
    declared_bound_contradicted: bool = False
    nonfinite_at: str | None = None

    @property
    def num_vjp(self) -> int:
        return self.spectral_radius.num_vjp + (self.norm.num_vjp if self.norm else 0) + self._cond_cost[0]

    @property
    def num_jvp(self) -> int:
        return self.spectral_radius.num_jvp + (self.norm.num_jvp if self.norm else 0) + self._cond_cost[1]

    @property
    def margin(self) -> float | None:
        """``1 -`` the figure the verdict rests on (q, ``||J||`` or ``rho(J)``); None if nonfinite."""
        if self.contraction == "nonfinite":
            return None
        if self.certified:
            return 1.0 - self.declared_norm_bound
        if self.contraction == "likely contraction":
            return 1.0 - self.norm.value
        return 1.0 - self.spectral_radius.value

    def __str__(self) -> str:
        lines = [f"rbpsolve.analyze: J acts on {self.size} unknowns"]
        q, rho, margin = self.declared_norm_bound, self.spectral_radius, self.margin
        if q is not None:
            lines.append(f"  ||J||_2   <= {q:.6g}  (declared bound)")
        if self.norm is not None and not self.norm.nonfinite:
            lines.append(f"  ||J||_2   ~ {self.norm.value:.6g}  (estimate, Lanczos, {_progress(self.norm)};"
                         " a lower bound on the true value)")
        elif self.norm is None and self.contraction != "nonfinite":
            lines.append("  ||J||_2   : not estimated (needs a jvp)")
        if not rho.nonfinite:
            lines.append(f"  rho(J)    ~ {rho.value:.6g}  (estimate, Arnoldi, {_progress(rho)};"
                         " can be too low or too high)")
        if self.declared_bound_contradicted:
            lines.append(f"  WARNING: the declared bound {q:.6g} is wrong: the estimates above exceed it, and"
                         " neither can exceed ||J||_2; it is ignored below")
        verdict = _verdict_lines(self.contraction, q, self.norm, rho, margin, self.nonfinite_at)
        lines += ["  " + line for line in verdict]
        if self.condition is not None:
            if self.certified:
                lines.append(f"  cond(I - J) <= {self.condition:.4g}  (bound from the declared q: (1 + q) / (1 - q);"
                             f" sigma_max <= {self.sigma_max:.4g}, sigma_min >= {self.sigma_min:.4g})")
            else:
                lines.append(f"  cond(I - J) ~ {self.condition:.4g}  (estimate, Lanczos, tends to be too low;"
                             f" sigma_max ~ {self.sigma_max:.4g}, sigma_min ~ {self.sigma_min:.4g})")
        if self.g_norm is not None:
            finite = "" if math.isfinite(self.g_norm) else "  (g itself is not finite)"
            lines.append(f"  ||g|| = {self.g_norm:.6g}{finite}")
        lines.append(f"  solvers, for rtol = {self.rtol:g}:  (steps <= N: a bound; steps ~ N: an estimate)")
        for a in self.advice:
            steps = "?" if a.steps is None else str(a.steps)
            lines.append(f"    {a.solver:<11} {a.label:<6}  steps {'<=' if a.certain else '~ '} {steps:>6}   {a.why}")
        lines.append(f"  cost of this analysis: {self.num_vjp} VJPs, {self.num_jvp} JVPs")
        return "\n".join(lines)


def _progress(est: Estimate) -> str:
    return f"{est.num_steps} steps, {'converged' if est.converged else 'not converged: raise max_steps'}"


def _verdict_lines(verdict, q, norm, rho, margin, nonfinite_at) -> list[str]:
    if verdict == "nonfinite":
        return [f"NONFINITE: J's products are not finite at this point ({nonfinite_at} returned NaN or inf,",
                "or a figure built from it overflowed); no solver can be advised. Check the vjp/jvp and",
                "the state they linearise at."]
    if verdict == "contraction":
        return [f"J is a contraction, certified by the declared bound ||J||_2 <= {q:.6g} < 1 (margin {margin:.3g}):",
                "every solver converges; FixedPoint and Neumann at rate at most q"]
    if verdict == "likely contraction":
        return [f"J is likely a contraction: ||J||_2 ~ {norm.value:.6g} < 1 (estimate; margin 1 - ||J||_est ="
                f" {margin:.3g}).",
                "Not certified: a Lanczos estimate never exceeds ||J||_2, so the true norm may be larger and a",
                "small margin proves nothing; declare JacobianOperator(norm_bound=q) with a proved q < 1 to certify"]
    known = "||J||_2 unknown (needs a jvp)" if norm is None else f"||J||_2 ~ {norm.value:.6g} >= 1 (estimate)"
    if verdict == "likely asymptotic":
        return [f"likely asymptotic: rho(J) ~ {rho.value:.6g} < 1 (estimate; margin 1 - rho_est = {margin:.3g}) but"
                f" {known}:",
                "FixedPoint and Neumann likely converge at rate rho, after transient growth;"
                " Arnoldi's rho can be too low or too high"]
    return [f"likely divergent: rho(J) ~ {rho.value:.6g} >= 1 (estimate; margin 1 - rho_est = {margin:.3g};"
            " Arnoldi's rho can be too low or too high):",
            "FixedPoint and Neumann likely diverge; use GMRES, LSQR or CGNE"]


def analyze(J: Operator, g=None, *, rtol: float = 1e-6, max_steps: int = 40, seed: int = 0) -> Report:
    """Diagnose the adjoint system ``(I - J^T) z = g`` before solving it.

    Estimates ``||J||_2`` (Lanczos, needs a jvp), ``rho(J)`` (Arnoldi) and the extreme
    singular values of ``I - J``; says whether J is a contraction and which solvers are
    safe, with the steps each needs for a relative residual ``rtol``.

    Parameters
    ----------
    J : JacobianOperator
        Square. A declared ``norm_bound`` q < 1 is the only thing that certifies a
        contraction; it is checked against the estimates, which can prove it wrong.
    g : array, optional
        The right-hand side; only its norm is reported.
    rtol : float
        Target relative tolerance for the step budgets, in (0, 1).
    max_steps : int
        Krylov steps per estimate, ``>= 1`` (the analysis costs up to about
        ``5 * max_steps`` products).
    seed : int
        Seed of the random start vectors, ``>= 0``.

    Returns
    -------
    Report
        Products that are not finite give ``contraction == "nonfinite"``, no exception.

    Raises
    ------
    TypeError, ValueError
        On a bad argument, naming it.

    Notes
    -----
    Verdicts: "contraction" needs a declared q < 1. Without one, an estimate
    ``||J||_est < 1`` gives "likely contraction": Lanczos estimates converge to
    ``||J||`` from below, so the true norm may exceed 1 however close the estimate is
    (the report prints the margin ``1 - ||J||_est``). Then ``rho_est < 1`` gives
    "likely asymptotic" and ``rho_est >= 1`` "likely divergent"; Arnoldi's estimate of
    ``rho`` can err either way.

    Step budgets: FixedPoint and Neumann need ``K`` with ``q^{K+1} <= rtol``
    (Proposition 2), an upper bound with a declared ``q``; without one the same
    formula with ``||J||_est``, capped by ``log(rtol) / log(rho_est)``, is an estimate.
    CGNE and LSQR take ``kappa / 2 * ln(2 / rtol)`` with ``kappa = cond(I - J)`` (the
    CG bound on the normal equations); GMRES no more than FixedPoint when
    ``||J|| < 1`` (its residual is minimal over the same space), else ``n``.
    """
    if not isinstance(J, Operator) or not J.is_square:
        raise TypeError("analyze needs a square rbpsolve operator such as JacobianOperator(vjp, jvp, like=h)")
    rtol = check_rtol(rtol, below_one=True)
    max_steps = check_int("max_steps", max_steps, 1)
    seed = check_int("seed", seed, 0)
    n = J.in_space.global_size
    declared = J.norm_bound
    rho = estimate_spectral_radius(J, max_steps=max_steps, rtol=1e-4, seed=seed)
    norm = sv = None
    if J.has_mv and J.has_rmv and not rho.nonfinite:
        norm = estimate_norm(J, max_steps=max_steps, rtol=1e-4, seed=seed)
        if not norm.nonfinite:
            sv = estimate_singular_values(Identity(J.in_space) - J, max_steps=max_steps, rtol=1e-12, seed=seed + 1)
    nonfinite_at = None
    for est, where in ((rho, "Arnoldi step {}"), (norm, "Lanczos step {}"), (sv, "Lanczos step {} on I - J")):
        if est is not None and est.nonfinite:
            nonfinite_at = f"the {est.details['nonfinite_product']} at " + where.format(est.details["nonfinite_step"])
    # Lanczos and Arnoldi figures lie within ||J|| up to rounding: past that, the declaration is false.
    slack = 1 + math.sqrt(float(J.xp.finfo(J.dtype).eps))
    contradicted = declared is not None and any(
        est is not None and not est.nonfinite and est.value > declared * slack for est in (rho, norm))
    certified = nonfinite_at is None and declared is not None and declared < 1 and not contradicted

    sigma_max = sigma_min = condition = None
    if certified:
        sigma_max, sigma_min, condition = 1 + declared, 1 - declared, (1 + declared) / (1 - declared)
    elif sv is not None and not sv.nonfinite:
        sigma_max, sigma_min = sv.value, sv.details["sigma_min"]
        condition = sigma_max / sigma_min if sigma_min > 0 else math.inf
    if nonfinite_at is not None:
        verdict = "nonfinite"
    elif certified:
        verdict = "contraction"
    elif norm is not None and norm.value < 1:
        verdict = "likely contraction"
    else:
        verdict = "likely asymptotic" if rho.value < 1 else "likely divergent"
    advice = _advise(verdict, n, rtol, declared, norm, rho, condition, J.has_mv)
    g_norm = None
    if g is not None:
        with np.errstate(all="ignore"):  # a non-finite g is reported, not warned about
            # A sharded g's norm is over every rank's block; any other g is read in its own library.
            xp = J.xp if J.in_space.sharding is not None else _backend.namespace(g)
            g_norm = _backend.to_float(_backend.norm(xp, g))
    cond_cost = (sv.num_vjp, sv.num_jvp) if sv is not None else (0, 0)
    return Report(n, norm, declared, rho, sigma_max, sigma_min, condition, verdict, advice, rtol, g_norm,
                  cond_cost, certified, contradicted, nonfinite_at)


def _advise(verdict, n, rtol, q, norm, rho, condition, has_jvp) -> tuple:
    """One SolverAdvice per solver; "safe" for FixedPoint and Neumann only with a certificate."""
    if verdict == "nonfinite":
        why = "J's products are not finite at this point: check the vjp/jvp"
        return tuple(SolverAdvice(s, False, None, why) for s in ("Neumann", "FixedPoint", "GMRES", "LSQR", "CGNE"))
    certified = verdict == "contraction"
    asymptotic = math.ceil(math.log(rtol) / math.log(rho.value)) if 0 < rho.value < 1 else None
    if certified:
        steps = neumann_steps(rtol, q) + 1
        why = f"bound by Proposition 2 from the declared q = {q:.4g}"
        if asymptotic is not None and asymptotic < steps:
            why += f"; the rate rho(J) ~ {rho.value:.4g} (estimate) suggests about {asymptotic} Neumann steps"
    elif verdict == "likely contraction":
        bound = neumann_steps(rtol, norm.value) + 1
        steps = min(bound, asymptotic) if asymptotic else bound
        why = (f"likely converges: ||J|| ~ {norm.value:.4g} (estimate; margin {1 - norm.value:.2g}); not certified,"
               " a Lanczos estimate never exceeds ||J||")
    elif verdict == "likely asymptotic":
        steps = asymptotic
        why = (f"likely converges at rate rho(J) ~ {rho.value:.4g} (estimate; margin {1 - rho.value:.2g}),"
               " after transient growth: ||J|| >= 1 or unknown")
    else:
        steps, why = None, f"rho(J) ~ {rho.value:.4g} >= 1 (estimate): the series likely diverges"
    likely = verdict != "likely divergent"
    advice = [SolverAdvice("Neumann", certified, steps, why, likely, certified),
              SolverAdvice("FixedPoint", certified, None if steps is None else steps + 1, why, likely, certified)]
    if certified or verdict == "likely contraction":
        gmres = min(n, steps)
        why = ("needs only VJPs and no contraction; no more steps than FixedPoint or n"
               + (" (bound from the declared q)" if certified else " (estimate)"))
    else:
        gmres = n
        why = "needs only VJPs and no contraction; converges within n steps unrestarted if I - J is nonsingular"
    advice.append(SolverAdvice("GMRES", True, gmres, why, True, certified))
    for name in ("LSQR", "CGNE"):
        if not has_jvp:
            advice.append(SolverAdvice(name, False, None, "needs a jvp"))
        elif condition is None or not math.isfinite(condition):
            why = "I - J looks singular (estimate): LSQR gives a least-squares solution"
            advice.append(SolverAdvice(name, True, None, why, True))
        else:
            # Not capped at n: the finite-termination property is lost to rounding.
            krylov = math.ceil(condition / 2 * math.log(2 / rtol))
            why = (f"CG bound on the normal equations, cond(I - J) <= {condition:.3g} (bound from the declared q)"
                   if certified else
                   f"normal equations square cond(I - J) ~ {condition:.3g} (estimate, tends to be too low)")
            advice.append(SolverAdvice(name, True, krylov, why, True, certified))
    return tuple(advice)
