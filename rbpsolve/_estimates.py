"""Estimates of ||J||_2, of the extreme singular values of an operator and of the
spectral radius rho(J), each with the number of products it spent.

Every figure here is an *estimate* from a few Krylov steps, never a bound: the Lanczos
value of ``||A||`` can only be too low, Arnoldi's value of ``rho(J)`` can be too low or
too high. A product that returns NaN or inf (or a figure that overflows) ends an
estimate early with ``value = nan`` and ``details["nonfinite"] = True``, rather than an
exception from the dense linear algebra underneath.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from . import _backend
from ._gram_schmidt import orthogonalise
from ._operator import Operator
from ._space import ProductCounter

__all__ = ["Estimate", "estimate_norm", "estimate_singular_values", "estimate_spectral_radius"]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """An estimated quantity and what it cost.

    Attributes
    ----------
    value : float
        The estimate; ``math.nan`` when a product was not finite (see ``details``).
    num_steps : int
        Lanczos or Arnoldi steps taken.
    num_vjp, num_jvp : int
        Products with J^T and J spent.
    converged : bool
        Whether successive estimates agreed to ``rtol`` (or the Krylov space became
        invariant, which makes the estimate exact up to rounding). Convergence of an
        estimate is not a bound on the quantity: see each function's Notes.
    details : dict
        Extra figures: ``sigma_min`` for singular values, ``ritz_values`` for the
        spectral radius. When a product returned NaN or inf, or a figure built from it
        overflowed, also ``nonfinite`` (True), ``nonfinite_step`` (the step, from 1)
        and ``nonfinite_product`` (``"jvp"`` for ``A x``, ``"vjp"`` for ``A^T y``).
    """

    value: float
    num_steps: int
    num_vjp: int
    num_jvp: int
    converged: bool
    details: dict = dataclasses.field(default_factory=dict)

    def __float__(self) -> float:
        return self.value

    @property
    def nonfinite(self) -> bool:
        """Whether the estimate stopped on a product that was not finite."""
        return bool(self.details.get("nonfinite", False))


class _NonFinite(Exception):
    """A product, or a figure computed from it, is NaN or inf: ends an estimate."""

    def __init__(self, product: str):
        super().__init__(product)
        self.product = product


# ----------------------------------------------------------------------------- argument checks
def check_int(name: str, value, low: int) -> int:
    """``value`` as an int ``>= low``; bools are refused although Python counts them as ints."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}; got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return int(value)


def check_rtol(value, *, below_one: bool = False) -> float:
    """``rtol`` as a finite float > 0 (and < 1 with ``below_one``); refuses bools and NaN."""
    wanted = "in (0, 1)" if below_one else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"rtol must be a real number {wanted}; got {value!r} ({type(value).__name__})")
    rtol = float(value)
    if below_one and not 0 < rtol < 1:
        raise ValueError(f"rtol must lie in (0, 1); got {value!r}")
    if not (rtol > 0 and math.isfinite(rtol)):
        raise ValueError(f"rtol must be > 0 and finite; got {value!r}")
    return rtol


def _check(op, max_steps, rtol, seed) -> tuple[int, float, int]:
    if not isinstance(op, Operator):
        raise TypeError(f"expected an rbpsolve operator such as JacobianOperator; got {type(op).__name__}")
    return check_int("max_steps", max_steps, 1), check_rtol(rtol), check_int("seed", seed, 0)


# ----------------------------------------------------------------------------- finite arithmetic
def _norm(xp, u, product: str) -> float:
    """``||u||_2`` as a float; raises :class:`_NonFinite` if it is not finite.

    Squaring entries overflows float32 from about 1e19 and underflows below 1e-23, so a
    norm of 0 or inf is recomputed on ``u / max|u|``: only NaN, inf or a norm past the
    largest float of ``u``'s dtype count as non-finite.
    """
    value = _backend.to_float(_backend.norm(xp, u))
    if value == 0.0 or value == math.inf:
        scale = _backend.to_float(xp.max(xp.abs(u)))
        value = scale * _backend.to_float(_backend.norm(xp, u / scale)) if 0.0 < scale < math.inf else scale
        if value > float(xp.finfo(u.dtype).max):
            value = math.inf
    if not math.isfinite(value):
        raise _NonFinite(product)
    return value


def _orthogonalise(xp, w, basis, product: str):
    """``w`` (of any shape) orthogonalised twice against the rows of ``basis`` (full
    reorthogonalisation, :func:`rbpsolve._gram_schmidt.orthogonalise`); raises
    :class:`_NonFinite` on a NaN or inf coefficient, which any NaN or inf in ``w`` causes
    (``inf * 0`` is NaN), before it spreads further."""
    if basis is None or basis.shape[0] == 0:
        return w, np.zeros(0)
    flat, coefficients, _, _ = orthogonalise(xp, basis, xp.reshape(w, (-1,)), twice=True)
    if not np.all(np.isfinite(coefficients)):
        raise _NonFinite(product)
    return xp.reshape(flat, w.shape), coefficients


