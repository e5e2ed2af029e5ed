"""The tutorial pages run as written and draw the figures they show.

Each page runs in a fresh process (``docs/tutorials/run.py``) with a temporary working
directory, so that its figures land there and one page's settings (JAX's x64 flag,
matplotlib's state, warning filters) cannot reach another page or test. The claims the
prose makes are assertions in the pages' own code: a page that stops telling the truth
fails here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).parents[1] / "docs" / "tutorials"
_spec = importlib.util.spec_from_file_location("tutorial_run", TUTORIALS / "run.py")
tutorial = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tutorial)

# page -> the optional libraries it needs besides matplotlib
PAGES = {
    "deq-torch.md": ("torch",),
    "numpy-adjoint.md": (),
    "choosing-a-solver.md": (),
    "batched.md": (),
    "jax.md": ("jax", "equinox"),
}
PNG = b"\x89PNG\r\n\x1a\n"


def test_every_tutorial_page_is_tested():
    assert sorted(p.name for p in TUTORIALS.glob("*.md")) == sorted(PAGES)


def test_skipped_blocks_are_marked():
    text = '!!! note "Not run by the tests"\n    Needs a GPU.\n\n```python\nboom()\n```\n\n```python\nx = 1\n```\n'
    assert [code for _, code in tutorial.blocks(text)] == ["x = 1\n"]


@pytest.mark.parametrize("name", sorted(PAGES))
def test_tutorial_page(name, tmp_path):
    for module in ("matplotlib", *PAGES[name]):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} needs {module} (pip install -e '.[{module if module != 'matplotlib' else 'plot'}]')")
    page = TUTORIALS / name
    text = page.read_text()
    assert tutorial.blocks(text), f"{name} has no code"
    shown = tutorial.figures(text)
    assert shown, f"{name} shows no figure"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    # The suite's own rule (pyproject: error::RuntimeWarning) holds inside the page too.
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", str(TUTORIALS / "run.py"), str(page), "--cwd", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    for figure in shown:
        path = tmp_path / figure
        assert path.is_file(), f"{name} shows {figure} but its code did not write it"
        data = path.read_bytes()
        assert data.startswith(PNG), f"{figure} is not a PNG"
        assert 10_000 < len(data) < 200_000, f"{figure} has {len(data)} bytes: empty, or too large to commit"
        committed = TUTORIALS / figure
        assert committed.is_file(), f"{figure} is not committed next to the page (run docs/tutorials/run.py {name})"
