"""``analyze(J)``: is J a contraction, how conditioned is I - J, and which solver to use."""

from __future__ import annotations

import dataclasses
import math

from . import _backend
from ._bounds import neumann_steps
from ._estimates import Estimate, estimate_norm, estimate_singular_values, estimate_spectral_radius
from ._operator import Identity, Operator

__all__ = ["analyze", "Report", "SolverAdvice"]


@dataclasses.dataclass(frozen=True)
class SolverAdvice:
    """Whether a solver suits this J, and about how many steps it needs for ``rtol``."""

    solver: str
    safe: bool
    steps: int | None
    why: str


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`analyze` found; ``str(report)`` prints it.

    Attributes
    ----------
    size : int
        Number of unknowns.
    norm : Estimate or None
        ``||J||_2`` (None without a jvp).
    declared_norm_bound : float or None
        The bound given as ``JacobianOperator(norm_bound=...)``.
    spectral_radius : Estimate
        ``rho(J)``.
    sigma_max, sigma_min : float or None
        Estimated extreme singular values of ``I - J`` (None without a jvp).
    condition : float or None
        ``sigma_max / sigma_min`` of ``I - J``: an estimate from a few Lanczos steps,
        which tends to underestimate; or, with a declared ``q < 1``, the rigorous
        bound ``(1 + q) / (1 - q)``.
    contraction : str
        "contraction", "asymptotic" (rho < 1 <= ||J||: transient growth) or "divergent".
    advice : tuple of SolverAdvice
    rtol : float
        The relative tolerance the step budgets are for.
    g_norm : float or None
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

    @property
    def num_vjp(self) -> int:
        return self.spectral_radius.num_vjp + (self.norm.num_vjp if self.norm else 0) + self._cond_cost[0]

    @property
    def num_jvp(self) -> int:
        return self.spectral_radius.num_jvp + (self.norm.num_jvp if self.norm else 0) + self._cond_cost[1]

    _cond_cost: tuple = (0, 0)

    def __str__(self) -> str:
        lines = [f"rbpsolve.analyze: J acts on {self.size} unknowns"]
        if self.declared_norm_bound is not None:
            lines.append(f"  declared ||J||_2 <= {self.declared_norm_bound:.6g}")
        if self.norm is not None:
            lines.append(
                f"  ||J||_2   ~ {self.norm.value:.6g}  (Lanczos, {self.norm.num_steps} steps, "
                f"{'converged' if self.norm.converged else 'not converged'})"
            )
        else:
            lines.append("  ||J||_2   : not estimated (needs a jvp)")
        rho = self.spectral_radius
        lines.append(
            f"  rho(J)    ~ {rho.value:.6g}  (Arnoldi, {rho.num_steps} steps, "
            f"{'converged' if rho.converged else 'not converged'})"
        )
        verdict = {
            "contraction": "J is a contraction: every solver converges; FixedPoint and Neumann at rate ||J||",
            "asymptotic": "rho(J) < 1 <= ||J||: FixedPoint and Neumann converge, after transient growth",
            "divergent": "rho(J) >= 1: FixedPoint and Neumann diverge; use GMRES, LSQR or CGNE",
        }[self.contraction]
        lines.append(f"  {verdict}")
        if self.condition is not None:
            lines.append(
                f"  cond(I - J) ~ {self.condition:.4g}  (sigma_max ~ {self.sigma_max:.4g}, sigma_min ~ {self.sigma_min:.4g})"
            )
        if self.g_norm is not None:
            lines.append(f"  ||g|| = {self.g_norm:.6g}")
        lines.append(f"  solvers, for rtol = {self.rtol:g}:")
        for a in self.advice:
            steps = "?" if a.steps is None else str(a.steps)
            lines.append(f"    {a.solver:<11} {'safe  ' if a.safe else 'UNSAFE'}  steps ~ {steps:>6}   {a.why}")
        lines.append(f"  cost of this analysis: {self.num_vjp} VJPs, {self.num_jvp} JVPs")
        return "\n".join(lines)


