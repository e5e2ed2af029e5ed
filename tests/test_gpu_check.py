"""benchmarks/gpu_check.py's dry run: every step it would take on a GPU machine, checked here."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_checks_every_step(tmp_path):
    out = tmp_path / "summary.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "DRY RUN" in text
    assert "pytest -k 'cuda or cupy'" in text and ": starts" in text
    for solver in ("FixedPoint", "Neumann", "CGNE", "LSQR", "GMRES"):
        assert f"| numpy (dry run) | {solver} | 1.00 | 0.00 |" in text  # one sync a step, none for a budget
    for task in ("hopfield", "citation", "hyperopt"):
        assert f"| {task} | --backend cupy | starts" in text and f"| {task} | --device cuda | starts" in text


def test_gpu_check_shell_script_is_ready():
    script = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert "--no-deps" in script and "gpu_check.py" in script
