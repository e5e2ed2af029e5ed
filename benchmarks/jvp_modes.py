"""Cost of a JVP ``J v`` in units of a VJP ``J^T u``, for the two modes of ``jacobian_operator``.

``J = df/dh`` of a tanh network ``f(h) = tanh(h W^T + x)`` and of a GRU step
``f(h) = GRUCell(x, h)`` (n = 512, batch 1, 10, 100), float32, on the CPU. Every product
goes through :func:`rbpsolve.adapters.torch.jacobian_operator`:

- VJP: one reverse pass on the retained graph of ``f(h)``;
- ``double_backward``: differentiate ``u -> J^T u`` (its graph built once, at the first
  JVP; the one-time cost is reported as ``build``) with respect to ``u``;
- ``forward``: forward-mode AD, running ``f`` again per product.

Times are medians over ``--reps`` products after two warm-up products. Run from the
repository root: ``python benchmarks/jvp_modes.py [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _median_us(fn, reps):
    fn()
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def measure(name, f, h, reps):
    import torch

    from rbpsolve.adapters.torch import jacobian_operator

    u = torch.randn_like(h)
    v = torch.randn_like(h)
    J_rev = jacobian_operator(f, h, jvp="double_backward")
    vjp = _median_us(lambda: J_rev.rmv(u), reps)
    start = time.perf_counter()
    J_rev.mv(v)  # builds the graph of the VJP
    build = (time.perf_counter() - start) * 1e6
    double = _median_us(lambda: J_rev.mv(v), reps)
    J_fwd = jacobian_operator(f, h, jvp="forward")
    forward = _median_us(lambda: J_fwd.mv(v), reps)
    with torch.no_grad():
        f_time = _median_us(lambda: f(h), reps)
    agree = float((J_rev.mv(v) - J_fwd.mv(v)).norm() / J_rev.mv(v).norm())
    return dict(case=name, f_us=f_time, vjp_us=vjp, double_backward_us=double, build_us=build, forward_us=forward,
                double_backward_per_vjp=double / vjp, forward_per_vjp=forward / vjp, build_per_vjp=build / vjp,
                relative_difference=agree)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(0)
    n = args.n
    rows = []
    # one throw-away case so that library initialisation is not charged to the first row
    measure("warm-up", lambda h: torch.tanh(h @ torch.eye(8).T), torch.randn(2, 8), 3)
    for batch in args.batches:
        W = torch.nn.Linear(n, n)
        x = torch.randn(batch, n)
        rows.append(measure(f"tanh n={n} batch={batch}", lambda h: torch.tanh(W(h) + x), torch.randn(batch, n), args.reps))
        cell = torch.nn.GRUCell(n, n)
        xi = torch.randn(batch, n)
        rows.append(measure(f"GRUCell n={n} batch={batch}", lambda h: cell(xi, h), torch.randn(batch, n), args.reps))

    print(f"\nJVP cost in VJPs (CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, float32)\n")
    print("| case | f (us) | VJP (us) | double backward (us) | = VJPs | its one-time build (VJPs) | forward mode (us) | = VJPs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['f_us']:.0f} | {r['vjp_us']:.0f} | {r['double_backward_us']:.0f} | "
              f"{r['double_backward_per_vjp']:.2f} | {r['build_per_vjp']:.1f} | {r['forward_us']:.0f} | "
              f"{r['forward_per_vjp']:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(torch=torch.__version__, threads=torch.get_num_threads(), rows=rows), fh, indent=2)


if __name__ == "__main__":
    main()
