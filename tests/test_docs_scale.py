"""docs/scale.md's sharding example runs as written on 2 gloo ranks and gives the
one-process answer."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from distributed_harness import run_ranks  # noqa: E402

PAGE = Path(__file__).parents[1] / "docs" / "scale.md"


def test_scale_page_sharding_example(tmp_path, monkeypatch):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S) if "sharding=" in b]
    assert blocks, "the scale page lost its sharding example"
    # The spawned ranks import the example by name: a module in a directory on the path.
    (tmp_path / "scale_page_example.py").write_text(blocks[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("scale_page_example", None)
    import scale_page_example as example

    (x0, steps0, calls0), (x1, steps1, calls1) = run_ranks(example.solve_on_my_block, timeout=120)
    W = np.random.default_rng(0).standard_normal((example.N, example.N)) * 0.1
    z = np.linalg.solve(np.eye(example.N) - W.T, np.ones(example.N))
    assert np.allclose(np.concatenate([x0.numpy(), x1.numpy()]), z, rtol=1e-11, atol=0)
    assert steps0 == steps1 and calls0 == calls1 > steps0
