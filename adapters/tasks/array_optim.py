r"""Plain optimisers on the array API, shared by the reference tasks' numpy/cupy paths.

Functional (they return new arrays, never write into the caller's), so they also run on
immutable arrays. :class:`Adam` follows ``torch.optim.Adam`` (no weight decay, no amsgrad) in
its order of operations, so that a float64 run agrees with torch's to rounding:

.. math::

    m \leftarrow \beta_1 m + (1 - \beta_1) g, \quad
    v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
    p \leftarrow p - \frac{\mathrm{lr}}{1 - \beta_1^t} \,
    \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}.
"""

from __future__ import annotations

import math

import array_api_compat

__all__ = ["Adam", "SGD"]


class Adam:
    """Adam for one parameter array (Kingma & Ba 2015; ``torch.optim.Adam``'s arithmetic)."""

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not (lr > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1 and eps >= 0):
            raise ValueError(f"need lr > 0, 0 <= betas < 1, eps >= 0; got lr={lr}, betas={betas}, eps={eps}")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.t, self.m, self.v = 0, None, None

    def step(self, param, grad):
        """The updated parameter (a new array)."""
        xp = array_api_compat.array_namespace(param, grad)
        b1, b2 = self.betas
        self.t += 1
        if self.m is None:
            self.m, self.v = xp.zeros_like(param), xp.zeros_like(param)
        self.m = b1 * self.m + (1.0 - b1) * grad
        self.v = b2 * self.v + (1.0 - b2) * grad * grad
        denom = xp.sqrt(self.v) / math.sqrt(1.0 - b2**self.t) + self.eps
        return param - (self.lr / (1.0 - b1**self.t)) * (self.m / denom)


class SGD:
    """SGD with momentum ``mu`` and weight decay ``lambda`` (``torch.optim.SGD``'s, no dampening):
    ``d = g + lambda p``, ``b <- mu b + d`` (``b = d`` at the first step), ``p <- p - lr b``."""

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if not (lr > 0 and 0 <= momentum < 1 and weight_decay >= 0):
            raise ValueError(f"need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}")
        self.lr, self.momentum, self.weight_decay, self.buffer = float(lr), float(momentum), float(weight_decay), None

    def step(self, param, grad):
        d = grad + self.weight_decay * param if self.weight_decay else grad
        self.buffer = d if self.buffer is None else self.momentum * self.buffer + d
        return param - self.lr * self.buffer
