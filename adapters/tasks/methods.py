r"""The gradient methods of Liao et al. (2018), one table for all three reference tasks.

Every task computes ``dL/dtheta`` for a loss ``L(h_T)`` after ``T`` steps ``h_{t+1} = F(h_t)``.
The methods differ only in the backward pass, whose budget is the truncation ``K``:

======================  ===============  ================================================================
canonical name          label            backward pass (paper reference)
======================  ===============  ================================================================
``bptt``                BPTT             back-propagation through all ``T`` steps
``tbptt``               TBPTT            through the last ``K`` steps only
``rbp``                 RBP              Algorithm 1: ``z <- J^T z + g`` for ``K`` steps, from
                                         ``z_0 ~ U(0, 1)`` as the paper's code (``rbpsolve.FixedPoint``)
``cg_rbp``              CG-RBP           ``K`` conjugate-gradient steps on the normal equations of the
                                         adjoint system, Eq. (16) / Algorithm 2 (``rbpsolve.CGNE``)
``neumann_rbp``         Neumann-RBP      Algorithm 3: ``z = sum_{k=0}^{K} (J^T)^k g``, Eq. (15)
                                         (``rbpsolve.Neumann``)
``gmres``               GMRES-RBP        ``K`` GMRES steps on ``(I - J^T) z = g`` (beyond the paper)
``lsqr``                LSQR-RBP         ``K`` LSQR steps (beyond the paper)
``randomized_neumann``  RandNeumann-RBP  Russian-roulette Neumann series, unbiased (beyond the paper)
``fallback``            Fallback-RBP     Neumann-RBP, GMRES(K) when the series diverges (beyond the
                                         paper; the Hopfield task only)
======================  ===============  ================================================================

The RBP methods solve the adjoint system ``(I - J^T) z = g`` of Eq. (7), with ``J = dF/dh``
at the last state and ``g = dL/dh_T``, and return ``z^T dF/dtheta`` (Eq. 6). Every solver gets
a fixed budget of ``K`` steps and no tolerance (``rtol = atol = 0``), as the paper's code.

**Divergence.** The paper's RBP and Neumann-RBP run their ``K`` steps whatever the terms do
(Algorithm 1 and 3 have no test), so both get ``divergence_factor=inf``: rbpsolve's default
(``1e4``, a ``DIVERGED`` status and the best iterate under ``on_failure="warn"``) would change
the gradient the paper's method computes, and the whole point of Table 1 is to show what the
plain series does when ``rho(J) > 1``. A task may still *flag* a diverging solve (the Hopfield
task does, by the same 1e4 rule, without changing the gradient).

Older run files used short names (``neumann``, ``cg``, ``rneumann``); :data:`ALIASES` maps
them, and every name a user or a file gives goes through :func:`canonical`.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["ALIASES", "EXTRA_METHODS", "METHODS", "PAPER_METHODS", "Method", "canonical", "label", "solver"]


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of the table.

    Attributes
    ----------
    name : str
        Canonical name (used in command lines, run files and tables).
    label : str
        Display name (the paper's where it has one).
    unrolled : bool
        Back-propagation through (part of) the unrolled graph; no adjoint solve.
    products : str
        What the backward needs of ``F``: ``"graph"`` (the unrolled graph), ``"vjp"``
        (vector-Jacobian products only) or ``"vjp+jvp"`` (also Jacobian-vector products).
    random_start : bool
        The adjoint iteration starts from ``z_0 ~ U(0, 1)`` (the paper's code's RBP).
    reference : str
        Where the paper defines it.
    """

    name: str
    label: str
    unrolled: bool = False
    products: str = "vjp"
    random_start: bool = False
    reference: str = "beyond the paper"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("bptt", "BPTT", unrolled=True, products="graph", reference="Sec. 2 (back-propagation through time)"),
    Method("tbptt", "TBPTT", unrolled=True, products="graph", reference="Sec. 2 (truncated after K steps)"),
    Method("rbp", "RBP", random_start=True, reference="Algorithm 1"),
    Method("cg_rbp", "CG-RBP", products="vjp+jvp", reference="Eq. (16), Algorithm 2"),
    Method("neumann_rbp", "Neumann-RBP", reference="Eq. (15), Algorithm 3"),
    Method("gmres", "GMRES-RBP"),
    Method("lsqr", "LSQR-RBP", products="vjp+jvp"),
    Method("randomized_neumann", "RandNeumann-RBP"),
    Method("fallback", "Fallback-RBP"),
)}

