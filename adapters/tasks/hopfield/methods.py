r"""The training methods of Table 1: one gradient of the loss at ``h_T`` per method.

All run ``T = 50`` updates ``h_{t+1} = F(h_t)`` from ``h_0 = x`` and differentiate
``L(h_T)``; they differ only in the backward pass, whose budget is the truncation ``K``:

========  ======================================================================================
method    gradient (as in ``model/hopfield_net.py`` / ``model/rbp.py`` of lrjconan/RBP)
========  ======================================================================================
bptt      back-propagation through all 50 updates (``unroll(F, h0, 50)``)
tbptt     through the last ``K`` updates only (``unroll(F, h0, 50, truncate=K)``)
rbp       original RBP (Algorithm 1): ``z <- J^T z + g`` for ``K`` steps from
          ``z_0 ~ U(0, 1)^n``, as the paper's code does (``rbpsolve.FixedPoint``)
cg        CG-RBP (Eq. 16): ``K`` CG steps on ``(I - J)(I - J^T) z = (I - J) g``
          (``rbpsolve.CGNE``)
neumann   Neumann-RBP (Algorithm 2): ``z = sum_{t=0}^{K} (J^T)^t g`` (``rbpsolve.Neumann``)
gmres     ``K`` GMRES steps on ``(I - J^T) z = g`` (beyond the paper)
lsqr      ``K`` LSQR steps (beyond the paper)
rneumann  Russian-roulette Neumann series, unbiased, ``K`` products on average: ``K/2`` fixed
          terms, then continue with probability ``K / (K + 2)`` (beyond the paper)
fallback  Neumann-RBP, switching to GMRES(K) when the series diverges (beyond the paper)
========  ======================================================================================

The RBP methods take ``J = dF/dh`` at ``h_{T-1}`` and send ``z`` through the last update
``h_T = F(h_{T-1})``, so the parameter gradient is ``z^T dF/dW`` (Eq. 6). The plain series
(``rbp``, ``neumann``) run their ``K`` steps whatever happens, as the paper's code does
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

__all__ = ["METHODS", "PAPER_METHODS", "Step", "gradient"]

PAPER_METHODS = ("bptt", "tbptt", "rbp", "cg", "neumann")
METHODS = PAPER_METHODS + ("gmres", "lsqr", "rneumann", "fallback")
DIVERGENCE_FACTOR = 1e4
CG_RETRY_RTOL = 1e-6


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


def _solver(method: str, K: int, rng: torch.Generator):
    if method == "rbp":
        return rbpsolve.FixedPoint(max_steps=K, rtol=0.0, atol=0.0, divergence_factor=math.inf)
    if method == "neumann":
        return rbpsolve.Neumann(max_steps=K, divergence_factor=math.inf)
    if method == "cg":
        return rbpsolve.CGNE(max_steps=K, rtol=0.0, atol=0.0)
    if method == "gmres":
        return rbpsolve.GMRES(max_steps=K, restart=K, rtol=0.0, atol=0.0)
    if method == "lsqr":
        return rbpsolve.LSQR(max_steps=K, rtol=0.0, atol=0.0)
    if method == "rneumann":
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        return rbpsolve.RandomizedNeumann(continue_prob=K / (K + 2), min_steps=K // 2, max_steps=10 * K, seed=seed)
    if method == "fallback":
        return rbpsolve.Fallback(rbpsolve.Neumann(max_steps=K, divergence_factor=DIVERGENCE_FACTOR),
                                 rbpsolve.GMRES(max_steps=K, restart=K, rtol=0.0, atol=0.0))
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


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
             rng: torch.Generator | None = None) -> Step:
    """The loss at ``h_T`` and its gradient with respect to ``net.W0`` by one method.

    Parameters
    ----------
    net : HopfieldNet
    image : torch.Tensor
        The clean binary pattern (flattened or not).
    method : str
        One of :data:`METHODS`.
    K : int
        Truncation: TBPTT's kept updates, the RBP solvers' steps (ignored by ``bptt``).
    steps : int
        ``T``, the number of updates (50).
    rng : torch.Generator, optional
        For the random start of ``rbp`` and the draws of ``rneumann``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
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

    def finish(h_T, status="unrolled", diverging=False, vjp=0, jvp=0):
        loss = net.loss(h_T, image)
        (grad,) = torch.autograd.grad(loss, net.W0)
        return Step(float(loss.detach()), grad, _floats(norms, steps), status, diverging, vjp, jvp)

    if method in ("bptt", "tbptt"):
        return finish(unroll(F, x, steps, truncate=None if method == "bptt" else K))
    solver = _solver(method, K, rng)
    # The paper's code starts RBP's iteration at z_0 ~ U(0, 1); the other solvers at 0.
    start = (lambda g: torch.rand(g.shape, generator=rng, dtype=g.dtype, device=g.device)) if method == "rbp" else None
    try:
        grad, loss, res = _implicit(net, F, x, image, steps, solver, start)
    except ZeroDivisionError:
        if method != "cg":
            raise
        # rbpsolve's CGNE divides by ||p||^2, which underflows to 0 in float32 when a fixed-budget
        # solve (rtol = atol = 0, least-squares test off) runs on past a (least-squares) solution.
        # Redo the step with a tolerance, which stops it there (CONVERGED or LEAST_SQUARES).
        norms.clear()
        grad, loss, res = _implicit(net, F, x, image, steps, rbpsolve.CGNE(max_steps=K, rtol=CG_RETRY_RTOL))
    return Step(float(loss.detach()), grad, _floats(norms, steps), res.status.name, _diverging(res), res.num_vjp,
                res.num_jvp)


def _floats(norms, steps):
    # Picard with rtol = atol = 0 stops early only at an exact fixed point (a zero update),
    # after which every further update would repeat it: pad the difference norms with zeros.
    values = torch.stack(norms[:steps]).tolist() if norms else []
    return values + [0.0] * (steps - len(values))


def _implicit(net, F, x, image, steps, solver, start=None):
    # T - 1 graph-free updates, then the one with a graph that fixed_point adds: T in all.
    h_T, diag = fixed_point(F, x, forward=rbpsolve.Picard(max_steps=steps - 1, rtol=0.0, atol=0.0),
                            backward=solver, on_failure="warn", backward_x0=start)
    loss = net.loss(h_T, image)
    (grad,) = torch.autograd.grad(loss, net.W0)
    return grad, loss, diag.backward
