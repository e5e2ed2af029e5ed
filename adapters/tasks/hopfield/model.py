r"""The continuous Hopfield network of the associative-memory task (Sec. 4.1 of Liao et al. 2018).

Neurons ``i = 1..n`` with ``n = d_in + d_hid + d_out`` (784 + 1024 + 784) follow

.. math::

    \frac{dh_i}{dt} = -\frac{h_i}{a} + \sum_j w_{ij}\, \phi(b\, h_j) + I_i,
    \qquad \phi(x) = \frac{1}{1 + e^{-x}},\ a = 1,\ b = 0.5 .

As in the paper's code (``model/hopfield_net.py`` of lrjconan/RBP), a unit Euler step
``h <- h + dh/dt`` with ``a = 1`` gives the update

.. math::

    F(h) = m \odot \big((1 - a)\, h + W \phi(b\, h)\big) + (1 - m) \odot x ,

where ``x`` is the image zero-padded to ``n`` and ``m`` is 0 on the 784 observed neurons
(clamped to the pixels: that clamp is the input ``I``) and 1 on the hidden and output
neurons. ``W = (W_0 + W_0^T) \odot (1 - I_n)``: symmetric, no self-loops; ``W_0`` is
initialised ``N(0, 10^{-6})``. The state starts at ``h_0 = x`` and is updated 50 times; the
read-out is the last 784 entries of ``h_T`` (binarised at 0.5 for retrieval).
"""

from __future__ import annotations

import torch

__all__ = ["HopfieldNet"]


class HopfieldNet(torch.nn.Module):
    """Fully connected symmetric continuous Hopfield network with clamped observed neurons.

    Parameters
    ----------
    input_dim, hidden_dim : int
        Observed neurons (= output neurons, 784 for MNIST) and hidden neurons (1024).
    a, b : float
        Leak time constant and sigmoid gain of the dynamics (1 and 0.5 in the paper).
    init_scale : float
        ``W_0 ~ N(0, init_scale^2)`` (1e-3 in the paper's code).
    generator : torch.Generator, optional
        Source of the initialisation, for reproducible trials.
    """

    def __init__(self, input_dim: int = 784, hidden_dim: int = 1024, *, a: float = 1.0, b: float = 0.5,
                 init_scale: float = 1e-3, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        if input_dim < 1 or hidden_dim < 0:
            raise ValueError(f"need input_dim >= 1 and hidden_dim >= 0; got {input_dim}, {hidden_dim}")
        self.input_dim, self.hidden_dim, self.a, self.b = input_dim, hidden_dim, float(a), float(b)
        n = self.num_neurons
        w0 = torch.randn(n, n, generator=generator, dtype=dtype) * init_scale
        self.W0 = torch.nn.Parameter(w0.to(device))
        mask = torch.ones(n, dtype=dtype, device=device)
        mask[:input_dim] = 0.0
        self.register_buffer("mask", mask)  # 0 on clamped observed neurons, 1 elsewhere
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n, dtype=dtype, device=device))

    @property
    def num_neurons(self) -> int:
        """``n = 2 * input_dim + hidden_dim``."""
        return 2 * self.input_dim + self.hidden_dim

    def weights(self) -> torch.Tensor:
        """``W = (W_0 + W_0^T) * (1 - I)``: symmetric, zero diagonal."""
        return (self.W0 + self.W0.T) * self.off_diagonal

    def clamp(self, image: torch.Tensor) -> torch.Tensor:
        """The image (flattened, ``input_dim`` values) zero-padded to a state of ``n`` neurons."""
        flat = image.reshape(-1).to(self.W0.dtype)
        if flat.numel() != self.input_dim:
            raise ValueError(f"image has {flat.numel()} pixels; this network observes {self.input_dim}")
        return torch.nn.functional.pad(flat, (0, self.num_neurons - self.input_dim))

    def update(self, h: torch.Tensor, x: torch.Tensor, W: torch.Tensor | None = None) -> torch.Tensor:
        """One step ``F(h) = m * ((1 - a) h + W sigmoid(b h)) + (1 - m) * x``."""
        W = self.weights() if W is None else W
        new = (1.0 - self.a) * h + W @ torch.sigmoid(self.b * h)
        return new * self.mask + x * (1.0 - self.mask)

    def output(self, h: torch.Tensor) -> torch.Tensor:
        """The output neurons: the last ``input_dim`` entries of the state."""
        return h[-self.input_dim:]

    def loss(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Mean L1 distance between the output neurons' states and the pixels (``nn.L1Loss``)."""
        return (self.output(h) - image.reshape(-1).to(h.dtype)).abs().mean()

    def retrieve(self, image: torch.Tensor, steps: int = 50) -> tuple[torch.Tensor, list[float]]:
        """Run ``steps`` updates from a (corrupted) image without gradients.

        Returns
        -------
        binary : torch.Tensor
            The output neurons binarised at 0.5, shaped like ``image``.
        diff_norms : list of float
            ``||h_t - h_{t-1}||`` for ``t = 1..steps`` (Fig. 1c).
        """
        with torch.no_grad():
            x = self.clamp(image)
            W, h, norms = self.weights(), x, []
            for _ in range(steps):
                new = self.update(h, x, W)
                norms.append(float(torch.linalg.vector_norm(new - h)))
                h = new
            return (self.output(h) >= 0.5).to(image.dtype).reshape(image.shape), norms
