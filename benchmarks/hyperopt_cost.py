"""Table 3 of Liao et al. (2018): run time and peak memory of BPTT over Neumann-RBP, one meta step.

One meta step of the hyperparameter task (``rbpsolve.adapters.tasks.hyperopt``): ``T``
training steps of the 784-50-50-50-10 tanh network on 10,000 MNIST images (batch 200)
and the hypergradient of the 16 learning rates and momenta, by

- ``bptt``: back-propagation through all ``T`` steps (does not depend on ``K``: measured
  once and shared by the three columns);
- ``neumann``: Neumann-RBP with ``K`` VJPs at the last step, the first ``T - 1`` steps
  run without a graph (what rbpsolve does);
- ``neumann_graph``: Neumann-RBP as the paper's code runs it (``model/hypergrad_net.py``
  of lrjconan/RBP): every training step is built with ``create_graph=True`` and the state
  is only detached at step ``T - 1``, so the forward pass holds the graph of ``T - 2``
  steps at its end; the paper's Table 3 was measured on that code.

Every cell runs three times, each in a fresh subprocess (``OMP_NUM_THREADS=1``), after a
warm-up of the same code path on a 5-4-3 network (so one-time library initialisation is not
counted) and after the data are loaded (the 10,000 training images, cached once as float32
by a separate child, so that neither the parent, whose ``ru_maxrss`` every child inherits
through fork and exec, nor a measuring child ever holds the peak of decoding all 70,000):

- ``time``: the wall time of the meta step, default allocator, no hooks;
- ``rss``: ``ru_maxrss`` after the meta step minus ``ru_maxrss`` just before it, with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so that every tensor of 64 KiB or more is its own
  ``mmap``, returned to the system when freed (as ``benchmarks/train_step_memory.py``);
  its wall time is kept as ``rss_seconds`` only, because one ``mmap`` per tensor slows
  the allocation-heavy full-batch products;
- ``saved``: the peak of the bytes of tensors saved for backward by autograd
  (``torch.autograd.graph.saved_tensors_hooks``; a storage saved by several nodes counted
  once, released when the last node holding it is freed): the memory of the graphs.

``--runs N`` repeats the ``time`` measurement N times (the paper reports "the average of 10
runs"), run by run over all cells so that a change of the machine's load falls on every cell
alike; the table gives the mean and the sample standard deviation of the seconds, and the time
ratio as the mean ± standard deviation of the N per-run ratios (BPTT's seconds of run i over
Neumann-RBP's of run i). ``--memory-runs M`` repeats ``rss`` and ``saved`` likewise (the saved
bytes are the same in every run: the graphs do not depend on the load).

Run from the repository root (``RBPSOLVE_DATA`` pointing to the MNIST files)::

    python benchmarks/hyperopt_cost.py --steps 500            # K = 10 50 100
    python benchmarks/hyperopt_cost.py --steps 1000 --runs 10 --memory-runs 3 --out docs/results/hyperopt/table3_T1000
    python benchmarks/hyperopt_cost.py --quick                # a smoke run on random data

It prints a markdown table and writes JSON and markdown (default ``docs/results/hyperopt/table3.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

PAPER = {10: (3.02, 4.35), 50: (2.87, 4.25), 100: (2.68, 4.11)}  # K: (time ratio, memory ratio), Table 3


class SavedBytes:
    """Live and peak bytes of the storages autograd saves for backward."""

    def __init__(self):
        self.live, self.peak, self.count = 0, 0, {}

    def pack(self, t):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        n, size = self.count.get(key, (0, storage.nbytes()))
        if n == 0:
            self.live += size
            self.peak = max(self.peak, self.live)
        self.count[key] = (n + 1, size)
        return _Handle(t, self, key)

    def release(self, key):
        n, size = self.count[key]
        if n == 1:
            del self.count[key]
            self.live -= size
        else:
            self.count[key] = (n - 1, size)

    @staticmethod
    def unpack(handle):
        return handle.t


class _Handle:
    __slots__ = ("t", "owner", "key")

    def __init__(self, t, owner, key):
        self.t, self.owner, self.key = t, owner, key

    def __del__(self):
        self.owner.release(self.key)


def _cache_data(quick, path):
    """Write the 10,000 training images (float32) once, so that no child's baseline includes the peak of
    decoding all 70,000 images (``ru_maxrss`` is a high-water mark and cannot be reset)."""
    import numpy as np
    import torch

    if quick:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(1000, 784, generator=g), torch.randint(0, 10, (1000,), generator=g)
    else:
        from rbpsolve.adapters.tasks.hyperopt.data import load_split

        x, y = load_split()["train"]
    np.savez(path, x=x.numpy(), y=y.numpy())


def _data(path):
    import numpy as np
    import torch

    from rbpsolve.adapters.tasks.hyperopt.hypergrad import Data

    with np.load(path) as f:
        x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
    return Data(x, y, x, y)


def worker(method, T, K, mode, quick, data_path):
    import torch

    from rbpsolve.adapters.tasks.hyperopt.hypergrad import Data, meta_step
    from rbpsolve.adapters.tasks.hyperopt.sgd import MLP, hyper_init

    kw = dict(method="bptt" if method == "bptt" else "neumann", steps=T, truncate=None if method == "bptt" else K,
              forward_graph=method == "neumann_graph")
    tiny = MLP((5, 4, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    meta_step(tiny, hyper_init(tiny), Data(x, y, x, y), **dict(kw, steps=3, truncate=None if method == "bptt" else 2),
              batch_size=10)  # warm-up
    data = _data(data_path)
    mlp = MLP()
    theta = hyper_init(mlp)
    bs = 100 if quick else 200
    if mode == "saved":
        counter = SavedBytes()
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
            meta_step(mlp, theta, data, batch_size=bs, **kw)
        return {"saved_bytes": counter.peak}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    r = meta_step(mlp, theta, data, batch_size=bs, **kw)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "time":
        return {"seconds": seconds, "meta_loss": r.meta_loss}
    # one mmap per large tensor slows allocation-heavy code: this run's time is kept apart
    return {"rss_seconds": seconds, "rss_bytes": (after - before) * 1024}


def run_cell(method, T, K, mode, quick, data_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if mode == "rss":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, str(T), str(K), mode, "--data-cache", data_path]
    cmd += ["--quick"] if quick else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cell {method} T={T} K={K} {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mean_sd(values):
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return mean, sd


def _seconds(cell):
    """``mean`` or ``mean ± sd`` of a cell's timed runs (one run in files written before ``--runs``)."""
    runs = cell.get("seconds_runs", [cell["seconds"]])
    mean, sd = _mean_sd(runs)
    return f"{mean:.2f}" if len(runs) == 1 else f"{mean:.2f} ± {sd:.2f}"