def analyze(J: Operator, g=None, *, rtol: float = 1e-6, max_steps: int = 40, seed: int = 0) -> Report:
    """Diagnose the adjoint system ``(I - J^T) z = g`` before solving it.

    Estimates ``||J||_2`` (Lanczos, needs a jvp), ``rho(J)`` (Arnoldi) and the extreme
    singular values of ``I - J``; says whether J is a contraction and which solvers are
    safe, with the steps each needs for a relative residual ``rtol``.

    Parameters
    ----------
    J : JacobianOperator
        Square.
    g : array, optional
        The right-hand side; only its norm is reported.
    rtol : float
        Target relative tolerance for the step budgets.
    max_steps : int
        Krylov steps per estimate (the analysis costs up to about ``5 * max_steps``
        products).
    seed : int
        Seed of the random start vectors.

    Notes
    -----
    Step budgets: FixedPoint and Neumann need ``K`` with ``q^{K+1} <= rtol``
    (Proposition 2) where ``q = ||J||`` if below 1, else ``log(rtol) / log(rho)``
    asymptotically; CGNE and LSQR about ``kappa / 2 * ln(2 / rtol)`` with
    ``kappa = cond(I - J)`` (the CG bound on the normal equations); GMRES at most as
    many as FixedPoint when ``||J|| < 1`` (its residual is minimal over the same space),
    and at most ``n`` otherwise. All are estimates unless ``norm_bound`` was declared.
    """
    if not isinstance(J, Operator) or not J.is_square:
        raise TypeError("analyze needs a square rbpsolve operator such as JacobianOperator(vjp, jvp, like=h)")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must lie in (0, 1); got {rtol}")
    n = J.in_space.size
    declared = J.norm_bound
    rho = estimate_spectral_radius(J, max_steps=max_steps, rtol=1e-4, seed=seed)
    norm = sigma_max = sigma_min = condition = None
    cond_cost = (0, 0)
    if J.has_mv and J.has_rmv:
        norm = estimate_norm(J, max_steps=max_steps, rtol=1e-4, seed=seed)
        sv = estimate_singular_values(Identity(J.in_space) - J, max_steps=max_steps, rtol=1e-12, seed=seed + 1)
        sigma_max, sigma_min = sv.value, sv.details["sigma_min"]
        condition = sigma_max / sigma_min if sigma_min > 0 else math.inf
        cond_cost = (sv.num_vjp, sv.num_jvp)
    q = declared if declared is not None else (norm.value if norm is not None else None)
    if declared is not None and declared < 1:
        condition = (1 + declared) / (1 - declared)
        sigma_max, sigma_min = 1 + declared, 1 - declared
    if q is not None and q < 1:
        contraction = "contraction"
    elif rho.value < 1:
        contraction = "asymptotic"
    else:
        contraction = "divergent"

    asymptotic = math.ceil(math.log(rtol) / math.log(rho.value)) if 0 < rho.value < 1 else None
    if q is not None and q < 1:
        guaranteed = neumann_steps(rtol, q) + 1
        stationary_steps = min(guaranteed, asymptotic) if asymptotic else guaranteed
        why = f"||J|| < 1: at most {guaranteed} steps by Proposition 2, about log(rtol)/log(rho) in practice"
    elif rho.value < 1:
        stationary_steps = asymptotic
        why = "rho(J) < 1 but ||J|| >= 1 or unknown: asymptotic rate rho, expect transient growth"
    else:
        stationary_steps, why = None, "rho(J) >= 1: the series diverges"
    stationary_safe = contraction != "divergent"
    advice = [
        SolverAdvice("Neumann", stationary_safe, stationary_steps, why),
        SolverAdvice("FixedPoint", stationary_safe, None if stationary_steps is None else stationary_steps + 1, why),
    ]
    gmres_steps = min(n, stationary_steps) if (q is not None and q < 1) else n
    advice.append(SolverAdvice("GMRES", True, gmres_steps, "needs only VJPs and no contraction; at most n steps unrestarted"))
    if condition is not None and math.isfinite(condition):
        # Not capped at n: the finite-termination property is lost to rounding.
        krylov = math.ceil(condition / 2 * math.log(2 / rtol))
        for name in ("LSQR", "CGNE"):
            advice.append(SolverAdvice(name, True, krylov, f"normal equations square cond(I - J) ~ {condition:.3g}"))
    else:
        why_nj = "needs a jvp" if not J.has_mv else "I - J looks singular: LSQR gives a least-squares solution"
        for name in ("LSQR", "CGNE"):
            advice.append(SolverAdvice(name, J.has_mv, None, why_nj))
    g_norm = None
    if g is not None:
        g_norm = _backend.to_float(_backend.norm(_backend.namespace(g), g))
    return Report(n, norm, declared, rho, sigma_max, sigma_min, condition, contraction, tuple(advice), rtol, g_norm, cond_cost)
