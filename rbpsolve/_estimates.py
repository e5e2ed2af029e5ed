"""Estimates of ||J||_2, of the extreme singular values of an operator and of the
spectral radius rho(J), each with the number of products it spent."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _backend
from ._operator import Operator, ProductCounter

__all__ = ["Estimate", "estimate_norm", "estimate_singular_values", "estimate_spectral_radius"]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """An estimated quantity and what it cost.

    Attributes
    ----------
    value : float
        The estimate.
    num_steps : int
        Lanczos or Arnoldi steps taken.
    num_vjp, num_jvp : int
        Products with J^T and J spent.
    converged : bool
        Whether successive estimates agreed to ``rtol`` (or the Krylov space became
        invariant, which makes the estimate exact up to rounding).
    details : dict
        Extra figures: ``sigma_min`` for singular values, ``ritz_values`` for the
        spectral radius.
    """

    value: float
    num_steps: int
    num_vjp: int
    num_jvp: int
    converged: bool
    details: dict = dataclasses.field(default_factory=dict)

    def __float__(self) -> float:
        return self.value


def _check(op, max_steps, rtol):
    if not isinstance(op, Operator):
        raise TypeError(f"expected an rbpsolve operator such as JacobianOperator; got {type(op).__name__}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1; got {max_steps!r}")
    if not rtol > 0:
        raise ValueError(f"rtol must be > 0; got {rtol}")


def _orthogonalise(xp, w, basis):
    """Classical Gram-Schmidt against ``basis``, twice (full reorthogonalisation)."""
    for _ in range(2):
        if not basis:
            break
        h = _backend.to_numpy(xp.stack([_backend.vdot(xp, v, w) for v in basis]))
        for hi, v in zip(h, basis):
            w = w - float(hi) * v
    return w


def _random_unit(space, seed):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(space.size)
    return space.from_numpy(v / np.linalg.norm(v))


def estimate_singular_values(A: Operator, *, max_steps: int = 30, rtol: float = 1e-4, seed: int = 0) -> Estimate:
    """Largest (``value``) and smallest (``details["sigma_min"]``) singular values of ``A``.

    Golub-Kahan-Lanczos bidiagonalisation from a random start, with full
    reorthogonalisation; each step costs one product with ``A`` and one with ``A^T``.
    The largest singular value of the bidiagonal never exceeds ``||A||`` and converges
    to it quickly; the smallest converges from above and slowly, so
    ``value / sigma_min`` underestimates the condition number until the Krylov space
    is large.
    """
    return _bidiagonalise(A, max_steps=max_steps, rtol=rtol, seed=seed, smallest=True)


def _bidiagonalise(A: Operator, *, max_steps: int, rtol: float, seed: int, smallest: bool) -> Estimate:
    """Golub-Kahan-Lanczos; converge on sigma_max, and on sigma_min too if ``smallest``."""
    _check(A, max_steps, rtol)
    if not (A.has_mv and A.has_rmv):
        raise ValueError(
            "singular values need products with both J and J^T: build the JacobianOperator with jvp= as well as vjp="
        )
    counter = ProductCounter()
    op = A.with_counter(counter)
    xp = op.xp
    steps = min(max_steps, op.in_space.size, op.out_space.size)
    v = _random_unit(op.in_space, seed)
    V, U = [v], []
    alphas, betas = [], []
    u_prev, beta = None, 0.0
    previous, converged = None, False
    sigma_max = sigma_min = 0.0
    for k in range(steps):
        u = op.mv(v) if u_prev is None else op.mv(v) - beta * u_prev
        u = _orthogonalise(xp, u, U)
        alpha = _backend.to_float(_backend.norm(xp, u))
        alphas.append(alpha)
        invariant = alpha == 0.0
        if not invariant:
            u = (1.0 / alpha) * u
            U.append(u)
            w = _orthogonalise(xp, op.rmv(u) - alpha * v, V)
            beta = _backend.to_float(_backend.norm(xp, w))
            invariant = beta == 0.0 or k == steps - 1
        B = np.diag(alphas) + np.diag(betas, 1)
        s = np.linalg.svd(B, compute_uv=False)
        sigma_max, sigma_min = float(s[0]), float(s[-1])
        if previous is not None and abs(sigma_max - previous[0]) <= rtol * sigma_max:
            # sigma_min converges later and from above: only trust it once it settles too.
            converged = not smallest or abs(sigma_min - previous[1]) <= rtol * sigma_min
        if invariant or converged:
            converged = converged or invariant
            break
        previous = (sigma_max, sigma_min)
        betas.append(beta)
        v = (1.0 / beta) * w
        V.append(v)
        u_prev = u
    return Estimate(sigma_max, len(alphas), counter.vjp, counter.jvp, converged, {"sigma_min": sigma_min})


def estimate_norm(J: Operator, *, max_steps: int = 30, rtol: float = 1e-4, seed: int = 0) -> Estimate:
    """``||J||_2``, the largest singular value (a lower estimate that converges from below).

    See :func:`estimate_singular_values`; needs both ``vjp`` and ``jvp``.

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> W = np.diag([0.9, 0.5, 0.1])
    >>> J = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(3))
    >>> round(rbpsolve.estimate_norm(J).value, 6)
    0.9
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
    product : {"auto", "vjp", "jvp"}
        Which products to use: ``J^T`` and ``J`` have the same eigenvalues. ``"auto"``
        takes VJPs, which every JacobianOperator has.

    Notes
    -----
    The Ritz values of the Arnoldi Hessenberg matrix (``details["ritz_values"]``)
    approximate the outer eigenvalues first; the estimate is exact once the Krylov
    space is invariant. Unlike power iteration it handles complex pairs and does not
    stall when two eigenvalues share a modulus. FixedPoint and Neumann converge iff
    ``rho(J) < 1``.
    """
    _check(J, max_steps, rtol)
    if not J.is_square:
        raise ValueError(f"the spectral radius needs a square operator; got {J.in_shape} -> {J.out_shape}")
    if product not in ("auto", "vjp", "jvp"):
        raise ValueError(f"product must be 'auto', 'vjp' or 'jvp'; got {product!r}")
    use_transpose = product == "vjp" or (product == "auto" and J.has_rmv)
    if use_transpose and not J.has_rmv:
        raise ValueError("product='vjp' but this operator has no vjp")
    if not use_transpose and not J.has_mv:
        raise ValueError("product='jvp' but this operator was built without jvp=")
    counter = ProductCounter()
    op = J.with_counter(counter)
    apply = op.rmv if use_transpose else op.mv
    xp = op.xp
    steps = min(max_steps, op.in_space.size)
    basis = [_random_unit(op.in_space, seed)]
    H = np.zeros((steps + 1, steps))
    previous, converged, settled, rho, ritz = None, False, False, 0.0, np.zeros(0)
    k = 0
    for k in range(steps):
        w = apply(basis[-1])
        coefficients = np.zeros(len(basis))
        for _ in range(2):
            h = _backend.to_numpy(xp.stack([_backend.vdot(xp, v, w) for v in basis]))
            for hi, v in zip(h, basis):
                w = w - float(hi) * v
            coefficients += h
        H[: k + 1, k] = coefficients
        w_norm = _backend.to_float(_backend.norm(xp, w))
        H[k + 1, k] = w_norm
        ritz = np.linalg.eigvals(H[: k + 1, : k + 1])
        rho = float(np.max(np.abs(ritz)))
        invariant = w_norm <= 1e-12 * max(1.0, float(np.abs(coefficients).max(initial=0.0)))
        # Two agreeing steps in a row: the outer Ritz values can pause before moving on.
        agree = previous is not None and abs(rho - previous) <= rtol * max(rho, 1e-300)
        converged = agree and settled
        settled = agree
        if invariant or converged:
            converged = True
            break
        previous = rho
        basis.append((1.0 / w_norm) * w)
    return Estimate(rho, k + 1, counter.vjp, counter.jvp, converged, {"ritz_values": tuple(complex(z) for z in ritz)})
