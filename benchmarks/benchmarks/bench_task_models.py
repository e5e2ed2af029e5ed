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


# -- citation: the GRU graph network at Cora's size (N = 2708 nodes, 10,556 directed edges, H = 64) -----------
def _citation_setup(backend):
    import numpy as np

    rng = np.random.default_rng(0)
    N, H, E, C = 2708, 64, 10556, 7
    edges = rng.integers(0, N, size=(2, E))
    h = (0.5 * rng.standard_normal((N, H))).astype(np.float32)
    g = rng.standard_normal((N, H)).astype(np.float32)
    if backend == "numpy":
        import array_api_compat.numpy as xp

        from rbpsolve.adapters.tasks.citation.array_model import ArrayGRUGraph
        from rbpsolve.adapters.tasks.citation.array_sparse import Adjacency
        from rbpsolve.adapters.tasks.citation.array_train import initial_weights

        w = initial_weights(H, C, 0)
        w = type(w)(**{k: v.astype(np.float32) for k, v in w.as_dict().items()})
        return ArrayGRUGraph(w, Adjacency(edges, N, xp, xp.float32)).operator(h), g
    import torch

    from rbpsolve.adapters.tasks.citation.model import GRUGraphNet
    from rbpsolve.adapters.torch import jacobian_operator

    torch.manual_seed(0)
    net = GRUGraphNet(H, C, torch.as_tensor(edges), N)
    return jacobian_operator(net.step, torch.from_numpy(h)), torch.from_numpy(g)


# -- hyperopt: the SGD step of the 784-50-50-50-10 MLP on a 10,000-image batch (state 2P = 89,720) -------------
def _hyperopt_setup(backend):
    import numpy as np

    from rbpsolve.adapters.tasks.hyperopt.layout import MLPLayout

    rng = np.random.default_rng(0)
    mlp = MLPLayout()
    x, y = rng.standard_normal((10_000, 784)).astype(np.float32), rng.integers(0, 10, 10_000)
    L = mlp.num_tensors
    theta = np.stack([np.full(L, -1.0), np.zeros(L)]).astype(np.float32)
    h = np.concatenate([0.05 * rng.standard_normal(mlp.num_params), np.zeros(mlp.num_params)]).astype(np.float32)
    g = rng.standard_normal(2 * mlp.num_params).astype(np.float32)
    if backend == "numpy":
        from rbpsolve.adapters.tasks.hyperopt.array_sgd import ArrayTrainingStep

        return ArrayTrainingStep(mlp, theta, x, y).operator(h), g
    import torch

    from rbpsolve.adapters.tasks.hyperopt.sgd import MLP, TrainingStep
    from rbpsolve.adapters.torch import jacobian_operator

    step = TrainingStep(MLP(), torch.from_numpy(theta), torch.from_numpy(x), torch.from_numpy(y))
    return jacobian_operator(step, torch.from_numpy(h)), torch.from_numpy(g)


class TaskModelProducts:
    """The citation and hyperopt models: one J^T u and a K = 20 Neumann solve, numpy hand-written vs torch."""

    params = (["citation", "hyperopt"], BACKENDS)
    param_names = ["task", "backend"]
    timeout = 300

    def setup(self, task, backend):
        _require(backend)
        self.J, self.g = (_citation_setup if task == "citation" else _hyperopt_setup)(backend)
        self.J.rmv(self.g)

    def time_vjp(self, task, backend):
        self.J.rmv(self.g)

    def time_neumann20(self, task, backend):
        _neumann(self.J, self.g)


class TaskModelProductsRatio:
    """numpy hand-written / torch autograd, one process, best of 3."""

    params = ["citation", "hyperopt"]
    param_names = ["task"]
    timeout = 300

    def setup(self, task):
        _require("torch")
        make = _citation_setup if task == "citation" else _hyperopt_setup
        self.numpy, self.torch = make("numpy"), make("torch")

    def track_vjp_ratio(self, task):
        hand = best_time(lambda: self.numpy[0].rmv(self.numpy[1]), lambda: None, repeat=3)
        autograd = best_time(lambda: self.torch[0].rmv(self.torch[1]), lambda: None, repeat=3)
        return hand / autograd

    track_vjp_ratio.unit = "numpy hand-written / torch autograd"
