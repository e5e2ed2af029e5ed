r"""Jacobian regularisers that keep the adjoint system solvable during training.

Recurrent back-propagation needs condition II of Liao et al. (2018): ``I - J`` invertible
at the fixed point, and its series methods (RBP, Neumann-RBP) need ``rho(J) < 1``.
Training can walk a model out of that region. Each function here returns a
:class:`Penalty` whose ``value`` is a differentiable scalar to add to the loss::

    h_star, diag = fixed_point(f, h0)
    penalty = jacobian_frobenius(f, h_star, probes=2)
    (loss(h_star) + 0.1 * penalty.value).backward()

All are evaluated at the given ``h`` (``f`` runs once more there, with a graph). Passed the
output of :func:`fixed_point`, their gradient also reaches ``h*``'s own dependence on the
parameters (one more adjoint solve, by the layer's backward solver); a detached ``h``
ignores it, as torchdeq's penalty does.

Costs are in products with ``J`` (a VJP ``J^T u`` or a JVP ``J v``, each about one backward
pass through ``f``) and are reported in ``Penalty.num_vjp`` / ``num_jvp``; the backward of a
penalty costs about as much again (it differentiates those products once more).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .._argument_checks import positive_float as _positive_float
from .._argument_checks import positive_int as _positive_int
from ._differentiable import DifferentiableJacobian, check_batch_axis_of, dense_blocks

__all__ = ["Penalty", "jacobian_frobenius", "column_penalty", "gershgorin_penalty"]

DEFAULT_MAX_SIZE = 1024


@dataclasses.dataclass(frozen=True, eq=False)
class Penalty:
    """A regulariser evaluated once.

    Attributes
    ----------
    value : torch.Tensor
        The scalar to add to the loss (differentiable; zero where the constraint holds).
    quantity : torch.Tensor
        What was measured (differentiable): ``||J||_F^2``, ``max_i ||J e_i||_1``, the
        Gershgorin bound or the estimate of ``lambda_min``; a scalar, or with
        ``batch_axis`` one entry a sample.
    error : float or None
        An estimate of ``quantity``'s error where one exists: the standard error of the
        Hutchinson mean (``probes >= 2``), the Ritz residual of the Lanczos estimate, 0 for
        the exact dense ones; None where unknown (Hutchinson with one probe).
    num_vjp, num_jvp : int
        The products spent evaluating it (its backward costs about as much again).
    details : dict
        Extra figures, per function.
    """

    value: torch.Tensor
    quantity: torch.Tensor
    error: float | None
    num_vjp: int
    num_jvp: int
    details: dict = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        q = self.quantity.detach()
        shown = f"{float(q):.4g}" if q.ndim == 0 else f"per sample, mean {float(q.mean()):.4g}"
        err = "" if self.error is None else f" ± {self.error:.2g}"
        return (f"Penalty(value={float(self.value.detach()):.4g}, quantity={shown}{err}, "
                f"{self.num_vjp} VJPs, {self.num_jvp} JVPs)")


def jacobian_frobenius(f, h, *, probes: int = 1, batch_axis: int | None = None, generator=None) -> Penalty:
    r"""``||J||_F^2`` by Hutchinson's estimator: ``E ||J^T e||^2`` over Rademacher probes ``e``.

    Parameters
    ----------
    f : callable
        The update ``h -> f(h)`` (its output has ``h``'s shape and dtype).
    h : torch.Tensor
        Where ``J = df/dh`` is taken (see the module notes on a ``h`` that requires grad).
    probes : int
        ``k >= 1`` random probes; the estimate is the mean of ``k`` values of ``||J^T e||^2``.
    batch_axis : int, optional
        The axis of independent samples: ``quantity`` then holds each sample's
        ``||J_b||_F^2`` (the same ``k`` probes serve every sample) and ``value`` their mean,
        so the weight of the penalty does not grow with the batch.
    generator : torch.Generator, optional
        Draws the probes (on ``h``'s device); the global generator by default.

    Returns
    -------
    Penalty
        ``value = quantity`` (the mean over samples with ``batch_axis``); ``error`` the
        standard error of the mean over the probes (None for one probe).

    Notes
    -----
    ``E[e e^T] = I`` for Rademacher ``e``, so ``E ||J^T e||^2 = tr(J J^T) = ||J||_F^2``,
    unbiased; Rademacher probes give the least variance of the usual choices
    (``2 sum_{i != j} (J J^T)_{ij}^2``). ``||J||_F >= ||J||_2 >= rho(J)``, so a small
    Frobenius norm keeps the series methods convergent, but it penalises every direction,
    also those that do not threaten condition II: the baseline of the regularisers (the
    penalty torchdeq offers, which divides by the number of entries).

    Cost: ``k`` VJPs with a graph (one batched backward where ``vmap`` allows).
    """
    k = _positive_int("probes", probes)
    jac = DifferentiableJacobian(f, h)
    axis = check_batch_axis_of(jac.h, batch_axis)
    signs = torch.randint(0, 2, (k,) + tuple(jac.h.shape), generator=generator, device=jac.h.device)
    e = (2 * signs - 1).to(jac.h.dtype)
    vj = jac.vjps(e)  # (k, *h.shape)
    if axis is None:
        samples = vj.reshape(k, -1).square().sum(-1)  # (k,)
    else:
        samples = vj.movedim(axis + 1, 1).reshape(k, vj.shape[axis + 1], -1).square().sum(-1)  # (k, B)
    quantity = samples.mean(0)
    error = None
    if k >= 2:
        error = float((samples.detach().std(0) / math.sqrt(k)).max())
    value = quantity if axis is None else quantity.mean()
    return Penalty(value, quantity, error, jac.num_vjp, jac.num_jvp, {"probes": k})


def column_penalty(f, h, *, eta: float, reduction: str = "max", batch_axis: int | None = None,
                   max_size: int = DEFAULT_MAX_SIZE) -> Penalty:
    r"""Scarselli et al.'s penalty on the column norms of ``J``: ``max(0, max_i ||J e_i||_1 - eta)^2``.

    Parameters
    ----------
    f, h
        As in :func:`jacobian_frobenius`.
    eta : float
        The allowed column norm, ``eta > 0`` (below 1 to guarantee a contraction).
    reduction : {"max", "sum"}
        ``"max"`` (default): the largest column norm, ``max_i ||J e_i||_1 = ||J||_1``;
        ``"sum"``: ``sum_i max(0, ||J e_i||_1 - eta)^2``, every column that exceeds
        ``eta`` (Scarselli et al.'s original form).
    batch_axis : int, optional
        Independent samples: one block ``J_b`` a sample, penalised each; ``value`` is the
        mean over samples.
    max_size : int
        Refuse states (with ``batch_axis``: samples) of more entries than this (1024 by
        default): the cost below grows with it.

    Returns
    -------
    Penalty
        ``quantity = ||J||_1`` (per sample with ``batch_axis``), exact: ``error = 0``.

    Notes
    -----
    ``||J||_1 <= eta < 1`` makes ``h -> f(h)`` a contraction in the 1-norm near ``h``, so
    ``rho(J) <= ||J||_1 < 1`` and ``I - J`` is invertible: condition II, and the series of
    Neumann-RBP converges. The penalty is zero inside that region (a hinge), unlike a
    Frobenius penalty, which pulls every entry towards zero.

    Cost: ``J``'s entries, ``n`` VJPs for a state of ``n`` entries (``m`` for samples of ``m``
    entries with ``batch_axis``, whatever the batch), in one batched backward where
    ``vmap`` allows; memory ``n^2`` (``B m^2``). For small states only.

    References
    ----------
    F. Scarselli, M. Gori, A. C. Tsoi, M. Hagenbuchner, G. Monfardini, "The graph neural
    network model", IEEE Trans. Neural Networks 20(1), 2009 (the penalty on
    ``||A^i||_1``).
    """
    eta = _positive_float("eta", eta)
    if reduction not in ("max", "sum"):
        raise ValueError(f"reduction must be 'max' or 'sum'; got {reduction!r}")
    jac = DifferentiableJacobian(f, h)
    J = dense_blocks(jac, check_batch_axis_of(jac.h, batch_axis), max_size)
    columns = J.abs().sum(-2)  # (..., n): ||J e_i||_1 for every column i
    norm_1 = columns.amax(-1)
    excess = torch.relu(norm_1 - eta).square() if reduction == "max" else torch.relu(columns - eta).square().sum(-1)
    return Penalty(excess.mean(), norm_1, 0.0, jac.num_vjp, jac.num_jvp,
                   {"eta": eta, "reduction": reduction, "columns_over_eta": int((columns.detach() > eta).sum())})


def gershgorin_penalty(f, h, *, delta: float, batch_axis: int | None = None,
                       max_size: int = DEFAULT_MAX_SIZE) -> Penalty:
    r"""``max(0, delta - g)`` with ``g`` Gershgorin's lower bound on ``lambda_min((I - J)^T (I - J))``.

    Parameters
    ----------
    f, h
        As in :func:`jacobian_frobenius`.
    delta : float
        The margin asked of the bound, ``delta > 0``: the penalty is zero once
        ``g >= delta``, which proves ``sigma_min(I - J) >= sqrt(delta)`` (condition II with
        a margin).
    batch_axis : int, optional
        Independent samples: one bound a sample, ``value`` their mean penalty.
    max_size : int
        As in :func:`column_penalty`.

    Returns
    -------
    Penalty
        ``quantity = g`` (per sample with ``batch_axis``), exact (``error = 0``);
        ``details["lambda_min"]``: the exact smallest eigenvalue of ``M`` (a float, or a
        list per sample), computed from the same dense matrix for comparison.

    Notes
    -----
    With ``M = (I - J)^T (I - J)``, symmetric, every eigenvalue lies in a Gershgorin disc,
    so ``lambda_min(M) >= g = min_i (M_ii - sum_{j != i} |M_ij|)``. The bound is a
    certificate (unlike an iterative estimate) but often far below ``lambda_min`` (it can
    be negative for a perfectly invertible ``I - J``): the penalty then keeps pushing.
    Its gradient flows to the row attaining the minimum.

    Cost: ``n`` VJPs for ``J``'s entries (``m`` with ``batch_axis``), ``O(n^3)`` flops for
    ``M`` and memory ``n^2``: for small states only.
    """
    delta = _positive_float("delta", delta)
    jac = DifferentiableJacobian(f, h)
    J = dense_blocks(jac, check_batch_axis_of(jac.h, batch_axis), max_size)
    eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
    A = eye - J
    M = A.transpose(-1, -2) @ A
    diagonal = torch.diagonal(M, dim1=-2, dim2=-1)
    radii = M.abs().sum(-1) - diagonal.abs()
    bound = (diagonal - radii).amin(-1)
    exact = torch.linalg.eigvalsh(M.detach())[..., 0]
    exact = float(exact) if exact.ndim == 0 else exact.tolist()
    return Penalty(torch.relu(delta - bound).mean(), bound, 0.0, jac.num_vjp, jac.num_jvp,
                   {"delta": delta, "lambda_min": exact})

