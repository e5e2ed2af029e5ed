"""The GPU check of issue 16: one prepared run on a machine with an NVIDIA GPU, one markdown summary.

It uses what the GPU machine has installed (its Python, torch and cupy, not this project's pins;
``gpu_check.sh`` installs the project itself without dependencies) and runs, each step under its
own time limit (tests 90 s, each task run 25 s) so that the whole stays under 5 minutes:

1. the environment: GPU, driver, Python, numpy, torch (+ CUDA), cupy versions;
2. the CUDA and cupy test columns (``pytest -k "cuda or cupy"`` on the backend, trust, diagnostics and
   host-transfer tests);
3. solver timings on ``torch-cuda`` and ``cupy`` at the benchmarks' realistic size (n = 4096, a batch of
   64 states: ``(64, 4096)``, float32, ``||J|| = 0.9``), best of 3, and the same on the CPU for scale;
4. host synchronisations per solver step on both (rbpsolve's transfer counter, a run of 2K steps
   minus one of K, over K; goal 1 with a tolerance, 0 for a fixed budget);
5. a short run of each reference task on ``--backend cupy`` and on ``--device cuda`` (quick mode;
   only where ``RBPSOLVE_DATA`` has the data, else the step says it was skipped and why).

``python benchmarks/gpu_check.py --dry-run`` checks every step it would take on any machine: the
imports, the files, the commands' ``--help``, and one tiny timing and sync count on numpy in place of the
GPU, and writes the summary it would write, marked dry run (the test suite runs it).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLVERS = ("FixedPoint", "Neumann", "CGNE", "LSQR", "GMRES")
TEST_FILES = ("tests/test_backends.py", "tests/test_trust.py", "tests/test_diagnostics.py",
              "tests/test_host_transfers.py")
TASKS = {"hopfield": ("mnist/train-images-idx3-ubyte.gz", ["--method", "neumann_rbp", "--truncate", "5"]),
         "citation": ("planetoid/ind.cora.x", ["--method", "neumann_rbp"]),
         "hyperopt": ("mnist/train-images-idx3-ubyte.gz", ["--method", "neumann_rbp"])}
SIZE, BATCH, K = 4096, 64, 10


def _version(name):
    try:
        return getattr(importlib.import_module(name), "__version__", "?")
    except Exception as error:  # not installed, or broken
        return f"not importable ({type(error).__name__})"


def environment() -> list[str]:
    lines = [f"- Python {platform.python_version()} on {platform.platform()}",
             f"- numpy {_version('numpy')}, torch {_version('torch')}, cupy {_version('cupy')}, "
             f"array-api-compat {_version('array_api_compat')}"]
    try:
        import torch

        if torch.cuda.is_available():
            lines.append(f"- torch CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}")
    except Exception:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        lines.append(f"- nvidia-smi: {out.stdout.strip() or out.stderr.strip()}")
    except Exception as error:
        lines.append(f"- nvidia-smi: not available ({type(error).__name__})")
    return lines


def backends(dry_run: bool) -> list[tuple[str, object, object, object]]:
    """``(name, xp, device, sync)`` of the backends to measure: torch-cuda and cupy (numpy in a dry run)."""
    if dry_run:
        import array_api_compat.numpy as xp

        return [("numpy (dry run)", xp, "cpu", lambda: None)]
    out = []
    try:
        import array_api_compat.torch as xp
        import torch

        if torch.cuda.is_available():
            out.append(("torch-cuda", xp, "cuda", torch.cuda.synchronize))
    except Exception:
        pass
    try:
        import array_api_compat.cupy as xp
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            out.append(("cupy", xp, None, cupy.cuda.Device().synchronize))
    except Exception:
        pass
    return out


def _problem(xp, device, n, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    W = rng.standard_normal((n, n)).astype(np.float32)
    W *= 0.9 / np.linalg.norm(W, 2)
    Wx = xp.asarray(W, device=device)
    g = xp.asarray(rng.standard_normal((batch, n)).astype(np.float32), device=device)
    import rbpsolve

    J = rbpsolve.JacobianOperator(lambda u: u @ Wx, lambda v: v @ xp.matrix_transpose(Wx), like=g)
    return J, g


def _solver(name, **kw):
    import rbpsolve

    return getattr(rbpsolve, name)(**kw)


def timings(backend, n, batch) -> list[str]:
    import rbpsolve

    name, xp, device, sync = backend
    J, g = _problem(xp, device, n, batch)
    rows = []
    for solver in SOLVERS:
        s = _solver(solver, rtol=1e-4, max_steps=200)
        rbpsolve.solve_adjoint(J, g, s, throw=False)  # warm-up
        best = float("inf")
        for _ in range(3):
            sync()
            t0 = time.perf_counter()
            res = rbpsolve.solve_adjoint(J, g, s, throw=False)
            sync()
            best = min(best, time.perf_counter() - t0)
        rows.append(f"| {name} | {solver} | {res.status.name} | {res.num_steps} | {1e3 * best:.2f} | "
                    f"{1e6 * best / max(res.num_steps, 1):.0f} |")
    return rows


def syncs_per_step(backend, n) -> list[str]:
    from rbpsolve import _backend

    import rbpsolve

    name, xp, device, _ = backend
    J, g = _problem(xp, device, n, 1)
    rows = []
    for solver in SOLVERS:
        counts = {}
        for mode, kw in (("tolerance", dict(rtol=1e-30, atol=1e-30)), ("fixed budget", dict(rtol=0.0, atol=0.0))):
            per = []
            for steps in (K, 2 * K):
                before = _backend.transfer_count()
                rbpsolve.solve_adjoint(J, g, _solver(solver, max_steps=steps, **kw), throw=False)
                per.append(_backend.transfer_count() - before)
            counts[mode] = (per[1] - per[0]) / K
        rows.append(f"| {name} | {solver} | {counts['tolerance']:.2f} | {counts['fixed budget']:.2f} |")
    return rows


def run(cmd, timeout, dry_run, env=None) -> tuple[str, str]:
    """``(verdict, tail)`` of a command; in a dry run, only check it starts (``--help`` or ``--collect-only``)."""
    if dry_run:
        cmd = cmd + (["--collect-only", "-q"] if "pytest" in cmd else ["--help"])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired:
        return "timed out", f"after {timeout} s"
    if dry_run:
        return ("starts" if proc.returncode == 0 else f"exit {proc.returncode}"), " ".join(cmd[-1:])
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    return ("ok" if proc.returncode == 0 else f"exit {proc.returncode}"), tail[0][:200]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="check every step on any machine (numpy in place of the GPU)")
    p.add_argument("--out", type=Path, default=None,
                   help="summary file (default benchmarks/results/gpu_check_<date>.md; a dry run: gpu_check_dry_run.md)")
    args = p.parse_args(argv)
    dry = args.dry_run
    start = time.perf_counter()
    out = args.out or ROOT / "benchmarks" / "results" / ("gpu_check_dry_run.md" if dry else
                                                         f"gpu_check_{datetime.date.today():%Y-%m-%d}.md")
    lines = [f"# GPU check{' (DRY RUN: numpy in place of the GPU, commands only checked)' if dry else ''}",
             "", f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
                 f"`python benchmarks/gpu_check.py{' --dry-run' if dry else ''}`.", "", "## Environment", "",
             *environment(), ""]
    found = backends(dry)
    lines += ["## Backends", "", "- " + (", ".join(b[0] for b in found) or "none: no CUDA torch and no cupy GPU"), ""]

    lines += ["## CUDA and cupy test columns", ""]
    verdict, tail = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda or cupy",
                         *TEST_FILES], 90, dry)
    lines += [f"`pytest -k 'cuda or cupy' {' '.join(TEST_FILES)}`: {verdict} ({tail})", ""]

    n, batch = (64, 4) if dry else (SIZE, BATCH)
    lines += [f"## Solver times (n = {n}, batch {batch}, float32, ||J|| = 0.9, rtol 1e-4, best of 3)", "",
              "| backend | solver | status | steps | ms | µs a step |", "|---|---|---|---:|---:|---:|"]
    for b in found:
        lines += timings(b, n, batch)
    lines += ["", f"## Host synchronisations per solver step (a run of {2 * K} steps minus one of {K}, over {K})", "",
              "Goal: 1 with a tolerance, 0 for a fixed budget.", "",
              "| backend | solver | with a tolerance | fixed budget |", "|---|---|---:|---:|"]
    for b in found:
        lines += syncs_per_step(b, n)

    lines += ["", "## Reference tasks, quick mode", "", "| task | run | result |", "|---|---|---|"]
    data = os.environ.get("RBPSOLVE_DATA")
    for task, (needed, extra) in TASKS.items():
        for label, flags in (("--backend cupy", ["--backend", "cupy"]), ("--device cuda", ["--device", "cuda"])):
            cmd = [sys.executable, "-m", "rbpsolve.cli", "task", task, "--quick", "--no-progress", *extra, *flags]
            if not dry and not (data and (Path(data) / needed).is_file()):
                lines.append(f"| {task} | {label} | skipped: {needed} not under $RBPSOLVE_DATA |")
                continue
            verdict, tail = run(cmd, 25, dry)
            lines.append(f"| {task} | {label} | {verdict}: {tail} |")
    lines += ["", f"Total {time.perf_counter() - start:.0f} s."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
