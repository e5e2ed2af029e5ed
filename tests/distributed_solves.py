"""What each rank runs in tests/test_distributed_solves.py: every solver on a state split
over the ranks, against the same solve of the whole state in one process.

Each rank builds the same seeded operators, solves them whole (the reference, in this
process, without communication) and split (its block of the state, ``sharding=``), and
returns what the parent compares across ranks: statuses, step counts, all-reduce counts,
and the largest relative difference of its block from the reference's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

import rbpsolve
from rbpsolve.adapters.torch.distributed import sharding as make_sharding

N = 37  # odd: the blocks differ in size (19 and 18 on two ranks)
BATCH = 3


def blocks(n, world):
    """``[lo, hi)`` of every rank: rank order, sizes differing by at most one."""
    edges = np.linspace(0, n, world + 1).round().astype(int)
    return [(int(edges[r]), int(edges[r + 1])) for r in range(world)]


def gather(u_local, lo, hi, n, axis=-1):
    """The whole vector (or batch of vectors, the split on the last axis) on every rank."""
    shape = u_local.shape[:-1] + (n,)
    whole = torch.zeros(shape, dtype=u_local.dtype)
    whole[..., lo:hi] = u_local
    dist.all_reduce(whole)  # every other rank's block is zero here: the sum is the concatenation
    return whole


def operators(seed):
    """Seeded ``(name, W)`` for ``J = W``: non-symmetric, a contraction, a slow one, a nearly singular
    ``I - W``, and a divergent one (spectral radius 1.3)."""
    rng = np.random.default_rng(seed)
    out = []
    W = rng.standard_normal((N, N))
    out.append(("contraction", W * 0.5 / np.linalg.norm(W, 2)))  # ||J|| = 0.5: well conditioned
    for name, scale in (("slow", 0.95), ("divergent", 1.3)):  # spectral radius 0.95 and 1.3
        W = rng.standard_normal((N, N))
        W *= scale / max(abs(np.linalg.eigvals(W)))
        out.append((name, W))
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    P, _ = np.linalg.qr(rng.standard_normal((N, N)))
    # I - W = Q diag(s) P^T with singular values from 1e-3 to 1: nearly singular.
    out.append(("nearly_singular", np.eye(N) - Q @ np.diag(np.geomspace(1e-3, 1.0, N)) @ P.T))
    return out


def whole_and_split(W, lo, hi, sharding):
    """``J`` on the whole state (this process) and on this rank's block (``sharding``)."""
    Wt = torch.tensor(W)
    whole = rbpsolve.JacobianOperator(lambda u: Wt.T @ u, lambda v: Wt @ v, like=torch.zeros(N, dtype=torch.float64))
    split = rbpsolve.JacobianOperator(
        lambda u: (Wt.T @ gather(u, lo, hi, N))[lo:hi],
        lambda v: (Wt @ gather(v, lo, hi, N))[lo:hi],
        like=torch.zeros(hi - lo, dtype=torch.float64),
        sharding=sharding,
    )
    return whole, split


def _reversed(W):
    """``J`` of the system with its entries in reverse order (``P W P``, ``P`` the flip)."""
    Wt = torch.tensor(W[::-1, ::-1].copy())
    return rbpsolve.JacobianOperator(lambda u: Wt.T @ u, lambda v: Wt @ v, like=torch.zeros(N, dtype=torch.float64))


SOLVERS = {
    "FixedPoint": rbpsolve.FixedPoint(rtol=1e-11, max_steps=150),
    "Neumann": rbpsolve.Neumann(rtol=1e-11, max_steps=150),
    "Neumann_budget": rbpsolve.Neumann(max_steps=25),
    "FixedPoint_budget": rbpsolve.FixedPoint(max_steps=25),
    "RandomizedNeumann": rbpsolve.RandomizedNeumann(max_steps=60, seed=3),
    "CGNE": rbpsolve.CGNE(rtol=1e-11, max_steps=150),
    "LSQR": rbpsolve.LSQR(rtol=1e-11, max_steps=150),
    "GMRES": rbpsolve.GMRES(rtol=1e-11, restart=8, max_steps=150),
    "GMRES_budget": rbpsolve.GMRES(restart=6, max_steps=14, rtol=0.0, atol=0.0),
    "Fallback": rbpsolve.Fallback(rbpsolve.Neumann(rtol=1e-11, max_steps=30), rbpsolve.GMRES(rtol=1e-11)),
}