class _Basis:
    """Rows of a ``(capacity, n)`` array, filled in turn (written in place where the
    library allows it, functionally on JAX)."""

    def __init__(self, xp, space, capacity: int):
        self.xp, self.size = xp, 0
        self.rows = xp.empty((capacity, space.size), dtype=space.dtype, device=space.device)

    def append(self, v) -> None:
        self.rows = _backend.set_row(self.xp, self.rows, self.size, self.xp.reshape(v, (-1,)))
        self.size += 1

    @property
    def filled(self):
        return self.rows[: self.size, :]


def _caller_errstate():
    """A context that runs a user's product under the caller's numpy error settings.

    The estimates run their own arithmetic with floating-point warnings off (a NaN is
    reported through ``details["nonfinite"]``), but a warning raised inside the user's
    vjp/jvp is the user's to see.
    """
    settings = np.geterr()
    return lambda: np.errstate(**settings)


def _stopped(k: int, counter, product: str, details: dict) -> Estimate:
    details.update(nonfinite=True, nonfinite_step=k + 1, nonfinite_product=product)
    return Estimate(math.nan, k + 1, counter.vjp, counter.jvp, False, details)


def estimate_singular_values(
    A: Operator, *, max_steps: int = 30, rtol: float = 1e-4, seed: int = 0, vectors: bool = False
) -> Estimate:
    """Largest (``value``) and smallest (``details["sigma_min"]``) singular values of ``A``.

    Parameters
    ----------
    A : Operator
        Any shape; needs products with both ``A`` and ``A^T``.
    max_steps : int
        At most this many Lanczos steps (``>= 1``).
    rtol : float
        Stop once successive estimates agree to this relative tolerance (``> 0``).
    seed : int
        Seed of the random start vector (``>= 0``).
    vectors : bool
        Also return the Ritz vectors of ``sigma_min`` (below).

    Returns
    -------
    Estimate
        ``value = nan`` and ``details["nonfinite"] = True`` if a product was not finite.
        With ``vectors=True`` and finite products, ``details`` also holds
        ``right_vector_min`` (``v``, unit norm, an array of ``A``'s input space),
        ``left_vector_min`` (``u``, of its output space; None when ``A v = 0`` exactly)
        and ``residual_min``, the norm ``||A^T A v - sigma_min^2 v||`` (below).

    Raises
    ------
    TypeError, ValueError
        On a bad argument, naming it; ValueError without both products.

    Notes
    -----
    Golub-Kahan-Lanczos bidiagonalisation from a random start, with full
    reorthogonalisation; each step costs one product with ``A`` and one with ``A^T``.
    The largest singular value of the bidiagonal never exceeds ``||A||`` and converges
    to it quickly; the smallest converges from above and slowly, so
    ``value / sigma_min`` underestimates the condition number until the Krylov space
    is large.

    After ``k`` steps ``A V_k = U_k B_k`` and ``A^T U_k = V_k B_k^T + beta_k v_{k+1} e_k^T``
    with ``B_k`` upper bidiagonal. If ``B_k = P S Q^T`` and ``(p, sigma, q)`` is its
    smallest triple, ``v = V_k q`` and ``u = U_k p`` satisfy ``A v = sigma u`` exactly and
    ``A^T u - sigma v = beta_k p_k v_{k+1}``, so ``A^T A v - sigma^2 v`` has the norm
    ``sigma beta_k |p_k|`` (``residual_min``) at no extra product. ``sigma^2`` is then the
    Rayleigh quotient of ``A^T A`` at ``v``: never below ``lambda_min(A^T A)``, and within
    ``residual_min`` of *some* eigenvalue of ``A^T A`` (not necessarily the smallest).
    """
    if not isinstance(vectors, bool):
        raise TypeError(f"vectors must be True or False; got {vectors!r}")
    return _bidiagonalise(A, max_steps=max_steps, rtol=rtol, seed=seed, smallest=True, vectors=vectors)


