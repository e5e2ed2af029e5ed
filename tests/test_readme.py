"""Every ```python block of README.md runs as written, top to bottom, each in a fresh namespace.

A block that imports torch or jax is skipped (with the reason) where that framework is not
installed, so `pip install -e ".[test]"` alone still runs the numpy ones.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
# The optional frameworks a block needs, read from its imports.
FRAMEWORKS = ("torch", "jax")


def _needs(block: str) -> list[str]:
    return [name for name in FRAMEWORKS if re.search(rf"^\s*(import|from) {name}\b", block, re.M)]


def _run(block: str, where: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(block, where, "exec"), namespace)
    return namespace


def test_readme_has_its_examples():
    # The PyTorch quick start, the hand-written products and the JAX example.
    assert len(BLOCKS) >= 3, "README.md lost python blocks"
    assert any("rbpsolve.adapters.torch import fixed_point" in b and "loss.backward()" in b for b in BLOCKS)
    assert any("JacobianOperator(vjp=" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(index):
    block = BLOCKS[index]
    for name in _needs(block):
        pytest.importorskip(name, reason=f"README block {index} imports {name}: pip install -e '.[{name}]'")
    _run(block, f"README.md python block {index}")


def test_torch_quick_start_trains_and_reports(capsys):
    torch = pytest.importorskip("torch")
    block = next(b for b in BLOCKS if "rbpsolve.adapters.torch import fixed_point" in b)
    ns = _run(block, "README torch quick start")
    # What the README says it prints, up to the digits that vary by platform.
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Diagnostics(forward=CONVERGED in ") and "; backward=CONVERGED in " in printed[0]
    assert printed[1].startswith("Status.CONVERGED ")
    diag, cell = ns["diag"], ns["cell"]
    assert diag.forward.ok and diag.backward is not None and diag.backward.ok
    assert cell.weight.grad is not None and torch.isfinite(cell.weight.grad).all()
    assert float(cell.weight.grad.norm()) > 0


def test_handwritten_quick_start_bound_holds():
    block = next(b for b in BLOCKS if "JacobianOperator(vjp=" in b)
    ns = _run(block, "README hand-written products")
    res, W, g = ns["res"], ns["W"], ns["g"]
    # The declared bound 0.6 is the exact norm of W: the a-posteriori bound must hold.
    z = np.linalg.solve(np.eye(len(g)) - W.T, g)
    assert res.ok and np.linalg.norm(res.x - z) <= res.error_bound


def test_jax_example_reports_its_backward():
    pytest.importorskip("jax")
    block = next(b for b in BLOCKS if "rbpsolve.adapters.jax import fixed_point" in b)
    diag = _run(block, "README jax example")["diag"]
    assert diag.forward.ok and diag.backward is not None and diag.backward.ok
