"""Only ``rbpsolve.adapters.jax`` imports jax: the core and the torch adapter stay free of it,
and the JAX adapter imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after(statement: str) -> list[str]:
    """Top-level packages in sys.modules after running ``statement`` in a fresh interpreter."""
    code = (
        "import json, sys\n"
        f"{statement}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_core_and_the_adapters_package_import_no_jax():
    loaded = _modules_after("import rbpsolve, rbpsolve.extending, rbpsolve.adapters")
    assert "jax" not in loaded and "jaxlib" not in loaded


def test_the_torch_adapter_imports_no_jax():
    pytest.importorskip("torch")
    loaded = _modules_after("import rbpsolve.adapters.torch")
    assert "torch" in loaded  # the probe sees an import
    assert "jax" not in loaded and "jaxlib" not in loaded


def test_the_jax_adapter_imports_jax_and_no_torch():
    pytest.importorskip("jax")
    loaded = _modules_after("import rbpsolve.adapters.jax")
    assert "jax" in loaded  # the probe sees an import, so the tests above can fail
    assert "torch" not in loaded and "cupy" not in loaded