def _relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 0.0 if np.array_equal(np.isfinite(a), np.isfinite(b)) else np.inf
    scale = max(np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / scale)


def _record(name, whole, split, lo, hi, reduction, calls_before):
    """What the parent compares: status, steps, the block's difference, the history's."""
    history = np.asarray(split.history, dtype=np.float64)
    ref_history = np.asarray(whole.history, dtype=np.float64)
    same_len = history.shape == ref_history.shape
    return {
        "name": name,
        "status": split.status.name,
        "ref_status": whole.status.name,
        "steps": split.num_steps,
        "ref_steps": whole.num_steps,
        "products": (split.num_vjp, split.num_jvp),
        "ref_products": (whole.num_vjp, whole.num_jvp),
        "x_error": _relative(split.x.numpy(), np.asarray(whole.x)[..., lo:hi]),
        "history_error": _relative(history, ref_history) if same_len else np.inf,
        "estimate": split.error_estimate,
        "ref_estimate": whole.error_estimate,
        "all_reduces": reduction.calls - calls_before,
        "history": history.tolist(),
        "ref_history": ref_history.tolist(),
    }


def solver_records(rank, world):
    """Every solver on every operator; the batched mode; the forward solvers; estimates."""
    torch.manual_seed(0)
    lo, hi = blocks(N, world)[rank]
    sharding = make_sharding(torch.zeros(hi - lo, dtype=torch.float64))
    reduction = sharding.reduce
    records = []
    g = torch.tensor(np.random.default_rng(7).standard_normal(N))
    for op_name, W in operators(11):
        whole_J, split_J = whole_and_split(W, lo, hi, sharding)
        for solver_name, solver in SOLVERS.items():
            before = reduction.calls
            split = rbpsolve.solve_adjoint(split_J, g[lo:hi], solver, throw=False)
            whole = rbpsolve.solve_adjoint(whole_J, g, solver, throw=False)
            record = _record(f"{op_name}/{solver_name}", whole, split, lo, hi, reduction, before)
            # The rounding noise of the method itself: the whole solve with the state's
            # entries in reverse order (the same system, its sums taken in another order).
            flipped = rbpsolve.solve_adjoint(_reversed(W), g.flip(0), solver, throw=False)
            record["order_noise"] = _relative(flipped.x.flip(0).numpy(), whole.x.numpy())
            record["flipped_steps"] = flipped.num_steps
            record["flipped_status"] = flipped.status.name
            records.append(record)
        # A callback sees the same step on every rank (the eager path of a fixed budget).
        steps = []
        rbpsolve.solve_adjoint(split_J, g[lo:hi], rbpsolve.Neumann(max_steps=10), throw=False,
                               callback=lambda info: steps.append(info.step))
        records.append({"name": f"{op_name}/callback", "callback_steps": steps})
    records += one_rank_events(rank, lo, hi, sharding)
    records += batched_records(rank, world, sharding)
    records += forward_records(lo, hi, sharding)
    records += estimate_records(lo, hi, sharding)
    return records


