#!/usr/bin/env bash
# Issue 14 on a GPU: the host-transfer counts on torch CUDA and cupy, and the overhead
# report on those backends. Run from the repository root on a machine with a GPU (about
# 5 minutes); commit what it prints as benchmarks/gpu_protocol_check.md.
set -uo pipefail
echo "# GPU protocol check ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'
echo
echo '## Host transfers a step (tests/test_host_transfers.py, the CUDA and cupy columns)'
echo '```'
python -m pytest -q -p no:cacheprovider tests/test_host_transfers.py -k "cuda or cupy" -rs 2>&1 | tail -15
echo '```'
echo
echo '## Overhead against the products'
python benchmarks/overhead_report.py --backends torch-cuda,cupy --sizes small,realistic --repeats 5 \
    --no-memory --scipy-n 0 --note "GPU" 2>/dev/null
