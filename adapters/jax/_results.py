"""Status codes in arrays: :class:`rbpsolve.Status` as integers a traced program can carry,
and the pytrees that hold them (lineax's ``RESULTS``, for rbpsolve's statuses).

A traced solve cannot return a :class:`rbpsolve.Result` (its status is decided on values
that exist only when the compiled program runs), so it returns integer codes and turns
them into :class:`rbpsolve.Status` members on the host afterwards.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import rbpsolve

__all__ = ["NOT_RUN", "code", "status_of", "TracedSolve", "TracedDiagnostics", "backward_probe", "backward_report"]

# Code 0 is "no solve ran" (a backward probe whose pullback never ran has a zero cotangent);
# code i + 1 is the i-th member of rbpsolve.Status, in the enum's order.
NOT_RUN = 0
_STATUSES = tuple(rbpsolve.Status)


def code(status: rbpsolve.Status) -> int:
    """The integer code of ``status`` (a Python int, for use in traced programs)."""
    return _STATUSES.index(status) + 1


def status_of(codes):
    """:class:`rbpsolve.Status` of a code (None for :data:`NOT_RUN`); for an array of
    codes (a ``jax.vmap`` of solves), a numpy object array of them. Reads the codes on
    the host: call it after the jitted call, not inside it."""
    values = np.asarray(codes)
    if not np.issubdtype(values.dtype, np.number):
        raise TypeError(f"status codes must be numbers; got an array of dtype {values.dtype}")
    flat = [_one(float(v)) for v in values.ravel()]
    if values.ndim == 0:
        return flat[0]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(values.shape)


def _one(value: float):
    if value != int(value) or not 0 <= value <= len(_STATUSES):
        raise ValueError(
            f"{value} is not an rbpsolve status code (0 for no solve, 1 to {len(_STATUSES)} for "
            f"rbpsolve.Status members); pass the codes of a TracedSolve or a backward probe's gradient"
        )
    return None if value == NOT_RUN else _STATUSES[int(value) - 1]


class TracedSolve(NamedTuple):
    """What a traced fixed-budget solve did, as arrays (a batch of them under ``jax.vmap``).

    Attributes
    ----------
    status : jax.Array of int32
        The code of the solve's :class:`rbpsolve.Status` (:meth:`statuses` decodes it).
    num_steps : jax.Array of int32
        Steps taken: ``Result.num_steps`` of the same eager solve.
    last_norm : jax.Array
        The norm of the last step's update (Picard: ``||h_{k+1} - h_k||``; FixedPoint: of
        ``z_k - z_{k-1}``; Neumann: of the last term ``(J^T)^k g``): ``Result.history[-1]``
        of the eager solve, NaN where no step was taken.
    """

    status: jax.Array
    num_steps: jax.Array
    last_norm: jax.Array

    def statuses(self):
        """The statuses as :class:`rbpsolve.Status` (an object array for a batch); on the host."""
        return status_of(self.status)

    def ok(self):
        """Whether each solve ended ``CONVERGED`` or ``BUDGET_SPENT`` (a numpy bool or array)."""
        return np.vectorize(lambda s: s is not None and s.ok, otypes=[bool])(self.statuses())


class TracedDiagnostics(NamedTuple):
    """What :func:`fixed_point` returns under ``jax.jit``/``jax.vmap`` in place of
    :class:`Diagnostics`: a pytree of arrays, so it can leave a jitted function.

    Unlike :class:`Diagnostics` it holds no :class:`rbpsolve.Result` (no iterate, history,
    error estimate or bound, product counts or fallback attempts: those are host objects)
    and no backward solve: a ``custom_vjp``'s backward cannot return auxiliary data, so
    the backward's status comes out through a probe's cotangent
    (:func:`backward_probe`, :func:`backward_report`).

    Attributes
    ----------
    forward : TracedSolve
        The forward (Picard) solve.
    """

    forward: TracedSolve


# The layout of a backward probe: [status code, steps, last norm].
_PROBE_SIZE = 3


def backward_probe(dtype=None):
    """A zero vector to pass as ``fixed_point(..., backward_probe=probe)`` and differentiate
    with respect to: its gradient carries the backward solve's status code, step count
    and last norm (:func:`backward_report` decodes it).

    ``dtype`` is a floating dtype (default: JAX's default float, float64 with x64 on);
    status codes and step counts are exact in any of them.
    """
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"a backward probe needs a floating dtype (it is differentiated); got {dtype}")
    return jnp.zeros(_PROBE_SIZE, dtype)


def probe_cotangent(solve: TracedSolve, probe):
    """The cotangent the backward pass gives a probe: ``solve`` packed in its dtype."""
    parts = (solve.status, solve.num_steps, solve.last_norm)
    return jnp.stack([jnp.asarray(p).astype(probe.dtype) for p in parts])


def backward_report(probe_gradient) -> TracedSolve:
    """The backward solve's :class:`TracedSolve` from the gradient of a backward probe
    (shape ``(3,)``, or ``(batch, 3)`` from ``jax.vmap``). Status code 0 (``statuses()``
    None) means no backward pass reached the probe."""
    g = jnp.asarray(probe_gradient)
    if g.ndim < 1 or g.shape[-1] != _PROBE_SIZE:
        raise ValueError(
            f"a backward probe's gradient has shape (..., {_PROBE_SIZE}); got shape {g.shape}: pass the "
            f"gradient with respect to the probe made by backward_probe()"
        )
    return TracedSolve(g[..., 0].astype(jnp.int32), g[..., 1].astype(jnp.int32), g[..., 2])
