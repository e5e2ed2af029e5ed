r"""The training methods of Table 1: one gradient of the loss at ``h_T`` per method.

All run ``T = 50`` updates ``h_{t+1} = F(h_t)`` from ``h_0 = x`` and differentiate
``L(h_T)``; they differ only in the backward pass, whose budget is the truncation ``K``:

The methods and their solver settings are the shared table of
:mod:`rbpsolve.adapters.tasks.methods` (``bptt``, ``tbptt``, ``rbp``, ``cg_rbp``,
``neumann_rbp``, ``gmres``, ``lsqr``, ``randomized_neumann``, ``fallback``; the older
short names ``neumann``, ``cg``, ``rneumann`` are accepted). This task follows it exactly;
``fallback`` (Neumann-RBP, then GMRES(K) when the series diverges) is run by this task only.

The RBP methods take ``J = dF/dh`` at ``h_{T-1}`` and send ``z`` through the last update
``h_T = F(h_{T-1})``, so the parameter gradient is ``z^T dF/dW`` (Eq. 6). The plain series
(``rbp``, ``neumann_rbp``) run their ``K`` steps whatever happens, as the paper's code does
(``divergence_factor=inf``); a solve is *flagged* diverging when its update norm grew by
more than 10^4 over its smallest value (rbpsolve's default rule), and a trial whose loss
becomes non-finite stops there and counts as failed.
"""

from __future__ import annotations

import dataclasses
import math

import torch

import rbpsolve
from rbpsolve.adapters.torch import fixed_point, unroll

from .. import methods as _table

__all__ = ["METHODS", "PAPER_METHODS", "Step", "gradient"]

PAPER_METHODS = _table.PAPER_METHODS
METHODS = PAPER_METHODS + _table.EXTRA_METHODS
DIVERGENCE_FACTOR = _table.FLAG_FACTOR


@dataclasses.dataclass
class Step:
    """One training step's loss, gradient and what its backward solve did."""

    loss: float
    grad: torch.Tensor
    diff_norms: list  # ||h_t - h_{t-1}||, t = 1..T
    status: str  # backward Status name, or "unrolled" for bptt/tbptt
    diverging: bool
    num_vjp: int = 0
    num_jvp: int = 0
    penalty: float | None = None  # the regulariser's weighted value, when one was added


def _solver(method: str, K: int, rng: torch.Generator):
    if method == "randomized_neumann":  # the table's settings, its draws seeded from this trial's generator
        return _table.solver(method, K, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=rng)))
    return _table.solver(method, K)


def _diverging(result) -> bool:
    if result.attempts or result.status is rbpsolve.Status.DIVERGED:
        return True
    if not getattr(result.solver, "can_diverge", False):
        return False  # Krylov residuals (GMRES, CGNE, LSQR) do not diverge; judge only the series
    history = [h for h in result.history if h is not None]
    if not history:
        return False
    if not all(math.isfinite(h) for h in history):
        return True
    smallest = math.inf
    for h in history:
        smallest = min(smallest, h)
        if smallest > 0 and h > DIVERGENCE_FACTOR * smallest:
            return True
    return False


def gradient(net, image: torch.Tensor, method: str, K: int, *, steps: int = 50,
             rng: torch.Generator | None = None, penalty=None) -> Step:
    """The loss at ``h_T`` and its gradient with respect to ``net.W0`` by one method.

    Parameters
    ----------
    net : HopfieldNet
    image : torch.Tensor
        The clean binary pattern (flattened or not).
    method : str
        One of :data:`METHODS`, or an alias (``neumann``, ``cg``, ``rneumann``).
    K : int
        Truncation: TBPTT's kept updates, the RBP solvers' steps (ignored by ``bptt``).
    steps : int
        ``T``, the number of updates (50).
    rng : torch.Generator, optional
        For the random start of ``rbp`` and the draws of ``randomized_neumann``.
    penalty : callable, optional
        ``(f, h) -> (value, Penalty)``: a Jacobian regulariser added to the loss, evaluated
        at ``h_T`` detached (see :mod:`.regularised`); its gradient joins the method's.
    """
    method = _table.canonical(method, METHODS)
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"truncation K must be an int >= 1; got {K!r}")
    rng = torch.Generator(device=image.device).manual_seed(0) if rng is None else rng
    net.W0.grad = None
    W = net.weights()
    x = net.clamp(image)
    norms = []

    def F(h):
        new = net.update(h, x, W)
        # kept on the device: one host sync per step for all T norms, not one per update
        norms.append(torch.linalg.vector_norm(new.detach() - h.detach()))
        return new

    def regularised(loss, h_T):
        if penalty is None:
            return loss, None
        value, _ = penalty(lambda h: net.update(h, x, W), h_T.detach())
        return loss + value, float(value.detach())

    def finish(h_T, status="unrolled", diverging=False, vjp=0, jvp=0):
        loss = net.loss(h_T, image)
        total, reg = regularised(loss, h_T)
        (grad,) = torch.autograd.grad(total, net.W0)
        return Step(float(loss.detach()), grad, _floats(norms, steps), status, diverging, vjp, jvp, reg)

    if method in ("bptt", "tbptt"):
        return finish(unroll(F, x, steps, truncate=None if method == "bptt" else K))
    solver = _solver(method, K, rng)
    # The paper's code starts RBP's iteration at z_0 ~ U(0, 1); the other solvers at 0.
    start = (lambda g: torch.rand(g.shape, generator=rng, dtype=g.dtype, device=g.device)) if method == "rbp" else None
    grad, loss, res, reg = _implicit(net, F, x, image, steps, solver, start, regularised)
    return Step(float(loss.detach()), grad, _floats(norms, steps), res.status.name, _diverging(res), res.num_vjp,
                res.num_jvp, reg)


def _floats(norms, steps):
    # Picard with rtol = atol = 0 stops early only at an exact fixed point (a zero update),
    # after which every further update would repeat it: pad the difference norms with zeros.
    values = torch.stack(norms[:steps]).tolist() if norms else []
    return values + [0.0] * (steps - len(values))


def _implicit(net, F, x, image, steps, solver, start=None, regularised=None):
    # T - 1 graph-free updates, then the one with a graph that fixed_point adds: T in all.
    h_T, diag = fixed_point(F, x, forward=rbpsolve.Picard(max_steps=steps - 1, rtol=0.0, atol=0.0),
                            backward=solver, on_failure="warn", backward_x0=start)
    loss = net.loss(h_T, image)
    total, reg = (loss, None) if regularised is None else regularised(loss, h_T)
    (grad,) = torch.autograd.grad(total, net.W0)
    return grad, loss, diag.backward, reg
