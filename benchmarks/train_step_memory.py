"""Peak memory and time of one training step: Neumann-RBP (``fixed_point``) against BPTT.

The model is a Hopfield-like network of 2,592 neurons (784 input + 1024 hidden + 784
output units, fully connected), batch 10, float32, on the CPU:

    h_{t+1} = F(h_t) = (1 - tau) h_t + tau * tanh(h_t W^T + b + P x),

where ``P x`` clamps the 784-pixel input image ``x`` onto the input units as a current,
and the loss is the mean squared error between ``tanh`` of the output units and ``x``
(associative recall). One training step is: run ``T`` forward steps from ``h_0 = 0``,
the loss, backward, and an SGD update of ``W`` and ``b`` (6.7 M parameters).

Methods (each cell is a fresh subprocess):

- ``bptt``: :func:`rbpsolve.adapters.torch.unroll` with the full graph of ``T`` steps;
- ``rbp``: :func:`rbpsolve.adapters.torch.fixed_point` with ``Picard(max_steps=T, rtol=0,
  atol=0)`` (exactly ``T`` graph-free steps unless ``h`` stops changing) and
  ``Neumann(max_steps=K)`` (K = 20);
- ``tbptt``: ``unroll(..., truncate=K + 1)``, the same gradient as ``rbp`` at a converged
  state (Proposition 1), for reference.

Memory, measured two ways, each in a fresh process after a warm-up of every code path
on a 16-neuron copy (so one-time library initialisation is not counted) and after the
model, data and optimizer are built:

- ``rss``: ``ru_maxrss`` at the end of the step minus ``ru_maxrss`` just before it
  (Linux, KiB). The process runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so that every
  tensor of 64 KiB or more (a state is 104 KiB) is its own ``mmap`` returned to the
  system when freed: RSS then follows live memory instead of glibc's retained heap.
- ``tensors``: the peak, over the step, of the bytes held by torch's CPU allocator
  above its level at the start, from the ``[memory]`` events of ``torch.profiler``
  (``profile_memory=True``, read from its exported Chrome trace).

Time: a separate fresh process with the default allocator, one warm-up step, then the
fastest of ``--repeats`` steps (the minimum is the robust statistic on a shared machine,
where other processes only ever add time; the median is in the JSON too).

Run from the repository root::

    python benchmarks/train_step_memory.py                 # T = 50 100 200 400, K = 20
    python benchmarks/train_step_memory.py --T 50 100 --repeats 1 --json out.json

It prints a markdown table and writes JSON (default ``benchmarks/results/train_step_memory.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# The model and the step live in the asv suite's package (benchmarks/benchmarks/_training.py),
# importable here because this script's directory is first on sys.path.
from benchmarks._training import N_HID, N_IN, N_OUT, TAU, build, tensor_peak, train_step, warm_up


def worker(method, T, K, mode, repeats):
    import gc
    import resource

    warm_up(K)
    model = build()
    gc.collect()
    out = dict(method=method, T=T, K=K, mode=mode)
    if mode == "memory":
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out.update(train_step(model, method, T, K))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss_peak_mib"] = (after - before) / 1024.0
        gc.collect()
        out["tensor_peak_mib"] = tensor_peak(model, method, T, K) / 2**20
    else:
        train_step(model, method, T, K)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out.update(train_step(model, method, T, K))
            times.append(time.perf_counter() - start)
        out["time_s"] = min(times)
        out["time_median_s"] = statistics.median(times)
        out["times_s"] = times
    print("RESULT " + json.dumps(out))


def run_cell(method, T, K, mode, repeats):
    env = dict(os.environ)
    if mode == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, str(T), str(K), mode, str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cell {method} T={T} {mode} failed:\n{proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


# ---------------------------------------------------------------------------- the table
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[50, 100, 200, 400], help="forward steps")
    parser.add_argument("--K", type=int, default=20, help="Neumann steps (default 20)")
    parser.add_argument("--methods", nargs="+", default=["bptt", "rbp", "tbptt"], choices=["bptt", "rbp", "tbptt"])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per cell (the fastest is reported)")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train_step_memory.json"))
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, T, K, mode, repeats = args.worker
        worker(method, int(T), int(K), mode, int(repeats))
        return

    import torch

    cells = {}
    for T in args.T:
        for method in args.methods:
            mem = run_cell(method, T, args.K, "memory", args.repeats)
            tim = run_cell(method, T, args.K, "time", args.repeats)
            cells[(method, T)] = {**mem, **{k: tim[k] for k in ("time_s", "time_median_s", "times_s")}}
            print(f"  done {method:5s} T={T:4d}: rss {mem['rss_peak_mib']:7.1f} MiB, tensors "
                  f"{mem['tensor_peak_mib']:7.1f} MiB, {tim['time_s']:.3f} s", file=sys.stderr)

    rows = []
    header = ("| T | BPTT time (s) | RBP time (s) | time ratio | BPTT peak RSS (MiB) | RBP peak RSS (MiB) | "
              "RSS ratio | BPTT tensor peak (MiB) | RBP tensor peak (MiB) | tensor ratio | RBP forward steps | "
              "RBP last step norm |")
    print(f"\nOne training step, Hopfield-like network n = {N_IN + N_HID + N_OUT} (784 + 1024 + 784), batch 10, "
          f"float32, CPU ({os.cpu_count()} cores), torch {torch.__version__}; RBP = fixed_point + Neumann(K={args.K}). "
          f"Time: fastest of {args.repeats} steps; memory: peak over the step above the level before it.\n")
    print(header)
    print("|" + "|".join(["---"] * (header.count("|") - 1)) + "|")
    for T in args.T:
        b, r = cells.get(("bptt", T)), cells.get(("rbp", T))
        if b is None or r is None:
            continue
        row = dict(
            T=T,
            bptt_time_s=b["time_s"], rbp_time_s=r["time_s"], time_ratio=b["time_s"] / r["time_s"],
            bptt_rss_mib=b["rss_peak_mib"], rbp_rss_mib=r["rss_peak_mib"], rss_ratio=b["rss_peak_mib"] / r["rss_peak_mib"],
            bptt_tensor_mib=b["tensor_peak_mib"], rbp_tensor_mib=r["tensor_peak_mib"],
            tensor_ratio=b["tensor_peak_mib"] / r["tensor_peak_mib"],
            rbp_forward_steps=r.get("forward_steps"),
            rbp_last_step_norm=r.get("last_step_norm"),
        )
        rows.append(row)
        print(f"| {T} | {row['bptt_time_s']:.3f} | {row['rbp_time_s']:.3f} | {row['time_ratio']:.2f} | "
              f"{row['bptt_rss_mib']:.1f} | {row['rbp_rss_mib']:.1f} | {row['rss_ratio']:.2f} | "
              f"{row['bptt_tensor_mib']:.1f} | {row['rbp_tensor_mib']:.1f} | {row['tensor_ratio']:.2f} | "
              f"{row['rbp_forward_steps']} | {row['rbp_last_step_norm']:.1e} |")
    if any(m == "tbptt" for m in args.methods):
        print(f"\nTBPTT through the last K + 1 = {args.K + 1} steps (same gradient as RBP at a converged state):\n")
        print("| T | time (s) | peak RSS (MiB) | tensor peak (MiB) |")
        print("|---|---|---|---|")
        for T in args.T:
            c = cells.get(("tbptt", T))
            if c:
                print(f"| {T} | {c['time_s']:.3f} | {c['rss_peak_mib']:.1f} | {c['tensor_peak_mib']:.1f} |")

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(
            dict(
                model=dict(neurons=[N_IN, N_HID, N_OUT], batch=10, dtype="float32", tau=TAU),
                K=args.K,
                machine=dict(cpu_count=os.cpu_count(), platform=platform.platform(), torch=torch.__version__,
                             python=platform.python_version()),
                memory_methods=dict(
                    rss="ru_maxrss delta over the step, fresh process, MALLOC_MMAP_THRESHOLD_=65536, "
                        "baseline after warm-up and model construction",
                    tensors="peak of torch CPU allocator bytes above the start of the step, torch.profiler [memory] events",
                ),
                rows=rows,
                cells=[dict(v) for v in cells.values()],
            ),
            fh,
            indent=2,
        )
    print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
