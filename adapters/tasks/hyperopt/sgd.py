r"""SGD with momentum on a tanh MLP as a recurrent network over ``(weights, velocities)``.

The state is one flat vector ``h = [w; v]`` (all weights and biases, then their
velocities), so that rbpsolve's operators act on it. The hyperparameters are
``theta`` of shape ``(2, L)`` for ``L`` parameter tensors (4 weight matrices and 4 biases
of a 784-50-50-50-10 network: 16 numbers), with learning rate ``alpha = exp(theta[0])``
and momentum ``beta = sigmoid(theta[1])`` per tensor, as in the paper's code
(``model/hypergrad_net.py`` of lrjconan/RBP). One training step on a mini-batch ``B_t``
is the momentum rule of Maclaurin et al. (2015, Algorithm 1):

.. math::

    v_{t+1} = \beta v_t - (1 - \beta) \nabla_w \ell(w_t; B_t), \qquad
    w_{t+1} = w_t + \alpha v_{t+1},

with ``ell`` the cross-entropy plus ``exp(-100) ||w||^2`` (the code's weight decay). Its
Jacobian ``dF/dh`` involves the Hessian of ``ell``: products with it are Hessian-vector
products, built here by autograd (``create_graph=True`` when a graph is being recorded).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from .layout import PAPER_LAYERS, MLPLayout

__all__ = ["PAPER_LAYERS", "MLP", "init_state", "hyper_init", "TrainingStep"]

WEIGHT_DECAY = math.exp(-100.0)


@dataclass(frozen=True)
class MLP(MLPLayout):
    """:class:`.layout.MLPLayout` with the torch forward pass and loss (see there for ``layers``)."""

    def segments(self, device=None) -> torch.Tensor:
        """For each entry of the flat weight vector, the index of its tensor (for per-tensor rates)."""
        sizes = torch.tensor([math.prod(s) for s in self.shapes], device=device)
        return torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)

    def unflatten(self, w: torch.Tensor):
        out, i = [], 0
        for s in self.shapes:
            n = math.prod(s)
            out.append(w[i : i + n].view(s))
            i += n
        return out

    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``tanh`` hidden layers, linear output: ``x`` of shape ``(N, layers[0])``."""
        params = self.unflatten(w)
        n = len(params) // 2
        for k in range(n):
            x = x @ params[2 * k] + params[2 * k + 1]
            if k < n - 1:
                x = torch.tanh(x)
        return x

    def loss(self, w, x, y):
        """Mean cross-entropy of the labels ``y`` (int64)."""
        return nnf.cross_entropy(self.logits(w, x), y)


@functools.lru_cache(maxsize=8)
def _segments(mlp, device):
    return mlp.segments(device=device)


def init_state(mlp: MLP, generator: torch.Generator, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """``h_0 = [w_0; 0]`` with every weight and bias drawn from ``N(0, exp(-3)^2)`` (the paper's code)."""
    w = torch.randn(mlp.num_params, generator=generator, dtype=dtype) * math.exp(-3.0)
    return torch.cat([w, torch.zeros_like(w)]).to(device)


def hyper_init(mlp: MLP, *, lr: float = math.exp(-1.0), momentum: float = 0.5, dtype=torch.float32, device=None):
    """``theta`` of shape ``(2, L)``: ``log lr`` and ``logit momentum`` per tensor (16 numbers for the paper's MLP).

    The defaults are the paper's start, learning rate ``exp(-1)`` and momentum 0.5
    (``lr: -1.0`` and ``momentum: 0.0`` in ``config/hypergrad.yaml``).
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive; got {lr}")
    if not 0 < momentum < 1:
        raise ValueError(f"momentum must lie in (0, 1); got {momentum}")
    row = torch.ones(mlp.num_tensors, dtype=dtype, device=device)
    return torch.stack([row * math.log(lr), row * math.log(momentum / (1 - momentum))])


class TrainingStep:
    r"""``h -> F(h; theta, x, y)``: one step of SGD with momentum on the batch ``(x, y)``.

    With gradients enabled (the caller records a graph) the step is differentiable in
    ``h`` and ``theta`` (second order: the gradient is taken with ``create_graph=True``);
    under ``torch.no_grad()`` it costs one forward and one backward pass and returns a
    tensor without history, so graph-free stretches of training keep no memory.

    Parameters
    ----------
    mlp : MLP
    theta : torch.Tensor
        ``(2, L)`` hyperparameters (see :func:`hyper_init`).
    x, y : torch.Tensor
        Inputs ``(N, layers[0])`` and int64 labels ``(N,)``.
    """

    def __init__(self, mlp: MLP, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        if theta.shape != (2, mlp.num_tensors):
            raise ValueError(f"theta must have shape (2, {mlp.num_tensors}) for this network; got {tuple(theta.shape)}")
        if x.ndim != 2 or x.shape[1] != mlp.layers[0] or y.shape != (x.shape[0],):
            raise ValueError(
                f"batch must be x of shape (N, {mlp.layers[0]}) and y of shape (N,); "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        self.mlp, self.theta, self.x, self.y = mlp, theta, x, y
        self.seg = _segments(mlp, theta.device)
        self.last_loss = None  # the mini-batch loss of the latest call (a 0-d tensor, no history)

    def rates(self, theta=None):
        """Per-entry learning rate ``alpha`` and momentum ``beta`` (vectors of the weights' length)."""
        theta = self.theta if theta is None else theta
        return torch.exp(theta[0])[self.seg], torch.sigmoid(theta[1])[self.seg]

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        P = self.mlp.num_params
        if h.shape != (2 * P,):
            raise ValueError(f"state must be [weights; velocities] of shape ({2 * P},); got {tuple(h.shape)}")
        record = torch.is_grad_enabled()
        w, v = h[:P], h[P:]
        with torch.enable_grad():
            wg = w if (record and w.requires_grad) else w.detach().requires_grad_()
            loss = self.mlp.loss(wg, self.x, self.y) + WEIGHT_DECAY * torch.sum(wg * wg)
            (g,) = torch.autograd.grad(loss, wg, create_graph=record)
        self.last_loss = loss.detach()
        if not record:
            g = g.detach()
        theta = self.theta if record else self.theta.detach()
        alpha, beta = self.rates(theta)
        v_new = beta * v - (1.0 - beta) * g
        return torch.cat([w + alpha * v_new, v_new])
