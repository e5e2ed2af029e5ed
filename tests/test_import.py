"""``import rbpsolve`` stays light, and its public surface is what ``__all__`` says."""

from __future__ import annotations

import json
import subprocess
import sys

import rbpsolve

HEAVY = ("torch", "cupy", "jax", "tensorflow", "array_api_strict", "matplotlib")


def _modules_after(statement: str) -> list[str]:
    """Top-level packages in sys.modules after running ``statement`` in a fresh interpreter."""
    code = (
        "import json, sys\n"
        f"{statement}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_pulls_in_no_gpu_or_deep_learning_library():
    loaded = _modules_after("import rbpsolve")
    assert "rbpsolve" in loaded
    for name in HEAVY:
        assert name not in loaded, f"import rbpsolve imported {name}"


def test_extending_and_the_adapters_package_import_no_framework():
    # rbpsolve.extending is what adapters import; rbpsolve.adapters itself imports no framework.
    loaded = _modules_after("import rbpsolve.extending, rbpsolve.adapters")
    for name in HEAVY:
        assert name not in loaded, f"import rbpsolve.extending, rbpsolve.adapters imported {name}"


def test_the_check_can_see_an_import():
    # The same probe does report a library that was imported (so the test above can fail).
    loaded = _modules_after("import rbpsolve, json, array_api_compat.numpy")
    assert "array_api_compat" in loaded and "json" in loaded


def test_solving_with_numpy_imports_no_torch():
    loaded = _modules_after(
        "import numpy as np, rbpsolve\n"
        "J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, lambda v: 0.5 * v, like=np.zeros(3))\n"
        "for s in (rbpsolve.GMRES(), rbpsolve.LSQR(), rbpsolve.Neumann(max_steps=40)):\n"
        "    assert rbpsolve.solve_adjoint(J, np.ones(3), s).ok\n"
        "rbpsolve.analyze(J)"
    )
    assert "torch" not in loaded and "cupy" not in loaded


def test_public_names_exist_and_are_unique():
    names = rbpsolve.__all__
    assert len(names) == len(set(names))
    missing = [n for n in names if not hasattr(rbpsolve, n)]
    assert missing == []
    namespace: dict = {}
    exec("from rbpsolve import *", namespace)
    assert set(names) <= set(namespace)
    # The core of the surface is there.
    for name in ("solve", "solve_adjoint", "JacobianOperator", "GMRES", "LSQR", "CGNE", "FixedPoint", "Neumann",
                 "Fallback", "Result", "Status", "SolveError", "analyze", "dottest", "aslinearoperator"):
        assert name in names
    assert isinstance(rbpsolve.__version__, str) and rbpsolve.__version__


def test_public_names_are_documented():
    undocumented = [n for n in rbpsolve.__all__ if not (getattr(rbpsolve, n).__doc__ or "").strip()]
    assert undocumented == []
