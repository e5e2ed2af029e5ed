"""Issue 16: the reference tasks' models with hand-written products (array API, numpy) against the
torch autograd models, on the CPU at the paper's size, float32.

Hopfield (Sec. 4.1): 784 observed + 1024 hidden + 784 output neurons (n = 2592), one image, the state
after 49 updates of a trained-looking network (``W_0 ~ N(0, 0.02^2)``, so that ``J`` is not tiny):

- ``time_vjp``: one ``J^T u`` (numpy: ``ArrayHopfield.vjp``; torch: a retained-graph backward of
  ``rbpsolve.adapters.torch.jacobian_operator``);
- ``time_neumann20``: the K = 20 Neumann-RBP solve ``(I - J^T) z = g`` (20 VJPs, rbpsolve's loop);
- ``track_vjp_ratio`` / ``track_neumann_ratio``: hand-written numpy time over torch autograd time,
  best of 5, both measured in one process (below 1: the hand-written products are cheaper).
"""

from ._base import best_time

BACKENDS = ["numpy", "torch"]
N_IN, HIDDEN, STEPS = 784, 1024, 50


def _require(name):
    import importlib.util

    if importlib.util.find_spec(name) is None:
        raise NotImplementedError(f"{name} is not installed")


def _numpy_setup():
    import numpy as np

    from rbpsolve.adapters.tasks.hopfield.array_model import ArrayHopfield

    rng = np.random.default_rng(0)
    n = 2 * N_IN + HIDDEN
    model = ArrayHopfield((0.02 * rng.standard_normal((n, n))).astype(np.float32), N_IN)
    image = (rng.random(N_IN) > 0.7).astype(np.float32)
    x = model.clamp(image)
    h = x
    for _ in range(STEPS - 1):
        h = model.update(h, x)
    g = model.loss_grad(model.update(h, x), image)
    return model.operator(h), g


def _torch_setup():
    import numpy as np
    import torch

    from rbpsolve.adapters.tasks.hopfield.model import HopfieldNet
    from rbpsolve.adapters.torch import jacobian_operator

    rng = np.random.default_rng(0)
    net = HopfieldNet(N_IN, HIDDEN)
    with torch.no_grad():
        net.W0.copy_(torch.from_numpy((0.02 * rng.standard_normal(net.W0.shape)).astype(np.float32)))
    image = torch.from_numpy((rng.random(N_IN) > 0.7).astype(np.float32))
    W, x = net.weights().detach(), net.clamp(image)
    h = x
    with torch.no_grad():
        for _ in range(STEPS - 1):
            h = net.update(h, x, W)
    J = jacobian_operator(lambda v: net.update(v, x, W), h)
    g = torch.from_numpy(np.random.default_rng(1).standard_normal(net.num_neurons).astype(np.float32))
    return J, g


def _setup(backend):
    _require("torch" if backend == "torch" else "numpy")
    return _numpy_setup() if backend == "numpy" else _torch_setup()


def _neumann(J, g):
    import rbpsolve

    return rbpsolve.solve_adjoint(J, g, rbpsolve.Neumann(max_steps=20, rtol=0, atol=0), throw=False)


class HopfieldProducts:
    params = BACKENDS
    param_names = ["backend"]

    def setup(self, backend):
        self.J, self.g = _setup(backend)
        self.J.rmv(self.g)  # warm-up

    def time_vjp(self, backend):
        self.J.rmv(self.g)

    def time_neumann20(self, backend):
        _neumann(self.J, self.g)


class HopfieldProductsRatio:
    """numpy hand-written / torch autograd, one process, best of 5."""

    def setup(self):
        _require("torch")
        self.numpy, self.torch = _numpy_setup(), _torch_setup()

    def _ratio(self, work):
        hand = best_time(lambda: work(*self.numpy), lambda: None, repeat=5)
        autograd = best_time(lambda: work(*self.torch), lambda: None, repeat=5)
        return hand / autograd

    def track_vjp_ratio(self):
        return self._ratio(lambda J, g: J.rmv(g))

    track_vjp_ratio.unit = "numpy hand-written / torch autograd"

    def track_neumann_ratio(self):
        return self._ratio(_neumann)

    track_neumann_ratio.unit = "numpy hand-written / torch autograd"