#: The five methods the paper compares, in its order.
PAPER_METHODS = ("bptt", "tbptt", "rbp", "cg_rbp", "neumann_rbp")
#: The library's further solvers.
EXTRA_METHODS = ("gmres", "lsqr", "randomized_neumann", "fallback")

#: Other spellings (today's and older run files'), accepted everywhere and normalised by :func:`canonical`.
ALIASES = {
    "neumann": "neumann_rbp", "cg": "cg_rbp", "rneumann": "randomized_neumann",
    "cg-rbp": "cg_rbp", "neumann-rbp": "neumann_rbp", "randomized-neumann": "randomized_neumann",
}

#: How often a solve may grow its update norm before a task *flags* it diverging (rbpsolve's default rule).
FLAG_FACTOR = 1e4


def canonical(name: str, allowed=None) -> str:
    """The canonical name of ``name`` (case and surrounding blanks ignored, aliases mapped).

    Parameters
    ----------
    name : str
        A canonical name or an alias (``neumann``, ``cg``, ``rneumann``, ...).
    allowed : iterable of str, optional
        The names this caller accepts (default every method of :data:`METHODS`).

    Raises
    ------
    ValueError
        If ``name`` is none of them; the message lists the choices.
    """
    allowed = tuple(METHODS if allowed is None else allowed)
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in allowed:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(allowed)}")
    return key


def label(name: str) -> str:
    """The display name of a method given by any spelling (unknown names are returned as given)."""
    try:
        return METHODS[canonical(name)].label
    except ValueError:
        return str(name)


def solver(name: str, K: int, **departures):
    """The rbpsolve solver of an RBP-family method with budget ``K``.

    Parameters
    ----------
    name : str
        Any spelling of ``rbp``, ``cg_rbp``, ``neumann_rbp``, ``gmres``, ``lsqr``,
        ``randomized_neumann`` or ``fallback``.
    K : int
        The step budget (the paper's truncation).
    **departures
        Settings a task changes from the table's (keyword arguments of the solver's
        constructor); the task says why where it passes them.

    Returns
    -------
    rbpsolve solver
        ``max_steps=K``, ``rtol=atol=0``; the series with ``divergence_factor=inf`` (see the
        module docstring). ``randomized_neumann``: ``K // 2`` fixed terms, then continue with
        probability ``K / (K + 2)``: ``K`` products on average, the budget of the others.
        ``fallback``: ``Neumann(max_steps=K)`` with the default divergence test, then
        ``GMRES(K)``.
    """
    import rbpsolve

    name = canonical(name)
    if METHODS[name].unrolled:
        raise ValueError(f"{name!r} back-propagates through the unrolled graph; it has no adjoint solver")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"truncation K must be an int >= 1; got {K!r}")
    fixed = dict(max_steps=K, rtol=0.0, atol=0.0)
    series = dict(fixed, divergence_factor=math.inf)
    if name == "rbp":
        return rbpsolve.FixedPoint(**{**series, **departures})
    if name == "neumann_rbp":
        return rbpsolve.Neumann(**{**series, **departures})
    if name == "cg_rbp":
        return rbpsolve.CGNE(**{**fixed, **departures})
    if name == "gmres":
        return rbpsolve.GMRES(**{**fixed, "restart": K, **departures})
    if name == "lsqr":
        return rbpsolve.LSQR(**{**fixed, **departures})
    if name == "randomized_neumann":
        settings = dict(series, continue_prob=K / (K + 2), min_steps=K // 2, max_steps=10 * K)
        return rbpsolve.RandomizedNeumann(**{**settings, **departures})
    # fallback
    return rbpsolve.Fallback(rbpsolve.Neumann(max_steps=K, divergence_factor=FLAG_FACTOR),
                             rbpsolve.GMRES(**fixed, restart=K))
