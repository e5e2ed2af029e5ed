#!/usr/bin/env bash
# CI's benchmark smoke test: every benchmark must import and validate (`asv check`), and one
# short run must complete without a failed benchmark (asv exits 2 on any failure). It uses the
# current environment (`--python=same`) and judges no timings; results are not saved.
set -euo pipefail
cd "$(dirname "$0")"
asv machine --yes --machine ci > /dev/null
asv check --python=same
# One short run: the numerical regressions (accuracy per cost, rbpsolve vs scipy iterations
# and residuals at the small size) and the solver-cost suite at its small size, each once;
# the error estimate's worst ratio on the far-from-normal family only (the whole
# EstimateQuality class takes about 45 s) and the verification's extra products at numpy small
# size (its setup checks that both solves converge): together about 6 s more. Issue 14's
# small-size overhead classes (OverheadSmall, OverheadSmallGMRESLimit: one shared setup_cache,
# 5 interleaved rounds of every solver on numpy and torch) add about 10 s. Issue 15's
# BatchedSmall (GMRES per-sample vs one-vector on a DEQ batch, n = 64, batch 8) about 2 s a
# process, 4 processes. Issue 21's RegulariserCost.track_products (the products each Jacobian
# regulariser spends, n = 64 and 256) about 3 s; issue 16's HopfieldProducts.time_vjp (numpy and
# torch products of the n = 2592 Hopfield model) a few seconds. Issue 17's JaxSmall.track_products
# (the JAX adapter's Neumann(K=30) backward and optimistix's ImplicitAdjoint + lx.GMRES, tanh n = 64,
# batch 8; products counted, the optimistix pullback compiled) about 9 s for its two processes;
# it is skipped where jax or optimistix is not installed.
asv run --python=same --machine ci --quick --show-stderr \
    --bench 'bench_accuracy' --bench 'bench_scipy.*small' --bench 'SolverCost.*small' \
    --bench "EstimateQuality.track_worst_ratio.*'nonnormal'" --bench "VerificationCost.track_extra_products.*'numpy', 'small'" \
    --bench 'OverheadSmall' --bench 'BatchedSmall' --bench 'RegulariserCost.track_products' \
    --bench 'HopfieldProducts.time_vjp' \
    --bench "JaxSmall.track_products.*'(rbpsolve-Neumann|optimistix-GMRES)'"