def _bidiagonalise(
    A: Operator, *, max_steps: int, rtol: float, seed: int, smallest: bool, vectors: bool = False
) -> Estimate:
    """Golub-Kahan-Lanczos; converge on sigma_max, and on sigma_min too if ``smallest``."""
    max_steps, rtol, seed = _check(A, max_steps, rtol, seed)
    if not (A.has_mv and A.has_rmv):
        raise ValueError(
            "singular values need products with both J and J^T: build the JacobianOperator with jvp= as well as vjp="
        )
    counter = ProductCounter()
    op = A.with_counter(counter)
    xp = op.xp
    users = _caller_errstate()
    dimension = min(op.in_space.global_size, op.out_space.global_size)
    steps = min(max_steps, dimension)
    v = op.in_space.random_unit(seed)
    V, U = _Basis(xp, op.in_space, steps + 1), _Basis(xp, op.out_space, steps)
    V.append(v)
    alphas, betas = [], []
    u_prev, beta = None, 0.0
    previous, converged = None, False
    sigma_max = sigma_min = 0.0
    k, product = 0, "jvp"
    with np.errstate(all="ignore"):
        try:
            for k in range(steps):
                product = "jvp"
                with users():
                    u = op.mv(v)
                if u_prev is not None:
                    u = u - beta * u_prev
                u, _ = _orthogonalise(xp, u, U.filled, product)
                alpha = _norm(xp, u, product)
                alphas.append(alpha)
                invariant = alpha == 0.0
                if not invariant:
                    u = u / alpha
                    U.append(u)
                    product = "vjp"
                    with users():
                        w = op.rmv(u)
                    w, _ = _orthogonalise(xp, w - alpha * v, V.filled, product)
                    beta = _norm(xp, w, product)
                    # the whole space spanned (k + 1 = dimension) makes the estimates exact; the
                    # end of the step budget alone proves nothing
                    invariant = beta == 0.0 or k == dimension - 1
                B = np.diag(alphas) + np.diag(betas, 1)
                s = np.linalg.svd(B, compute_uv=False)
                sigma_max, sigma_min = float(s[0]), float(s[-1])
                if previous is not None and abs(sigma_max - previous[0]) <= rtol * sigma_max:
                    # sigma_min converges later and from above: only trust it once it settles too.
                    converged = not smallest or abs(sigma_min - previous[1]) <= rtol * sigma_min
                if invariant or converged or k == steps - 1:
                    converged = converged or invariant
                    break
                previous = (sigma_max, sigma_min)
                betas.append(beta)
                v = w / beta
                V.append(v)
                u_prev = u
        except _NonFinite as stop:
            return _stopped(k, counter, stop.product, {"sigma_min": math.nan})
    details = {"sigma_min": sigma_min}
    if vectors:
        details.update(_smallest_vectors(xp, op, alphas, betas, beta, V.filled, U.filled))
    return Estimate(sigma_max, len(alphas), counter.vjp, counter.jvp, converged, details)


def _smallest_vectors(xp, op, alphas, betas, last_beta, V, U) -> dict:
    """The Ritz vectors of the smallest singular value of the bidiagonal, and the residual
    ``sigma beta_k |p_k|`` of ``(sigma^2, v)`` as an eigenpair of ``A^T A`` (see
    :func:`estimate_singular_values`)."""
    k = len(alphas)
    B = np.diag(alphas) + np.diag(betas[: k - 1], 1)
    P, s, Qt = np.linalg.svd(B)
    p, sigma, q = P[:, -1], float(s[-1]), Qt[-1, :]
    v = xp.reshape(_combine(xp, V[:k, :], q), op.in_space.shape)
    if alphas[-1] == 0.0:  # A v_k lies in span(U_{k-1}): B's last row is zero, B q = 0, so A v = 0 exactly
        return {"right_vector_min": v, "left_vector_min": None, "residual_min": 0.0}
    u = xp.reshape(_combine(xp, U[:k, :], p), op.out_space.shape)
    return {"right_vector_min": v, "left_vector_min": u, "residual_min": sigma * last_beta * abs(float(p[-1]))}


def _combine(xp, rows, coefficients):
    """``sum_j c_j rows[j]`` on the basis's backend (the coefficients are host floats)."""
    c = _backend.from_numpy(xp, np.ascontiguousarray(coefficients), dtype=rows.dtype, device=_backend.device_of(rows))
    return xp.matmul(xp.reshape(c, (1, -1)), rows)[0, :]


def estimate_norm(J: Operator, *, max_steps: int = 30, rtol: float = 1e-4, seed: int = 0) -> Estimate:
    """``||J||_2``, the largest singular value: an estimate that is never above it.

    See :func:`estimate_singular_values` for the parameters; needs both ``vjp`` and
    ``jvp``.

    Notes
    -----
    Each Lanczos estimate is a singular value of a projection of J, so in exact
    arithmetic it never exceeds ``||J||_2`` and converges to it from below. It is
    therefore a lower bound, never a certificate: an estimate below 1 does not prove
    that J is a contraction (a small gap to 1 proves nothing), but an estimate above a
    declared ``norm_bound`` proves the declaration wrong.

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> W = np.diag([0.9, 0.5, 0.1])
    >>> J = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(3))
    >>> round(rbpsolve.estimate_norm(J).value, 6)
    0.9

    A product that is not finite ends the estimate with NaN instead of an exception:

    >>> bad = rbpsolve.JacobianOperator(lambda u: u * np.nan, lambda v: v * np.nan, like=np.zeros(3))
    >>> est = rbpsolve.estimate_norm(bad)
    >>> est.value, est.details["nonfinite"], est.details["nonfinite_product"]
    (nan, True, 'jvp')
    """
    return _bidiagonalise(J, max_steps=max_steps, rtol=rtol, seed=seed, smallest=False)


