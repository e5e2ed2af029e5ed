"""The code blocks of the docs pages run as written."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parents[1] / "docs" / "regularisers.md"


def test_regularisers_page_example_runs():
    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert blocks, "the page lost its example"
    namespace = {}
    exec(compile(blocks[0], str(PAGE), "exec"), namespace)  # noqa: S102 - our own documentation
    penalty, monitor = namespace["penalty"], namespace["monitor"]
    assert penalty.num_vjp >= 1 and len(monitor.records) == 1


def test_regularisers_page_jax_example_runs():
    pytest.importorskip("jax")
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    jax_blocks = [b for b in blocks if "rbpsolve.adapters.jax" in b]
    assert jax_blocks, "the page lost its JAX example"
    namespace = {}
    exec(compile(jax_blocks[0], str(PAGE), "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["diag"].backward.ok


def test_jax_page_example_runs():
    pytest.importorskip("jax")
    page = PAGE.parent / "jax.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks, "the JAX page lost its example"
    namespace = {}
    exec(compile(blocks[0], str(page), "exec"), namespace)  # noqa: S102 - our own documentation
    diag, grads = namespace["diag"], namespace["grads"]
    assert diag.backward.ok and set(grads) == {"W", "b"}


def test_jax_page_jit_example_runs():
    pytest.importorskip("jax")
    page = PAGE.parent / "jax.md"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", page.read_text(), re.S) if "jax.jit" in b]
    assert blocks, "the JAX page lost its jit example"
    namespace = {}
    exec(compile(blocks[0], str(page), "exec"), namespace)  # noqa: S102 - our own documentation
    import rbpsolve

    ok = (rbpsolve.Status.BUDGET_SPENT, rbpsolve.Status.CONVERGED)
    assert namespace["diag"].forward.statuses() in ok
    assert namespace["backward_report"](namespace["grad_probe"]).statuses() in ok
