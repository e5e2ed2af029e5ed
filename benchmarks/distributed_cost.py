"""Communication and time of a solve on a state split over 2 CPU processes, against 1.

Each method solves ``(I - J^T) z = g`` for a fixed number of steps with a diagonal ``J``
(``J^T u = d * u``: its products need no communication, so the only messages are the
solver's own all-reduces), on a state of ``n`` float64 elements, first whole in one
process, then split over ``--ranks`` processes (gloo, localhost), each holding ``n / ranks``.
It reports per step: all-reduces, bytes all-reduced per rank, and seconds, and the time
ratio split / whole. On this machine's 2 cores no speed-up is expected: the point is the
communication the solver adds and its latency.

Usage::

    python benchmarks/distributed_cost.py --sizes 10000 1000000 --steps 200 --out docs/results/scale/cost

Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path

METHODS = ("Neumann", "CGNE", "LSQR", "GMRES")


def _solver(name, steps):
    import rbpsolve

    if name == "GMRES":
        return rbpsolve.GMRES(max_steps=steps, restart=steps, rtol=0.0, atol=0.0)
    return getattr(rbpsolve, name)(max_steps=steps, rtol=0.0, atol=0.0)


def _measure(rank, world, n, steps, repeats):
    """Seconds a step (best of ``repeats``), all-reduces and bytes of each method on this rank."""
    import numpy as np
    import torch

    import rbpsolve
    from rbpsolve.adapters.torch.distributed import sharding

    edges = np.linspace(0, n, world + 1).round().astype(int)
    lo, hi = int(edges[rank]), int(edges[rank + 1])
    d = torch.tensor(np.linspace(0.1, 0.9, n)[lo:hi])  # J = diag(d): a contraction, no halo
    g = torch.tensor(np.random.default_rng(0).standard_normal(n)[lo:hi])
    shards = sharding(g) if world > 1 else None
    J = rbpsolve.JacobianOperator(lambda u: d * u, lambda v: d * v, like=g, sharding=shards)
    out = {}
    for name in METHODS:
        solver = _solver(name, steps)
        best = float("inf")
        for _ in range(repeats + 1):  # the first run warms up (allocator, gloo's buffers): not counted
            if shards is not None:
                shards.reduce.reset()
                torch.distributed.barrier()
            start = time.perf_counter()
            result = rbpsolve.solve_adjoint(J, g, solver, throw=False)
            elapsed = time.perf_counter() - start
            best = best if _ == 0 else min(best, elapsed)
        out[name] = {
            "seconds_per_step": best / result.num_steps,
            "steps": result.num_steps,
            "all_reduces": 0 if shards is None else shards.reduce.calls,
            "bytes": 0 if shards is None else shards.reduce.bytes,
        }
    return out


def _latency(repeats=500):
    """Seconds of one all-reduce of 1 and of 32 float64 values (best of 3 runs of ``repeats``)."""
    import torch
    import torch.distributed as dist

    out = {}
    for size in (1, 32):
        t = torch.zeros(size, dtype=torch.float64)
        best = float("inf")
        for _ in range(3):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(repeats):
                dist.all_reduce(t)
            best = min(best, (time.perf_counter() - start) / repeats)
        out[size] = best
    return out


def _entry(rank, world, port, args, queue):
    # One thread a process, in the 1-process run too (torchrun's default): 2 processes
    # of several threads each on 2 cores would measure oversubscription.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    import torch.distributed as dist

    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        measured = _measure(rank, world, *args)
        if world > 1:
            measured["all_reduce_seconds"] = _latency()
        queue.put((rank, measured))
    finally:
        if world > 1:
            dist.destroy_process_group()


def _run(world, n, steps, repeats):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [context.Process(target=_entry, args=(r, world, port, (n, steps, repeats), queue)) for r in range(world)]
    for p in procs:
        p.start()
    answers = dict(queue.get(timeout=1800) for _ in procs)
    for p in procs:
        p.join()
    return answers[0]


def _table(rows, ranks) -> str:
    lines = [
        f"| n | method | steps | all-reduces / step | bytes / step (a rank) | s / step, 1 process | "
        f"s / step, {ranks} processes | time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:.0e} | {r['method']} | {r['steps']} | {r['all_reduces_per_step']:.2f} | "
            f"{r['bytes_per_step']:.0f} | {r['whole_s']:.2e} | {r['split_s']:.2e} | x{r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.steps < 2 or args.ranks < 2 or any(n < args.ranks for n in args.sizes):
        parser.error("--steps >= 2, --ranks >= 2 and every size >= ranks")
    rows, latency = [], None
    for n in args.sizes:
        whole = _run(1, n, args.steps, args.repeats)
        split = _run(args.ranks, n, args.steps, args.repeats)
        latency = split.pop("all_reduce_seconds")
        for name in METHODS:
            w, s = whole[name], split[name]
            rows.append({
                "n": n, "method": name, "steps": s["steps"],
                "all_reduces_per_step": s["all_reduces"] / s["steps"], "bytes_per_step": s["bytes"] / s["steps"],
                "all_reduces": s["all_reduces"], "whole_s": w["seconds_per_step"], "split_s": s["seconds_per_step"],
                "ratio": s["seconds_per_step"] / w["seconds_per_step"],
            })
            print(f"n={n:.0e} {name:8s} {rows[-1]['all_reduces_per_step']:.2f} all-reduces/step  "
                  f"x{rows[-1]['ratio']:.2f} time", flush=True)
    table = _table(rows, args.ranks)
    table += (f"\n\nOne all-reduce alone (gloo, localhost, {args.ranks} processes): "
              f"{latency[1] * 1e6:.0f} us for 1 float64, {latency[32] * 1e6:.0f} us for 32.")
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"command": "python " + " ".join(sys.argv), "ranks": args.ranks, "steps": args.steps,
                "repeats": args.repeats, "cpus": os.cpu_count(), "rows": rows,
                "all_reduce_seconds": {str(k): v for k, v in latency.items()}}
        args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        args.out.with_suffix(".md").write_text(
            f"Command: `{meta['command']}` ({os.cpu_count()} CPUs, gloo on localhost; all-reduce counts include "
            f"each solve's fixed cost: input checks, ||g||, the final verification).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
