"""The baselines: BPTT, K-step TBPTT and Tallec & Ollivier's unbiased random truncation."""

from __future__ import annotations

import dataclasses
import math

import torch

from rbpsolve.extending import check_continue_prob, draw_depth

from ._jacobian import _check_state, check_output

__all__ = ["unroll", "RandomTruncation"]


@dataclasses.dataclass(frozen=True)
class RandomTruncation:
    r"""Tallec & Ollivier's randomised truncation of BPTT, unbiased for the full gradient.

    Parameters
    ----------
    continue_prob : float
        ``alpha`` in (0, 1]: going back in time past the head, the gradient continues
        through one more step with this probability, re-weighted by ``1 / alpha``.
    min_steps : int
        ``K0 >= 1``: the last ``K0`` steps are always back-propagated, with weight 1.
    seed : int or None
        None draws fresh entropy at every :func:`unroll`; an int fixes the draw (every
        call then truncates at the same depth: for reproducible tests).

    Notes
    -----
    Number the ``T`` applications of ``f`` backwards, ``s = 0`` for the last. One draw
    ``L`` with ``P(L >= l) = alpha^l`` (geometric, one host draw, no device sync) sets
    the depth ``D = K0 + L``: the graph covers applications ``s < D`` and the gradient
    leaving application ``s >= K0`` towards earlier ones is multiplied by ``1 / alpha``.
    The estimate of ``dL/dw`` for a loss of the final state is

    .. math::

        \hat G = \sum_{s=0}^{\min(D, T) - 1} c_s\, g^T J_{T-1} \cdots J_{T-s}\,
                 \frac{\partial f}{\partial w}\Big|_{T-s},
        \qquad c_s = \alpha^{-\max(0,\, s - K_0 + 1)},

    and term ``s`` is present iff ``D > s``, with probability ``1 / c_s``: so
    ``E[G_hat]`` is the full ``T``-step BPTT gradient, exactly (a depth beyond ``T``
    simply reaches ``h0``, which gets its gradient with weight ``alpha^-(T-K0)`` and
    probability ``alpha^(T-K0)``). The same holds for gradients of inputs used at every
    step. The expected graph depth is ``K0 + alpha / (1 - alpha)``; the variance grows
    like that of :class:`rbpsolve.RandomizedNeumann` (finite for a contracting
    recurrence when ``alpha`` exceeds the square of its contraction factor).
    Departure from the paper: Tallec & Ollivier allow a truncation probability that
    varies per step; here it is the constant ``1 - alpha`` past a deterministic head.

    References
    ----------
    C. Tallec and Y. Ollivier, "Unbiasing Truncated Backpropagation Through Time",
    arXiv:1705.08209 (2017).
    """

    continue_prob: float = 0.9
    min_steps: int = 1
    seed: int | None = None

    def __post_init__(self):
        check_continue_prob(self.continue_prob)
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int):
            raise TypeError(f"min_steps must be an int; got {self.min_steps!r}")
        if self.min_steps < 1:
            raise ValueError(
                f"min_steps must be at least 1 (the last step is always back-propagated); got {self.min_steps}"
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise TypeError(f"seed must be None or an int >= 0; got {self.seed!r}")

    def draw(self) -> float:
        """The depth ``D = K0 + L`` of one unroll (``inf`` when ``continue_prob = 1``)."""
        return draw_depth(self.continue_prob, self.min_steps, self.seed)


def unroll(f, h0, steps: int, *, truncate=None):
    r"""``h_T`` after ``T = steps`` applications ``h_{t+1} = f(h_t)``, with the graph a baseline keeps.

    Parameters
    ----------
    f : callable
        ``f(h)`` returns the next state (shape, dtype and device of ``h``).
    h0 : torch.Tensor
        The start; if it requires grad, it gets a gradient when the graph reaches it.
    steps : int
        ``T >= 1``.
    truncate : None, int or RandomTruncation
        - None: BPTT, the graph of all ``T`` applications (memory grows with ``T``).
        - ``K``: K-step TBPTT, the graph of the last ``K`` applications only; the first
          ``T - K`` run under ``torch.no_grad()`` (memory independent of ``T``).
          At a converged state, ``unroll(..., truncate=K + 1)`` gives the same gradient as
          ``rbpsolve.Neumann(max_steps=K)`` in :func:`fixed_point` (Proposition 1 of
          Liao et al.: ``K`` Jacobian products, ``K + 1`` terms, in both).
        - :class:`RandomTruncation`: the unbiased random depth of Tallec & Ollivier.

    Returns
    -------
    torch.Tensor
        ``h_T``, attached to the graph of the back-propagated steps.

    Examples
    --------
    >>> import torch
    >>> from rbpsolve.adapters.torch import unroll
    >>> w = torch.tensor(0.5, requires_grad=True)
    >>> h = unroll(lambda h: w * h + 1.0, torch.zeros(()), 3)  # h_3 = 1 + w + w^2
    >>> h.backward(); float(w.grad)  # 1 + 2 w
    2.0
    """
    if not callable(f):
        raise TypeError(f"f must be callable, a map h -> f(h); got {type(f).__name__}")
    space = _check_state(h0, "h0")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int; got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    weight_from = math.inf  # backward index from which gradients are re-weighted
    if truncate is None:
        depth = steps
    elif isinstance(truncate, RandomTruncation):
        depth = truncate.draw()
        weight_from = truncate.min_steps
    elif isinstance(truncate, int) and not isinstance(truncate, bool):
        if truncate < 1:
            raise ValueError(f"truncate must be at least 1 (steps kept in the graph); got {truncate}")
        depth = truncate
    else:
        raise TypeError(
            f"truncate must be None (BPTT), an int K (K-step TBPTT) or a RandomTruncation; got {truncate!r}"
        )
    depth = min(depth, steps)
    scale = 1.0 / float(truncate.continue_prob) if isinstance(truncate, RandomTruncation) else 1.0

    h = h0
    if depth < steps:
        with torch.no_grad():
            for _ in range(steps - depth):
                h = f(h)
        h = h.detach()
    for j in range(steps - depth, steps):
        h_next = f(h)
        if j == steps - depth:
            check_output(h_next, space, "h0")
        if steps - 1 - j >= weight_from and h_next.requires_grad and scale != 1.0:
            h_next.register_hook(_Scale(scale))
        h = h_next
    return h


class _Scale:
    """A gradient hook multiplying by a constant (a class, so it holds no tensor)."""

    __slots__ = ("c",)

    def __init__(self, c: float):
        self.c = c

    def __call__(self, grad):
        return grad * self.c
