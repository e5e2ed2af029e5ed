"""The three tasks with --backend numpy, end to end in quick mode, in a fresh interpreter where torch
cannot be imported; and the one-line errors of --backend cupy without a GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rbpsolve.adapters.tasks.data import data_root

BLOCK_TORCH = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, Block())\n"
)
NEEDS = {"hopfield": "mnist/train-images-idx3-ubyte.gz", "hyperopt": "mnist/train-images-idx3-ubyte.gz",
         "citation": "planetoid/ind.cora.x"}
EXPECT = {"hopfield": "backend numpy", "hyperopt": "backend numpy", "citation": "backend numpy"}


@pytest.mark.parametrize("task", ["hopfield", "citation", "hyperopt"])
def test_numpy_backend_runs_without_torch(task):
    if not (data_root() / NEEDS[task]).is_file():
        pytest.skip(f"{NEEDS[task]} not under $RBPSOLVE_DATA")
    method = {"hopfield": "neumann_rbp", "citation": "rbp", "hyperopt": "tbptt"}[task]
    code = BLOCK_TORCH + (
        "from rbpsolve.cli import main\n"
        f"sys.exit(main(['task', '{task}', '--quick', '--backend', 'numpy', '--method', '{method}', '--no-progress']))\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert EXPECT[task] in proc.stdout


@pytest.mark.parametrize("task", ["hopfield", "citation", "hyperopt"])
def test_cupy_without_a_gpu_is_one_line(task, capsys):
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("a GPU is present: cupy runs here")
    except Exception:
        pass
    from rbpsolve.cli import main

    with pytest.raises(SystemExit) as info:
        main(["task", task, "--quick", "--backend", "cupy"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "--backend numpy" in err[0]