def estimate_spectral_radius(
    J: Operator, *, max_steps: int = 30, rtol: float = 1e-4, seed: int = 0, product: str = "auto"
) -> Estimate:
    """The spectral radius ``rho(J) = max |lambda_i(J)|`` by Arnoldi iteration.

    Parameters
    ----------
    J : Operator
        Square.
    max_steps : int
        At most this many Arnoldi steps (``>= 1``).
    rtol : float
        Stop once two successive pairs of estimates agree to this relative tolerance
        (``> 0``).
    seed : int
        Seed of the random start vector (``>= 0``).
    product : {"auto", "vjp", "jvp"}
        Which products to use: ``J^T`` and ``J`` have the same eigenvalues. ``"auto"``
        takes VJPs, which every JacobianOperator has.

    Returns
    -------
    Estimate
        ``value = nan`` and ``details["nonfinite"] = True`` if a product was not finite.

    Raises
    ------
    TypeError, ValueError
        On a bad argument, naming it; ValueError for a non-square operator or a missing
        product.

    Notes
    -----
    The Ritz values of the Arnoldi Hessenberg matrix (``details["ritz_values"]``)
    approximate the outer eigenvalues first; the estimate is exact once the Krylov
    space is invariant. Unlike power iteration it handles complex pairs and does not
    stall when two eigenvalues share a modulus. FixedPoint and Neumann converge iff
    ``rho(J) < 1``.

    Before that the estimate is no bound either way: the Ritz values lie in the field of
    values of J, so they can fall short of ``rho(J)`` (an outer eigenvalue not yet
    found) or exceed it (a non-normal J), though never ``||J||_2``.
    """
    max_steps, rtol, seed = _check(J, max_steps, rtol, seed)
    if not J.is_square:
        raise ValueError(f"the spectral radius needs a square operator; got {J.in_shape} -> {J.out_shape}")
    if not isinstance(product, str):
        raise TypeError(f"product must be 'auto', 'vjp' or 'jvp'; got {product!r} ({type(product).__name__})")
    if product not in ("auto", "vjp", "jvp"):
        raise ValueError(f"product must be 'auto', 'vjp' or 'jvp'; got {product!r}")
    use_transpose = product == "vjp" or (product == "auto" and J.has_rmv)
    if use_transpose and not J.has_rmv:
        raise ValueError("product='vjp' but this operator has no vjp")
    if not use_transpose and not J.has_mv:
        raise ValueError("product='jvp' but this operator was built without jvp=")
    counter = ProductCounter()
    op = J.with_counter(counter)
    apply, name = (op.rmv, "vjp") if use_transpose else (op.mv, "jvp")
    xp = op.xp
    users = _caller_errstate()
    steps = min(max_steps, op.in_space.global_size)
    basis = _Basis(xp, op.in_space, steps + 1)
    current = op.in_space.random_unit(seed)
    basis.append(current)
    H = np.zeros((steps + 1, steps))
    previous, converged, settled, rho, ritz = None, False, False, 0.0, np.zeros(0)
    k = 0
    with np.errstate(all="ignore"):
        try:
            for k in range(steps):
                with users():
                    w = apply(current)
                w, coefficients = _orthogonalise(xp, w, basis.filled, name)
                w_norm = _norm(xp, w, name)
                H[: k + 1, k] = coefficients
                H[k + 1, k] = w_norm
                ritz = np.linalg.eigvals(H[: k + 1, : k + 1])
                rho = float(np.max(np.abs(ritz)))
                # Relative to ||J v||, so that the test means the same for J and 1e-30 * J.
                invariant = w_norm <= 1e-12 * math.hypot(float(np.linalg.norm(coefficients)), w_norm)
                # Two agreeing steps in a row: the outer Ritz values can pause before moving on.
                agree = previous is not None and abs(rho - previous) <= rtol * max(rho, 1e-300)
                converged = agree and settled
                settled = agree
                if invariant or converged:
                    converged = True
                    break
                previous = rho
                current = w / w_norm
                basis.append(current)
        except _NonFinite as stop:
            return _stopped(k, counter, stop.product, {"ritz_values": ()})
    return Estimate(rho, k + 1, counter.vjp, counter.jvp, converged, {"ritz_values": tuple(complex(z) for z in ritz)})
