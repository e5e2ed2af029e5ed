#!/usr/bin/env bash
# The GPU check of issue 16, on a machine with an NVIDIA GPU: its own Python, torch and cupy (not this
# project's pins) and possibly no network. Installs this working tree without dependencies, then runs
# benchmarks/gpu_check.py, which writes one markdown summary under benchmarks/results/ (or --out FILE).
# Under 5 minutes: every step has its own time limit. `bash benchmarks/gpu_check.sh --dry-run` checks
# every step on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
# No dependencies, no build isolation: nothing is fetched; the machine's numpy/scipy/torch/cupy are used.
"$python" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || "$python" -m pip install -q --no-deps --no-build-isolation . \
    || { echo "gpu_check: could not install the project (pip and setuptools are needed)" >&2; exit 2; }
exec "$python" benchmarks/gpu_check.py "$@"
