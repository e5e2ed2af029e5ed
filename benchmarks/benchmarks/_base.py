"""What every benchmark shares: seeded inputs built in setup, backends as parameters,
warm-up outside the timed region, device synchronisation inside it, and skipping of
backends that are not installed (asv skips a benchmark whose setup raises
NotImplementedError)."""

from __future__ import annotations

import gc
import importlib.util
import math
import time

import numpy as np

# CUDA and cupy skip (NotImplementedError in setup) where there is no GPU.
BACKENDS = ["numpy", "torch", "torch-cuda", "cupy"]

# (n, batch): the small size shows fixed per-step overhead, the realistic one the regime
# of the reference tasks (thousands of neurons, a mini-batch of states).
SIZES = {"small": (64, 1), "realistic": (4096, 64)}


def namespace(backend: str):
    """(xp, device, sync) for a backend, or NotImplementedError to make asv skip it."""
    if backend == "numpy":
        import array_api_compat.numpy as xp

        return xp, "cpu", lambda: None
    if backend in ("torch", "torch-cuda"):
        if importlib.util.find_spec("torch") is None:
            raise NotImplementedError("torch is not installed")
        import array_api_compat.torch as xp
        import torch

        if backend == "torch-cuda":
            if not torch.cuda.is_available():
                raise NotImplementedError("no CUDA device")
            return xp, "cuda", torch.cuda.synchronize
        return xp, "cpu", lambda: None
    if backend == "cupy":
        if importlib.util.find_spec("cupy") is None:
            raise NotImplementedError("cupy is not installed")
        import array_api_compat.cupy as xp
        import cupy

        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception as error:  # no GPU
            raise NotImplementedError(f"cupy cannot run here: {error}") from None
        return xp, None, cupy.cuda.runtime.deviceSynchronize
    raise NotImplementedError(backend)


class TanhJacobian:
    """The Jacobian of a batched tanh network ``h -> tanh(h W^T + b)`` at a state:
    ``J^T u = (d * u) @ W`` and ``J v = d * (v @ W^T)`` on states of shape (batch, n),
    scaled so that ``||J||_2 = norm`` exactly for batch 1 (and at most ``norm`` in general)."""

    def __init__(self, backend: str, n: int, batch: int, *, norm: float = 0.9, dtype: str = "float32", seed: int = 0):
        self.xp, self.device, self.sync = namespace(backend)
        xp = self.xp
        rng = np.random.default_rng(seed)
        W = rng.standard_normal((n, n)) / np.sqrt(n)
        d = rng.uniform(0.2, 1.0, (batch, n))
        # ||J|| for the block-diagonal batch is the largest per-row ||diag(d_i) W||.
        if n <= 1024:
            worst = max(np.linalg.norm(d[i][:, None] * W, 2) for i in range(batch))
        else:  # power iteration is enough to scale a benchmark
            worst = _power_norm(d[0], W, rng)
        W *= norm / worst
        self.dtype = getattr(xp, dtype)
        self.W = xp.asarray(W, dtype=self.dtype, device=self.device)
        self.WT = xp.asarray(np.ascontiguousarray(W.T), dtype=self.dtype, device=self.device)
        self.d = xp.asarray(d, dtype=self.dtype, device=self.device)
        self.g = xp.asarray(rng.standard_normal((batch, n)), dtype=self.dtype, device=self.device)
        self.W_np, self.d_np = W, d

    def vjp(self, u):
        return self.xp.matmul(self.d * u, self.W)

    def jvp(self, v):
        return self.d * self.xp.matmul(v, self.WT)

    def operator(self):
        import rbpsolve

        return rbpsolve.JacobianOperator(self.vjp, self.jvp, like=self.g)


def _power_norm(d, W, rng, steps=30):
    v = rng.standard_normal(W.shape[1])
    for _ in range(steps):
        v = W.T @ (d * (d * (W @ v)))
        v /= np.linalg.norm(v)
    return float(np.linalg.norm(d * (W @ v)))


def best_time(fn, sync, repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls, synchronising the device around each."""
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def seconds_per_call(fn, number: int, sync=None) -> float:
    """Wall time of one call, from ``number`` calls in a row (garbage collection off, as
    timeit), with ``sync()`` (a device synchronisation) before and after when given."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        if sync is not None:
            sync()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if sync is not None:
            sync()
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


def calls_per_sample(fn, sample_seconds: float, sync=None) -> int:
    """How many calls of ``fn`` fill a sample of ``sample_seconds`` (from one timed call)."""
    once = seconds_per_call(fn, 1, sync)
    return max(1, math.ceil(sample_seconds / max(once, 1e-9)))