def _time_ratio(b, n):
    """BPTT's seconds over the other's, paired run by run: ``×mean`` or ``×mean ± sd``."""
    pairs = list(zip(b.get("seconds_runs", [b["seconds"]]), n.get("seconds_runs", [n["seconds"]])))
    mean, sd = _mean_sd([x / y for x, y in pairs])
    return f"×{mean:.2f}" if len(pairs) == 1 else f"×{mean:.2f} ± {sd:.2f}"


def table(res):
    mib = 2.0**20
    runs = res.get("runs", 1)
    spread = (f" Seconds: mean ± standard deviation of {runs} runs; time ratios: mean ± standard deviation of the "
              f"{runs} per-run ratios; memory: the largest of {res.get('memory_runs', 1)} run(s)." if runs > 1 else "")
    lines = [
        f"T = {res['steps']} training steps, one meta step; memory in MiB (rss: ru_maxrss delta; saved: autograd's "
        f"saved tensors).{spread}",
        "",
        "| K | BPTT s | Neumann-RBP s | time ratio (paper) | BPTT rss / saved | Neumann-RBP rss / saved | "
        "memory ratio rss / saved (paper) | paper-code Neumann-RBP s, rss / saved | its ratios time, rss / saved |",
        "|---:|---:|---:|---|---|---|---|---|---|",
    ]
    b = res["bptt"]
    for K in res["truncations"]:
        n, p = res["neumann"][str(K)], res["neumann_graph"][str(K)]
        pt, pm = PAPER.get(K, (float("nan"), float("nan")))
        lines.append(
            f"| {K} | {_seconds(b)} | {_seconds(n)} | {_time_ratio(b, n)} (×{pt}) | "
            f"{b['rss_bytes'] / mib:.0f} / {b['saved_bytes'] / mib:.0f} | {n['rss_bytes'] / mib:.0f} / {n['saved_bytes'] / mib:.0f} | "
            f"×{b['rss_bytes'] / max(n['rss_bytes'], 1):.2f} / ×{b['saved_bytes'] / n['saved_bytes']:.2f} (×{pm}) | "
            f"{_seconds(p)}, {p['rss_bytes'] / mib:.0f} / {p['saved_bytes'] / mib:.0f} | "
            f"{_time_ratio(b, p)}, ×{b['rss_bytes'] / max(p['rss_bytes'], 1):.2f} / "
            f"×{b['saved_bytes'] / p['saved_bytes']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=500, help="training steps T of the meta step")
    p.add_argument("--truncate", type=int, nargs="+", default=[10, 50, 100], help="K values (paper: 10 50 100)")
    p.add_argument("--quick", action="store_true", help="random data of 1,000 images, T = 20, K = 2 5")
    p.add_argument("--runs", type=int, default=1, help="timed runs of every cell (paper: 10)")
    p.add_argument("--memory-runs", type=int, default=1, help="rss and saved-tensor runs of every cell")
    p.add_argument("--out", default="docs/results/hyperopt/table3", help="output path without suffix (.json, .md)")
    p.add_argument("--data-cache", default=None, help=argparse.SUPPRESS)
    p.add_argument("--write-cache", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker", nargs=4, metavar=("METHOD", "T", "K", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs < 1 or args.memory_runs < 1:
        p.error("--runs and --memory-runs must be at least 1")
    if args.write_cache:
        _cache_data(args.quick, args.write_cache)
        return 0
    if args.worker:
        method, T, K, mode = args.worker
        print(json.dumps(worker(method, int(T), int(K), mode, args.quick, args.data_cache)))
        return 0
    T, Ks = (20, [2, 5]) if args.quick else (args.steps, args.truncate)
    res = {"steps": T, "truncations": Ks, "quick": args.quick, "machine": platform.platform(),
           "processor": platform.processor(), "cpus": os.cpu_count(), "threads": 1,
           "time": "seconds: wall time of the meta step in a fresh process with default malloc and no hooks",
           "memory": "rss: ru_maxrss delta over the meta step in a fresh process with MALLOC_MMAP_THRESHOLD_=65536 "
                     "(rss_seconds: that run's time); saved: peak bytes of autograd's saved tensors "
                     "(saved_tensors_hooks), a third fresh process",
           "runs": args.runs, "memory_runs": args.memory_runs,
           "bptt": {}, "neumann": {}, "neumann_graph": {}}
    jobs = [("bptt", Ks[0])] + [(m, K) for K in Ks for m in ("neumann", "neumann_graph")]
    import tempfile

    from tqdm import tqdm

    tmp = tempfile.TemporaryDirectory()
    data_path = os.path.join(tmp.name, "train.npz")
    # in a child too: a child inherits its parent's ru_maxrss high-water mark through fork and exec,
    # so the parent must never hold the decoded data set
    cmd = [sys.executable, os.path.abspath(__file__), "--write-cache", data_path] + (["--quick"] if args.quick else [])
    subprocess.run(cmd, check=True)
    cells = {job: {"seconds_runs": [], "rss_runs": [], "saved_runs": []} for job in jobs}
    # run by run over all cells, so that a change of the machine's load falls on every cell alike
    schedule = [(r, mode, job) for r in range(max(args.runs, args.memory_runs)) for job in jobs
                for mode in ("time", "rss", "saved") if r < (args.runs if mode == "time" else args.memory_runs)]
    for r, mode, (method, K) in tqdm(schedule, desc="measurements"):
        out = run_cell(method, T, K, mode, args.quick, data_path)
        cell = cells[(method, K)]
        if mode == "time":
            cell["seconds_runs"].append(out["seconds"])
            cell["meta_loss"] = out["meta_loss"]
        elif mode == "rss":
            cell["rss_runs"].append(out["rss_bytes"])
            cell.setdefault("rss_seconds_runs", []).append(out["rss_seconds"])
        else:
            cell["saved_runs"].append(out["saved_bytes"])
    for (method, K), cell in cells.items():
        cell["seconds"] = _mean_sd(cell["seconds_runs"])[0]
        cell["rss_bytes"], cell["saved_bytes"] = max(cell["rss_runs"]), max(cell["saved_runs"])
        if method == "bptt":
            res["bptt"] = cell
        else:
            res[method][str(K)] = cell
    tmp.cleanup()
    md = table(res)
    print(md)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as fh:
        json.dump(res, fh, indent=1)
    with open(args.out + ".md", "w") as fh:
        fh.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
