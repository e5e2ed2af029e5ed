"""Goal 4: one training step of fixed_point + Neumann-RBP against BPTT and TBPTT as the
number of forward steps T grows (Table 3 of Liao et al. 2018: BPTT / Neumann-RBP about 3x
in time and 4.3x in memory). The model is the Hopfield-like network of ``_training.py``
(2,592 neurons, batch 10, float32, 6.7 M parameters), K = 20.

``peakmem_step`` is asv's process peak RSS (model and setup included, so it shows growth in
T, not the ratio); ``track_memory_ratio`` is the ratio of torch allocator peaks over one step,
the figure that compares with the paper. ``benchmarks/train_step_memory.py`` measures the
same in fresh processes with RSS as well.
"""

from ._base import best_time
from ._training import build, tensor_peak, train_step, warm_up

K = 20
STEPS = [50, 100, 200, 400]
METHODS = ["bptt", "tbptt", "rbp"]


def _require_torch():
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise NotImplementedError("torch is not installed")


class TrainingStep:
    params = (METHODS, STEPS)
    param_names = ["method", "T"]
    timeout = 600

    def setup(self, method, T):
        _require_torch()
        warm_up(K)
        self.model = build()
        train_step(self.model, method, T, K)  # warm-up of this exact path

    def time_step(self, method, T):
        train_step(self.model, method, T, K)

    def peakmem_step(self, method, T):
        train_step(self.model, method, T, K)


class TrainingStepRatio:
    """BPTT / RBP in one process: best-of-3 time, and torch allocator peak over a step."""

    params = STEPS
    param_names = ["T"]
    timeout = 600

    def setup(self, T):
        _require_torch()
        warm_up(K)
        self.model = build()

    def track_time_ratio(self, T):
        bptt = best_time(lambda: train_step(self.model, "bptt", T, K), lambda: None, repeat=3)
        rbp = best_time(lambda: train_step(self.model, "rbp", T, K), lambda: None, repeat=3)
        return bptt / rbp

    track_time_ratio.unit = "BPTT time / RBP time"

    def track_memory_ratio(self, T):
        return tensor_peak(self.model, "bptt", T, K) / tensor_peak(self.model, "rbp", T, K)

    track_memory_ratio.unit = "BPTT / RBP allocator peak"
