r"""Jacobian regularisers in JAX: the torch adapter's four penalties, as functions of ``params``.

``f(h, params)`` is the update of :func:`fixed_point`; each penalty is evaluated at ``h`` and is a
JAX function of ``params`` (and of ``h``), so ``jax.grad`` of a loss that adds ``penalty.value``
differentiates through it. Passed the ``h_star`` of :func:`fixed_point` inside the same loss,
the gradient also follows ``h*``'s dependence on ``params`` through the layer's adjoint solve;
``jax.lax.stop_gradient(h_star)`` ignores it (torchdeq's choice).

The three penalties built from products alone (Frobenius, column, Gershgorin) are pure JAX:
they run under ``jax.jit`` and ``jax.vmap``. The Lanczos penalty runs rbpsolve's
bidiagonalisation, which reads values on the host each step: eager only (``jax.grad`` in eager
mode is fine), with a clear error under tracing. The mathematics, the costs and the measured
bias of the Lanczos gradient are those of :mod:`rbpsolve.adapters.torch` (``docs/regularisers.md``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import rbpsolve

from .._argument_checks import check_entry_budget as _check_size
from .._argument_checks import positive_float as _positive_float
from .._argument_checks import positive_int as _positive_int
from ._jacobian import jacobian_operator
from ._state import refuse_tracers

__all__ = ["Penalty", "jacobian_frobenius", "column_penalty", "gershgorin_penalty", "smallest_eigenvalue_penalty"]

DEFAULT_MAX_SIZE = 1024


class Penalty(NamedTuple):
    """A regulariser evaluated once (a pytree: it can leave ``jax.jit``).

    ``value`` is the scalar to add to the loss, ``quantity`` what was measured (one entry a
    sample with ``batch_axis``), ``error`` an estimate of ``quantity``'s error (None where
    unknown), ``num_vjp``/``num_jvp`` the products spent, ``details`` extra figures; as in
    :class:`rbpsolve.adapters.torch.Penalty`.
    """

    value: jax.Array
    quantity: jax.Array
    error: jax.Array | float | None
    num_vjp: int
    num_jvp: int
    details: dict


def _flat_map(f, h, params):
    """``(x, F)``: ``h`` raveled and ``F(x, p) = ravel(f(unravel(x), p))``, output checked."""
    x, unravel = ravel_pytree(h)

    def F(flat, p):
        out, _ = ravel_pytree(f(unravel(flat), p))
        if out.shape != flat.shape:
            raise ValueError(f"f's output has {out.size} elements; the state h has {flat.size}: f must return "
                             "a state of h's structure and shapes")
        return out.astype(flat.dtype)

    return x, F


def _rows(F, x, params, probes):
    """``J^T u_i`` for every row ``u_i`` of ``probes``: one linearisation, ``vmap``-ed pullbacks."""
    _, pullback = jax.vjp(lambda flat: F(flat, params), x)
    return jax.vmap(lambda u: pullback(u)[0])(probes)


def _blocks(F, x, params, batch_axis, shape, max_size):
    """``J`` dense: ``(n, n)``, or ``(B, m, m)`` per-sample blocks along ``batch_axis``."""
    if batch_axis is None:
        n = x.size
        _check_size(n, max_size, "state")
        return _rows(F, x, params, jnp.eye(n, dtype=x.dtype)), n
    moved = (shape[batch_axis],) + tuple(s for i, s in enumerate(shape) if i != batch_axis)
    B, m = moved[0], math.prod(moved[1:])
    _check_size(m, max_size, "sample")
    eye = jnp.eye(m, dtype=x.dtype).reshape((m, 1) + moved[1:])
    probes = jnp.moveaxis(jnp.broadcast_to(eye, (m,) + moved), 1, batch_axis + 1).reshape(m, -1)
    rows = _rows(F, x, params, probes).reshape((m,) + tuple(shape))
    rows = jnp.moveaxis(rows, batch_axis + 1, 1).reshape(m, B, m)
    return jnp.swapaxes(rows, 0, 1), m


def jacobian_frobenius(f, h, params, *, key, probes: int = 1, batch_axis: int | None = None) -> Penalty:
    r"""``||J||_F^2`` by Hutchinson's estimator, ``E ||J^T e||^2`` over Rademacher probes ``e``.

    ``key`` (a ``jax.random`` key) draws the ``probes`` probes; ``batch_axis`` (``h`` a single
    array) gives one estimate a sample and their mean as ``value``. Cost: ``probes`` VJPs of one
    linearisation. See :func:`rbpsolve.adapters.torch.jacobian_frobenius`.
    """
    k = _positive_int("probes", probes)
    x, F = _flat_map(f, h, params)
    axis = _check_axis(h, batch_axis)
    e = jax.random.rademacher(key, (k, x.size), dtype=x.dtype)
    vj = _rows(F, x, params, e)  # (k, n)
    if axis is None:
        samples = jnp.sum(vj**2, axis=-1)
    else:
        per = jnp.moveaxis(vj.reshape((k,) + tuple(h.shape)), axis + 1, 1)
        samples = jnp.sum(per.reshape(k, h.shape[axis], -1) ** 2, axis=-1)  # (k, B)
    quantity = jnp.mean(samples, axis=0)
    error = jnp.max(jnp.std(samples, axis=0, ddof=1) / math.sqrt(k)) if k >= 2 else None
    value = quantity if axis is None else jnp.mean(quantity)
    return Penalty(value, quantity, error, k, 0, {"probes": k})


def column_penalty(f, h, params, *, eta: float, reduction: str = "max", batch_axis: int | None = None,
                   max_size: int = DEFAULT_MAX_SIZE) -> Penalty:
    r"""``max(0, ||J||_1 - eta)^2`` (``"sum"``: over every column), Scarselli et al.'s penalty.

    Cost: ``n`` VJPs (``m`` a sample with ``batch_axis``), one ``vmap``-ed pullback. See
    :func:`rbpsolve.adapters.torch.column_penalty`.
    """
    eta = _positive_float("eta", eta)
    if reduction not in ("max", "sum"):
        raise ValueError(f"reduction must be 'max' or 'sum'; got {reduction!r}")
    x, F = _flat_map(f, h, params)
    J, products = _blocks(F, x, params, _check_axis(h, batch_axis), getattr(h, "shape", None), max_size)
    columns = jnp.sum(jnp.abs(J), axis=-2)
    norm_1 = jnp.max(columns, axis=-1)
    if reduction == "max":
        excess = jax.nn.relu(norm_1 - eta) ** 2
    else:
        excess = jnp.sum(jax.nn.relu(columns - eta) ** 2, axis=-1)
    return Penalty(jnp.mean(excess), norm_1, 0.0, products, 0, {"eta": eta, "reduction": reduction})


def gershgorin_penalty(f, h, params, *, delta: float, batch_axis: int | None = None,
                       max_size: int = DEFAULT_MAX_SIZE) -> Penalty:
    r"""``max(0, delta - g)``, ``g = min_i (M_ii - sum_{j != i} |M_ij|) <= lambda_min(M)``,
    ``M = (I - J)^T (I - J)``; ``details["lambda_min"]`` is the exact value from the same ``M``.

    Cost: ``n`` VJPs (``m`` with ``batch_axis``) and ``O(n^3)`` flops. See
    :func:`rbpsolve.adapters.torch.gershgorin_penalty`.
    """
    delta = _positive_float("delta", delta)
    x, F = _flat_map(f, h, params)
    J, products = _blocks(F, x, params, _check_axis(h, batch_axis), getattr(h, "shape", None), max_size)
    A = jnp.eye(J.shape[-1], dtype=J.dtype) - J
    M = jnp.swapaxes(A, -1, -2) @ A
    diagonal = jnp.diagonal(M, axis1=-2, axis2=-1)
    bound = jnp.min(diagonal - (jnp.sum(jnp.abs(M), axis=-1) - jnp.abs(diagonal)), axis=-1)
    exact = jnp.linalg.eigvalsh(jax.lax.stop_gradient(M))[..., 0]
    return Penalty(jnp.mean(jax.nn.relu(delta - bound)), bound, 0.0, products, 0,
                   {"delta": delta, "lambda_min": exact})


def smallest_eigenvalue_penalty(f, h, params, *, delta: float, steps: int = 20, rtol: float = 1e-6,
                                seed: int = 0) -> Penalty:
    r"""``max(0, delta - lambda)``, ``lambda = ||(I - J) v||^2`` at the ``steps``-step Lanczos
    (Golub-Kahan) Ritz vector ``v`` of ``lambda_min((I - J)^T (I - J))``, held fixed
    (Hellmann-Feynman): the gradient flows through the one JVP ``J v``.

    ``lambda >= lambda_min`` always (a Rayleigh quotient); ``error`` is the Ritz residual
    ``||M v - lambda v||`` (some eigenvalue lies that close, not necessarily the smallest).
    Eager only: the Lanczos steps run rbpsolve's :func:`rbpsolve.estimate_singular_values` on
    concrete values (under ``jax.grad`` the primal values are concrete; under ``jax.jit`` they
    are not, and this raises ``jax.errors.ConcretizationTypeError``). Cost: ``steps`` JVPs and
    VJPs, then one JVP with a graph. See
    :func:`rbpsolve.adapters.torch.smallest_eigenvalue_penalty` for the bias of the gradient.
    """
    delta = _positive_float("delta", delta)
    k = _positive_int("steps", steps)
    x, F = _flat_map(f, h, params)
    x0, p0 = jax.lax.stop_gradient(x), jax.lax.stop_gradient(params)
    context = (" (smallest_eigenvalue_penalty runs rbpsolve's Lanczos steps on the host: call it outside "
               "jax.jit / jax.vmap; jax.grad in eager mode is fine)")
    refuse_tracers(x0, "h", context)
    refuse_tracers(p0, "params", context)
    J = jacobian_operator(lambda flat: F(flat, p0), x0)
    estimate = rbpsolve.estimate_singular_values(rbpsolve.IdentityMinus(J), max_steps=k, rtol=rtol, seed=seed,
                                                 vectors=True)
    if estimate.nonfinite:
        raise FloatingPointError(
            f"a product with J was not finite at Lanczos step {estimate.details['nonfinite_step']} "
            f"({estimate.details['nonfinite_product']}): f's Jacobian at h has NaN or inf entries"
        )
    v = jax.lax.stop_gradient(estimate.details["right_vector_min"])
    _, jv = jax.jvp(lambda flat: F(flat, params), (x,), (v,))
    lam = jnp.sum((v - jv) ** 2)
    details = {"steps": estimate.num_steps, "converged": estimate.converged, "sigma_max": estimate.value,
               "vector": v}
    return Penalty(jax.nn.relu(delta - lam), lam, float(estimate.details["residual_min"]),
                   estimate.num_vjp, estimate.num_jvp + 1, details)


def _check_axis(h, batch_axis):
    if batch_axis is None:
        return None
    if not isinstance(h, jax.Array):
        raise TypeError("batch_axis needs the state h to be a single jax.Array, not a pytree")
    if isinstance(batch_axis, bool) or not isinstance(batch_axis, int):
        raise TypeError(f"batch_axis must be an int or None; got {batch_axis!r}")
    if not -h.ndim <= batch_axis < h.ndim:
        raise ValueError(f"batch_axis={batch_axis} is out of range for a state of shape {tuple(h.shape)}")
    return batch_axis % h.ndim