def one_rank_events(rank, lo, hi, sharding):
    """What happens on one rank only is every rank's status: a NaN in rank 1's block of a
    product from the 6th on, and a callback that asks rank 0 alone to stop at step 4."""
    W = operators(11)[0][1]
    _, split = whole_and_split(W, lo, hi, sharding)
    Wt = torch.tensor(W)
    g = torch.tensor(np.random.default_rng(7).standard_normal(N))[lo:hi]
    calls = []

    def poisoned(u):
        calls.append(1)
        out = (Wt.T @ gather(u, lo, hi, N))[lo:hi]
        if rank == 1 and len(calls) >= 6:
            out = out.clone()
            out[0] = float("nan")
        return out

    bad = rbpsolve.JacobianOperator(poisoned, like=torch.zeros(hi - lo, dtype=torch.float64), sharding=sharding)
    out = []
    for name, solver in (("Neumann", rbpsolve.Neumann(rtol=1e-12, max_steps=50)),
                         ("GMRES", rbpsolve.GMRES(rtol=1e-12, max_steps=50))):
        calls.clear()
        r = rbpsolve.solve_adjoint(bad, g, solver, throw=False)
        out.append({"name": f"nan_on_rank_1/{name}", "status": r.status.name, "steps": r.num_steps})
        r = rbpsolve.solve_adjoint(split, g, solver, throw=False,
                                   callback=lambda info: rank == 0 and info.step == 4)
        out.append({"name": f"stop_on_rank_0/{name}", "status": r.status.name, "steps": r.num_steps})
    return out


def batched_records(rank, world, sharding_unused):
    """Per-sample solves of ``BATCH`` independent systems, each sample's entries split."""
    lo, hi = blocks(N, world)[rank]
    local = torch.zeros(BATCH, hi - lo, dtype=torch.float64)
    sharding = make_sharding(local)
    rng = np.random.default_rng(5)
    Ws = []
    for i, scale in enumerate((0.5, 0.9, 1.4)):  # the last sample diverges under Neumann
        W = rng.standard_normal((N, N))
        Ws.append(W * scale / max(abs(np.linalg.eigvals(W))))
    Wt = torch.tensor(np.stack(Ws))

    def vjp_whole(u):
        return torch.einsum("bji,bj->bi", Wt, u)

    def jvp_whole(v):
        return torch.einsum("bij,bj->bi", Wt, v)

    whole = rbpsolve.JacobianOperator(vjp_whole, jvp_whole, like=torch.zeros(BATCH, N, dtype=torch.float64))
    split = rbpsolve.JacobianOperator(
        lambda u: vjp_whole(gather(u, lo, hi, N))[:, lo:hi],
        lambda v: jvp_whole(gather(v, lo, hi, N))[:, lo:hi],
        like=local, sharding=sharding,
    )
    g = torch.tensor(rng.standard_normal((BATCH, N)))
    out = []
    for solver_name in ("FixedPoint", "Neumann", "Neumann_budget", "CGNE", "LSQR", "GMRES", "GMRES_budget",
                        "RandomizedNeumann"):
        solver = SOLVERS[solver_name]
        before = sharding.reduce.calls
        s = rbpsolve.solve_adjoint(split, g[:, lo:hi], solver, throw=False, batch_axis=0)
        w = rbpsolve.solve_adjoint(whole, g, solver, throw=False, batch_axis=0)
        record = _record(f"batched/{solver_name}", w, s, lo, hi, sharding.reduce, before)
        record["sample_status"] = [st.name for st in s.sample_status]
        record["ref_sample_status"] = [st.name for st in w.sample_status]
        record["sample_steps"] = list(map(int, s.sample_num_steps))
        record["ref_sample_steps"] = list(map(int, w.sample_num_steps))
        out.append(record)
    return out


def forward_records(lo, hi, sharding):
    """Picard and Anderson on ``h = tanh(W h + c)`` split over the ranks."""
    rng = np.random.default_rng(9)
    W = rng.standard_normal((N, N))
    Wt = torch.tensor(W * 0.8 / np.linalg.norm(W, 2))
    c = torch.tensor(rng.standard_normal(N))
    out = []
    for name, solver in (("Picard", rbpsolve.Picard(rtol=1e-11, max_steps=300)),
                         ("Anderson", rbpsolve.Anderson(rtol=1e-11, max_steps=300)),
                         ("Picard_budget", rbpsolve.Picard(max_steps=20, rtol=0.0, atol=0.0)),
                         ("Anderson_budget", rbpsolve.Anderson(max_steps=12, rtol=0.0, atol=0.0))):
        before = sharding.reduce.calls
        whole = rbpsolve.fixed_point(lambda h: torch.tanh(Wt @ h + c), torch.zeros(N, dtype=torch.float64),
                                     solver, throw=False)
        split = rbpsolve.fixed_point(lambda h: torch.tanh(Wt @ gather(h, lo, hi, N) + c)[lo:hi],
                                     torch.zeros(hi - lo, dtype=torch.float64), solver, throw=False,
                                     sharding=sharding)
        out.append(_record(f"forward/{name}", whole, split, lo, hi, sharding.reduce, before))
    return out


