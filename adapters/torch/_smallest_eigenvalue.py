r"""The direct route to condition II: a penalty on ``lambda_min((I - J)^T (I - J))`` by Lanczos."""

from __future__ import annotations

import torch

import rbpsolve

from ._differentiable import DifferentiableJacobian
from ._regularisers import Penalty, _positive_float, _positive_int

__all__ = ["smallest_eigenvalue_penalty"]


def smallest_eigenvalue_penalty(f, h, *, delta: float, steps: int = 20, rtol: float = 1e-6,
                                seed: int = 0) -> Penalty:
    r"""``max(0, delta - lambda)``, ``lambda`` the ``k``-step Lanczos estimate of
    ``lambda_min(M)``, ``M = (I - J)^T (I - J)`` (``= sigma_min(I - J)^2``).

    Parameters
    ----------
    f : callable
        The update ``h -> f(h)``.
    h : torch.Tensor
        Where ``J = df/dh`` is taken. If it requires grad (the output of
        :func:`fixed_point`), the gradient also follows ``h*``'s dependence on the
        parameters, through the layer's adjoint solve; a detached ``h`` ignores it.
    delta : float
        The margin: zero penalty once ``lambda >= delta`` (``delta > 0``).
    steps : int
        ``k``, the most Lanczos (Golub-Kahan) steps on ``I - J``.
    rtol : float
        Stop earlier once two successive estimates of ``sigma_max`` and of ``sigma_min``
        agree to this relative tolerance (default 1e-6), or the Krylov space is
        invariant. Agreement is no proof (``sigma_min`` can stall before it falls again):
        ``error`` is the figure to trust.
    seed : int
        Seed of the random start vector.

    Returns
    -------
    Penalty
        ``quantity`` is ``lambda = ||(I - J) v||^2`` at the unit Ritz vector ``v``
        (differentiable); ``error`` the residual ``||M v - lambda v||``: some eigenvalue of
        ``M`` lies within it of ``lambda``. ``details``: ``steps`` (taken), ``converged``
        (see ``rtol``), ``sigma_max`` (``||I - J||`` estimate),
        ``vector`` (``v``, detached).
        ``converged`` is True only for agreement or an invariant space, never for a run
        that used up ``steps``.

    Notes
    -----
    *Value.* ``k`` steps of Golub-Kahan bidiagonalisation of ``I - J`` (Lanczos on ``M``,
    in the better-conditioned form; :func:`rbpsolve.estimate_singular_values`) give the
    Ritz pair ``(lambda, v)`` of ``M``'s smallest eigenvalue. ``lambda`` is a Rayleigh
    quotient, so ``lambda >= lambda_min``: the estimate can only be too *high*, and the
    penalty too small (zero while ``lambda_min < delta``). It converges from above as
    ``k`` grows, slowly when ``lambda_min`` is not well separated.

    *Gradient* (Hellmann-Feynman). For a simple eigenvalue with unit eigenvector ``v``,
    ``d lambda = v^T (dM) v``, so ``v`` is held fixed and ``lambda = ||v - J v||^2``
    differentiated through ``J v`` alone: a mixed second derivative of ``f`` (in ``h`` and in
    the parameters, and in ``h`` again where ``h`` depends on them). With a ``k``-step Ritz
    vector the identity is not exact: the gradient is that of the Rayleigh quotient at a
    fixed ``v``, biased towards the eigenvectors ``v`` mixes in; the bias vanishes as the
    residual does (``tests/test_regularisers.py`` measures it against the dense
    ``lambda_min``'s gradient).

    Cost: ``k`` JVPs and ``k`` VJPs without a graph (the Lanczos steps), then one JVP with
    a graph for ``lambda``; its backward about two more products. Independent of the
    state's size beyond the products themselves: the regulariser for large states.
    """
    delta = _positive_float("delta", delta)
    k = _positive_int("steps", steps)
    jac = DifferentiableJacobian(f, h)
    like = jac.h.detach()
    J = rbpsolve.JacobianOperator(lambda u: jac.vjp(u, create_graph=False).detach(),
                                  lambda v: jac.jvp(v, create_graph=False).detach(), like=like)
    estimate = rbpsolve.estimate_singular_values(rbpsolve.IdentityMinus(J), max_steps=k, rtol=rtol,
                                                 seed=seed, vectors=True)
    if estimate.nonfinite:
        raise FloatingPointError(
            f"a product with J was not finite at Lanczos step {estimate.details['nonfinite_step']} "
            f"({estimate.details['nonfinite_product']}): f's Jacobian at h has NaN or inf entries"
        )
    v = estimate.details["right_vector_min"].detach()
    r = v - jac.jvp(v)  # (I - J) v, with a graph to f's parameters (and to h)
    lam = r.square().sum()
    details = {"steps": estimate.num_steps, "converged": estimate.converged,
               "sigma_max": estimate.value, "vector": v}
    return Penalty(torch.relu(delta - lam), lam, float(estimate.details["residual_min"]), jac.num_vjp,
                   jac.num_jvp, details)

