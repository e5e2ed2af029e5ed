r"""The Hopfield network of :mod:`.model` on the array API, with hand-written products.

No autodiff framework: numpy, cupy or array_api_strict arrays, and the products written out, as the
paper's own code and many simulation codes do. With ``s = sigmoid(b h)`` and
``s' = s (1 - s)``, the update of :class:`.model.HopfieldNet`

.. math::

    F(h) = m \odot \big((1 - a) h + W s\big) + (1 - m) \odot x,
    \qquad W = (W_0 + W_0^T) \odot (1 - I),

has the products

.. math::

    J v = m \odot \big((1 - a) v + W (b\, s' \odot v)\big), \qquad
    J^T u = (1 - a)\, m \odot u + b\, s' \odot \big(W (m \odot u)\big)

(``W`` is symmetric), and the parameter product, for ``G = (m \odot z) s^T`` (the gradient of
``z^T F`` with respect to ``W``),

.. math::

    \Big(\frac{\partial F}{\partial W_0}\Big)^T z = (G + G^T) \odot (1 - I).

Each costs one or two matrix-vector products with ``W``, as one backward pass of autograd does.
"""

from __future__ import annotations

import array_api_compat

import rbpsolve

__all__ = ["ArrayHopfield"]


class ArrayHopfield:
    """The Hopfield update and its products on one array namespace.

    Parameters
    ----------
    W0 : array
        The ``(n, n)`` raw weights (any array-API library; the namespace, dtype and device
        of everything else follow it). Not modified: :meth:`with_weights` makes a new model.
    input_dim : int
        Observed neurons (= output neurons).
    a, b : float
        Leak and sigmoid gain (1 and 0.5 in the paper).
    """

    def __init__(self, W0, input_dim: int, *, a: float = 1.0, b: float = 0.5):
        self.xp = array_api_compat.array_namespace(W0)
        xp = self.xp
        n = W0.shape[0]
        if W0.ndim != 2 or W0.shape[1] != n:
            raise ValueError(f"W0 must be a square (n, n) array; got shape {tuple(W0.shape)}")
        if not (1 <= input_dim and 2 * input_dim <= n):
            raise ValueError(f"need 2 * input_dim <= n; got input_dim {input_dim}, n {n}")
        self.W0, self.input_dim, self.n, self.a, self.b = W0, int(input_dim), n, float(a), float(b)
        device = array_api_compat.device(W0)
        self.off_diagonal = 1.0 - xp.eye(n, dtype=W0.dtype, device=device)
        self.W = (W0 + xp.matrix_transpose(W0)) * self.off_diagonal
        mask = xp.concat([xp.zeros(input_dim, dtype=W0.dtype, device=device),
                          xp.ones(n - input_dim, dtype=W0.dtype, device=device)])
        self.mask = mask  # 0 on the clamped observed neurons

    def with_weights(self, W0) -> "ArrayHopfield":
        return ArrayHopfield(W0, self.input_dim, a=self.a, b=self.b)

    # -- the map and its products ------------------------------------------------------------
    def clamp(self, image):
        """The image (``input_dim`` values) zero-padded to a state of ``n`` neurons."""
        xp = self.xp
        flat = xp.reshape(xp.asarray(image, dtype=self.W0.dtype, device=array_api_compat.device(self.W0)), (-1,))
        if flat.shape[0] != self.input_dim:
            raise ValueError(f"image has {flat.shape[0]} pixels; this network observes {self.input_dim}")
        return xp.concat([flat, xp.zeros(self.n - self.input_dim, dtype=flat.dtype, device=array_api_compat.device(flat))])

    def _s(self, h):
        return 0.5 * (1.0 + self.xp.tanh(0.5 * self.b * h))  # sigmoid(b h), without exp overflow

    def update(self, h, x):
        """``F(h) = m * ((1 - a) h + W sigmoid(b h)) + (1 - m) * x``."""
        new = (1.0 - self.a) * h + self.W @ self._s(h)
        return new * self.mask + x * (1.0 - self.mask)

    def jvp(self, h, v):
        """``J v`` at ``h``."""
        s = self._s(h)
        return self.mask * ((1.0 - self.a) * v + self.W @ (self.b * s * (1.0 - s) * v))

    def vjp(self, h, u):
        """``J^T u`` at ``h``."""
        s = self._s(h)
        mu = self.mask * u
        return (1.0 - self.a) * mu + self.b * s * (1.0 - s) * (self.W @ mu)

    def param_vjp(self, h, z):
        """``(dF/dW_0)^T z`` at ``h``: the weights' share of ``z^T F(h)``'s gradient."""
        xp = self.xp
        G = (self.mask * z)[:, None] * self._s(h)[None, :]
        return (G + xp.matrix_transpose(G)) * self.off_diagonal

    def operator(self, h):
        """``J = dF/dh`` at ``h`` as an :class:`rbpsolve.JacobianOperator` (``h`` copied: changing it
        later does not change ``J``)."""
        h = self.xp.asarray(h, copy=True)
        return rbpsolve.JacobianOperator(lambda u: self.vjp(h, u), lambda v: self.jvp(h, v), like=h)

    # -- the loss --------------------------------------------------------------------------
    def output(self, h):
        return h[self.n - self.input_dim:]

    def loss(self, h, image) -> float:
        """Mean L1 distance of the output neurons to the pixels (``nn.L1Loss``)."""
        xp = self.xp
        target = xp.reshape(xp.asarray(image, dtype=h.dtype, device=array_api_compat.device(h)), (-1,))
        return float(xp.mean(xp.abs(self.output(h) - target)))

    def loss_grad(self, h, image):
        """``dL/dh``: ``sign(out - image) / input_dim`` on the output neurons (0 at a tie, as torch's)."""
        xp = self.xp
        target = xp.reshape(xp.asarray(image, dtype=h.dtype, device=array_api_compat.device(h)), (-1,))
        g_out = xp.sign(self.output(h) - target) / self.input_dim
        return xp.concat([xp.zeros(self.n - self.input_dim, dtype=h.dtype, device=array_api_compat.device(h)), g_out])
