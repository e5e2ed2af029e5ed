#!/usr/bin/env bash
# CI's benchmark smoke test: every benchmark must import and validate (`asv check`), and one
# short run must complete without a failed benchmark (asv exits 2 on any failure). It uses the
# current environment (`--python=same`) and judges no timings; results are not saved.
set -euo pipefail
cd "$(dirname "$0")"
asv machine --yes --machine ci > /dev/null
asv check --python=same
# One short run: the numerical regressions (accuracy per cost, rbpsolve vs scipy iterations
# and residuals at the small size) and the solver-cost suite at its small size, each once.
asv run --python=same --machine ci --quick --show-stderr \
    --bench 'bench_accuracy' --bench 'bench_scipy.*small' --bench 'SolverCost.*small'