def estimate_records(lo, hi, sharding):
    """Norm, spectral-radius and singular-value estimates, analyze and the dot test."""
    W = operators(11)[0][1]
    whole, split = whole_and_split(W, lo, hi, sharding)
    out = []
    for name, fn in (("estimate_norm", rbpsolve.estimate_norm),
                     ("estimate_spectral_radius", rbpsolve.estimate_spectral_radius),
                     ("estimate_singular_values", rbpsolve.estimate_singular_values)):
        a, b = fn(split), fn(whole)
        out.append({"name": name, "value": a.value, "ref_value": b.value, "steps": a.num_vjp + a.num_jvp,
                    "ref_steps": b.num_vjp + b.num_jvp})
    g = torch.tensor(np.random.default_rng(7).standard_normal(N))
    a, b = rbpsolve.analyze(split, g[lo:hi]), rbpsolve.analyze(whole, g)
    out.append({"name": "analyze", "value": (a.contraction, a.size, round(a.g_norm, 12), a.advice[0].solver),
                "ref_value": (b.contraction, b.size, round(b.g_norm, 12), b.advice[0].solver)})
    out.append({"name": "dottest", "value": rbpsolve.dottest(split), "ref_value": rbpsolve.dottest(whole)})
    return out


def all_reduces_per_step(rank, world):
    """The all-reduces of every step of each method (read by a callback after each step),
    and those of the whole solve: ``{name: (per_step_counts, total, steps)}``."""
    lo, hi = blocks(N, world)[rank]
    sharding = make_sharding(torch.zeros(hi - lo, dtype=torch.float64))
    W = operators(11)[1][1]  # spectral radius 0.95: no method finishes within 20 steps
    _, J = whole_and_split(W, lo, hi, sharding)
    g = torch.tensor(np.random.default_rng(7).standard_normal(N))[lo:hi]
    Wt = torch.tensor(W * 0.8 / np.linalg.norm(W, 2))

    def F(h):
        return torch.tanh(Wt @ gather(h, lo, hi, N) + 1.0)[lo:hi]

    steps = 20
    methods = {
        "FixedPoint": rbpsolve.FixedPoint(max_steps=steps, rtol=1e-30),
        "Neumann": rbpsolve.Neumann(max_steps=steps, rtol=1e-30),
        "CGNE": rbpsolve.CGNE(max_steps=steps, rtol=1e-30),
        "LSQR": rbpsolve.LSQR(max_steps=steps, rtol=1e-30),
        "GMRES": rbpsolve.GMRES(max_steps=steps, restart=50, rtol=1e-30),
        "Picard": rbpsolve.Picard(max_steps=steps, rtol=1e-30, atol=0.0),
        "Anderson": rbpsolve.Anderson(max_steps=steps, rtol=1e-30, atol=0.0),
    }
    out = {}
    for name, solver in methods.items():
        marks = []
        start = sharding.reduce.calls
        callback = lambda info: marks.append(sharding.reduce.calls)  # noqa: E731
        if name in ("Picard", "Anderson"):
            r = rbpsolve.fixed_point(F, torch.zeros(hi - lo, dtype=torch.float64), solver, throw=False,
                                     sharding=sharding, callback=callback)
        else:
            r = rbpsolve.solve_adjoint(J, g, solver, throw=False, callback=callback)
        per_step = np.diff(marks).tolist()  # from the end of step 1 to the end of step k
        out[name] = (per_step, sharding.reduce.calls - start, r.num_steps, r.status.name)
    return out
