"""Shared fixtures: the backend sweep and seeded random operators with dense references."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from operators import Problem, make_problem  # noqa: F401  (re-exported for tests)


def _torch_cuda_available():
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _cupy_usable():
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


class Backend:
    """One array library on one device: converts numpy test data there and back."""

    def __init__(self, name):
        self.name = name
        if name == "numpy":
            import array_api_compat.numpy as xp

            self.xp, self.device = xp, "cpu"
        elif name == "array_api_strict":
            import array_api_strict as xp

            self.xp, self.device = xp, xp.Device("CPU_DEVICE")
        elif name.startswith("torch"):
            import array_api_compat.torch as xp

            self.xp, self.device = xp, "cuda" if name == "torch-cuda" else "cpu"
        elif name == "cupy":
            import array_api_compat.cupy as xp

            self.xp, self.device = xp, None
        else:  # pragma: no cover
            raise ValueError(name)

    def asarray(self, a, dtype="float64"):
        a = np.asarray(a)
        return self.xp.asarray(a, dtype=getattr(self.xp, dtype), device=self.device)

    def to_numpy(self, x):
        from rbpsolve._backend import to_numpy

        return np.asarray(to_numpy(x), dtype=np.float64)

    def __repr__(self):
        return self.name


def _backend_params():
    params = [pytest.param("numpy", id="numpy")]
    strict = importlib.util.find_spec("array_api_strict") is not None
    params.append(
        pytest.param("array_api_strict", id="array_api_strict",
                     marks=pytest.mark.skipif(not strict, reason="array_api_strict is not installed"))
    )
    torch = importlib.util.find_spec("torch") is not None
    params.append(
        pytest.param("torch", id="torch-cpu",
                     marks=pytest.mark.skipif(not torch, reason="torch is not installed (pip install .[torch])"))
    )
    params.append(
        pytest.param("torch-cuda", id="torch-cuda",
                     marks=pytest.mark.skipif(not _torch_cuda_available(), reason="no CUDA device for torch"))
    )
    params.append(
        pytest.param("cupy", id="cupy",
                     marks=pytest.mark.skipif(not _cupy_usable(), reason="cupy is not installed or no GPU is present"))
    )
    return params


@pytest.fixture(params=_backend_params())
def backend(request):
    """Every array backend: numpy, array_api_strict, torch CPU; CUDA and cupy where present."""
    return Backend(request.param)


@pytest.fixture
def np_backend():
    return Backend("numpy")
