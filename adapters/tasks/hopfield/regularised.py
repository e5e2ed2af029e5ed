r"""Jacobian regularisers on the Hopfield task: does keeping condition II save original RBP?

Each training step adds ``weight * R(J)`` to the loss, ``J = dF/dh`` at the state ``h_T`` that
step reached (detached: the penalty's gradient is ``dR/dW`` at fixed ``h_T``, not through
``h_T``'s own dependence on ``W``, which would need one more adjoint solve with the very
backward that is failing). The regularisers (:mod:`rbpsolve.adapters.torch`):

- ``frobenius``: ``||J||_F^2`` by Hutchinson, ``param`` probes (a count, 1 by default);
- ``column``: ``max(0, ||J||_1 - eta)^2``, ``param = eta``;
- ``gershgorin``: ``max(0, delta - g)``, ``g`` Gershgorin's bound on ``lambda_min((I-J)^T(I-J))``,
  ``param = delta``;
- ``lambda_min``: ``max(0, delta - lambda)``, ``lambda`` the 20-step Lanczos estimate of that
  eigenvalue, ``param = delta``.

Every ``spectrum_every`` steps the trial also logs the Arnoldi estimate of ``rho(J)`` and the
Lanczos estimate of ``sigma_min(I - J)`` (30 steps each, at the first pattern's ``h_{T-1}``):
estimates, not bounds (``sigma_min``'s can only be too high).
"""

from __future__ import annotations

import math

import torch

import rbpsolve
from rbpsolve.adapters import torch as rbp_torch

from .regulariser_spec import DEFAULT_PARAM, REGULARISERS

__all__ = ["make_penalty", "spectrum"]



def make_penalty(name: str, weight: float, param: float | None = None, *, generator=None):
    """``(f, h) -> weight * R`` and its :class:`~rbpsolve.adapters.torch.Penalty`, or None for ``"none"``."""
    if name not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {', '.join(REGULARISERS)}; got {name!r}")
    if name == "none":
        return None
    if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
        raise ValueError(f"the regulariser's weight must be a positive number; got {weight!r}")
    param = DEFAULT_PARAM[name] if param is None else param

    def penalty(f, h):
        if name == "frobenius":
            p = rbp_torch.jacobian_frobenius(f, h, probes=int(param), generator=generator)
        elif name == "column":
            p = rbp_torch.column_penalty(f, h, eta=param, max_size=h.numel())
        elif name == "gershgorin":
            p = rbp_torch.gershgorin_penalty(f, h, delta=param, max_size=h.numel())
        else:
            p = rbp_torch.smallest_eigenvalue_penalty(f, h, delta=param, steps=20)
        return weight * p.value, p

    return penalty


def spectrum(net, image: torch.Tensor, steps: int, *, krylov_steps: int = 30) -> dict:
    """Estimates of ``rho(J)`` and ``sigma_min(I - J)`` at ``h_{T-1}`` of ``image``, and their products."""
    with torch.no_grad():
        W, x = net.weights(), net.clamp(image)
        h = x
        for _ in range(steps - 1):
            h = net.update(h, x, W)
    J = rbp_torch.jacobian_operator(lambda v: net.update(v, x, W.detach()), h)
    rho = rbpsolve.estimate_spectral_radius(J, max_steps=krylov_steps, rtol=1e-3)
    sv = rbpsolve.estimate_singular_values(rbpsolve.IdentityMinus(J), max_steps=krylov_steps, rtol=1e-3)
    return {"rho": rho.value, "sigma_min": sv.details["sigma_min"], "norm_I_minus_J": sv.value,
            "products": rho.num_vjp + rho.num_jvp + sv.num_vjp + sv.num_jvp}
