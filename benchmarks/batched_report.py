"""Issue 15's batched figures as a markdown report: the measurements of
``benchmarks/benchmarks/bench_batched.py`` with more rounds.

The model: ``h_i = tanh(s_i W h_i + U x_i)``, n = 512, batch 64, float64, W orthogonal, the
per-sample scales calibrated so that each sample's Jacobian at its fixed point has spectral
norm ``||J_i||_2`` spread evenly over [0.3, 0.97] (exact: ``s_i max_j (1 - h_ij^2)``); the
loss weights ``g_i = c_i`` have unit norm. In one process, interleaved (``--repeats``
rounds, median [min–max]):

- backward, every sample to ``||r_i|| / ||g_i|| <= 1e-6``: per-sample mode (``batch_axis=0``)
  against one-vector mode (tolerance tightened until every sample meets 1e-6), per solver:
  batched product calls, steps, worst sample's residual (recomputed), time and time ratio;
- forward + backward against torchdeq 0.1.0 (Anderson forward, IFT backward with its
  ``anderson`` and its default ``fixed_point_iter``), same tolerance, caps and Anderson memory:
  evaluations, products, worst forward residual, gradient errors, time ratio.

Run from the repository root (about 2 minutes on 2 quiet cores with the defaults)::

    python benchmarks/batched_report.py [--repeats 7] [--solvers GMRES,FixedPoint,...] [--note "..."]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks.bench_batched import (  # noqa: E402
    ALL_BACKWARD_SOLVERS,
    BATCH,
    C_MAX,
    C_MIN,
    CAP,
    MEMORY,
    MODES,
    N,
    RESTART,
    RTOL,
    SAMPLE_SECONDS,
    DEQBatch,
    measure_backward,
    measure_forward_backward,
    median,
    peer_ratios,
    per_sample_ratios,
)
from overhead_report import _LoadWatch, _progress_bar, header_lines, spread  # noqa: E402

PEER_SOLVERS = ("anderson", "fixed_point_iter")


def backward_table(results) -> list[str]:
    lines = [
        "| solver | mode | solver rtol | batched products (VJP + JVP) | steps | worst sample ‖r_i‖/‖g_i‖ "
        "| time ms | per-sample / one-vector time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in results.items():
        for mode in MODES:
            c = e["counts"][mode]
            rtol = f"{e['rtol'][mode]:.3g}" + (f" (1e-6 · 2^-{e['halvings']}/2)" if mode == "one_vector" else "")
            steps = str(c["num_steps"])
            if c["sample_steps"] is not None:
                s = c["sample_steps"]
                steps += f" (per sample {int(s.min())}–{int(s.max())}, {len(np.unique(s))} distinct)"
            ratio = spread(per_sample_ratios(e)) if mode == "per_sample" else "–"
            lines.append(
                f"| {name} | {mode.replace('_', '-')} | {rtol} | {c['products']} ({c['num_vjp']} + {c['num_jvp']}) "
                f"| {steps} | {c['worst_residual']:.3g} | {median(e['times'][mode]) * 1e3:.0f} | {ratio} |"
            )
    return lines


def peer_table(result) -> list[str]:
    ours = result["rbpsolve"]
    fwd = ("per-sample Anderson (`batch_axis=0`, rtol 1e-6)" if ours["forward_mode"] == "per_sample"
           else f"one-vector Anderson, rtol {ours['forward_rtol']:.3g} (1e-6 · 2^-{ours['forward_halvings']}/2)")
    lines = [
        "| library | forward | backward | f evaluations | backward VJPs | worst forward ‖f(h_i) − h_i‖/‖f(h_i)‖ "
        "| gradient error | time ms | rbpsolve / torchdeq time |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| rbpsolve | {fwd} | GMRES({RESTART}), `batch_axis=0`, rtol 1e-6 | {ours['counts']['forward_evaluations']} "
        f"| {ours['counts']['backward_products']} | {ours['forward_worst']:.3g} | {ours['gradient_error']:.2g} "
        f"| {median(result['times']['rbpsolve']) * 1e3:.0f} | – |",
    ]
    for b, e in result["peers"].items():
        lines.append(
            f"| torchdeq 0.1.0 | `anderson` (m = {MEMORY + 1}, lam = 1e-4), `f_tol=1e-6`, `'rel'` | IFT, `{b}`, "
            f"`b_tol=1e-6`, `'abs'` | {e['counts']['forward_evaluations']} | {e['counts']['backward_products']} "
            f"| {e['forward_worst']:.3g} | {e['gradient_error']:.2g} "
            f"| {median(result['times'][f'torchdeq/{b}']) * 1e3:.0f} | {spread(peer_ratios(result, b))} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--solvers", default=",".join(ALL_BACKWARD_SOLVERS), help="comma-separated backward solvers")
    parser.add_argument("--no-peers", action="store_true", help="skip the forward + backward comparison")
    parser.add_argument("--no-radii", action="store_true", help="skip the spectral radii (64 dense eigenvalue problems)")
    parser.add_argument("--note", default="", help="a note on the machine, printed in the header")
    args = parser.parse_args(argv)
    solvers = [s for s in args.solvers.split(",") if s]
    for s in solvers:
        if s not in ALL_BACKWARD_SOLVERS:
            parser.error(f"unknown solver {s!r}; choose from {', '.join(ALL_BACKWARD_SOLVERS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    wall = time.perf_counter()
    model = DEQBatch()
    contractions = model.contractions()
    radii = None if args.no_radii else model.spectral_radii()
    total = args.repeats * (len(solvers) + (0 if args.no_peers else 1))
    bar_update, close = _progress_bar(total)
    update = _LoadWatch(bar_update)
    backward = measure_backward(model, solvers, args.repeats, progress=update)
    peers = None
    if not args.no_peers:
        try:
            peers = measure_forward_backward(model, PEER_SOLVERS, args.repeats, progress=update)
        except NotImplementedError as error:
            peers = str(error)
    close()
    wall = time.perf_counter() - wall
    load_after = os.getloadavg()

    out = [
        *header_lines("Per-sample (batched) solves on a DEQ-style batch (issue 15)", started, argv, wall, args.note,
                      load_before, load_after, update.loads),
        f"- protocol: {args.repeats} interleaved rounds in one process (backward: per-sample and one-vector "
        "alternating first; forward + backward: the libraries in a rotating order); calls shorter than "
        f"{SAMPLE_SECONDS * 1e3:g} ms repeated to fill a sample, garbage collection off while timing; "
        "figures are median [min–max] over the rounds of the per-round ratio",
        "",
        "## Model",
        "",
        f"`h_i = tanh(s_i W h_i + U x_i)`, n = {N}, batch {BATCH}, float64 (torch CPU), W orthogonal, U x_i "
        "of entries about 1; J products from `rbpsolve.adapters.torch.jacobian_operator` on the batched f "
        "(one autograd VJP for the whole batch; JVPs by double backward). Contraction = spectral norm of "
        "each sample's Jacobian at its fixed point, `||J_i||_2 = s_i max_j (1 - h_ij*^2)` (exact, W W^T = I), "
        f"calibrated to {BATCH} values evenly spread over [{C_MIN}, {C_MAX}]: measured "
        f"{contractions.min():.4f}–{contractions.max():.4f}."
        + ("" if radii is None else
           f" Spectral radii ρ(J_i) (dense eigenvalues): {radii.min():.3f}–{radii.max():.3f}, "
           f"median {np.median(radii):.3f}; ρ/‖J‖ {np.min(radii / contractions):.2f}–"
           f"{np.max(radii / contractions):.2f}."),
        "",
        f"## Backward: every sample to ‖r_i‖ / ‖g_i‖ ≤ {RTOL:g} (caps {CAP} steps)",
        "",
        "Per-sample: `solve_adjoint(J, g, solver(rtol=1e-6), batch_axis=0)`. One-vector: the batch as one "
        "vector; its test is on the whole batch's residual, so its rtol is the loosest of 1e-6 · 2^(-k/2), "
        "k = 0, 1, ..., with which every sample's own residual is ≤ 1e-6 (searched once before timing; "
        "1e-6/√64 always suffices as ‖g_i‖ = 1). Batched products: `num_vjp + num_jvp`, each one call on "
        f"the whole batch. Worst residual: max over samples, recomputed with one more VJP. GMRES is GMRES({RESTART}).",
        "",
        *backward_table(backward),
        "",
        "Goal: per-sample GMRES needs fewer batched products than one-vector GMRES: "
        + ("met" if backward.get("GMRES") and backward["GMRES"]["counts"]["per_sample"]["products"]
           < backward["GMRES"]["counts"]["one_vector"]["products"] else "**missed**")
        + " (see the README for why).",
        "",
        "## Forward + backward against torchdeq 0.1.0",
        "",
    ]
    if isinstance(peers, str) or peers is None:
        out.append(f"Not measured: {peers or '--no-peers'}.")
    else:
        out += [
            "Same model, parameters W and U, loss `sum_i <c_i, h_i>`; both from h0 = 0, caps "
            f"{CAP} (forward) and {CAP} (backward), Anderson with the same memory; both stop when every sample "
            "meets 1e-6: forward ‖f(h_i) − h_i‖ ≤ 1e-6 ‖f(h_i)‖ (rbpsolve's forward test; torchdeq's `'rel'` "
            "mode), backward ‖r_i‖ ≤ 1e-6 (= relative, ‖g_i‖ = 1; torchdeq's `'abs'`). rbpsolve is wired by "
            "hand (forward solve, `jacobian_operator`, `solve_adjoint`, one VJP to the parameters) and timed "
            "as one call; torchdeq is `get_deq(..., ift=True)` in train mode and `torch.autograd.grad` of the "
            "loss. Gradient error: ‖∇ − ∇_ref‖ / ‖∇_ref‖ over (W, U), ∇_ref from the Picard fixed point "
            "(1e-13) and GMRES rtol 1e-12. f evaluations and backward VJPs are batched calls (torchdeq's "
            "counted by wrapping its solvers); the final f(h*) with grad, the parameter VJP and torchdeq's "
            "extra f for the IFT hook are not in the counts.",
            "",
            *peer_table(peers),
            "",
            "Goal: forward + backward no slower than torchdeq (ratio ≤ 1).",
        ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
