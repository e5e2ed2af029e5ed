"""Data parallelism needs no communication inside the adjoint solve (issue 20, "scale").

The deep-equilibrium classifier of ``rbpsolve.adapters.tasks.ddp_deq`` is trained on 2 gloo
ranks in DistributedDataParallel, each with half of every batch, and on one process with
the whole batch and no process group at all (so a collective inside the forward or
adjoint solve would raise there). In float64:

- DDP's averaged gradient of the first step equals the one-process gradient of the full
  batch to 1e-10 relative, and so do the parameters after 3 SGD steps, on both ranks;
- every sample's forward and adjoint solve is the one it has alone: ok, and in as many
  steps as on one process;
- DDP's communication hook sees one gradient bucket a step holding every parameter once,
  and nothing else;
- under ``on_failure="mask"`` a sample whose adjoint diverges is dropped on its own rank,
  and the gradient is the one-process masked gradient.

One spawn of 2 ranks (a module fixture) runs every check's training.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from distributed_harness import run_ranks  # noqa: E402

from rbpsolve.adapters.tasks.ddp_deq import Config, DEQClassifier, main, train  # noqa: E402
from rbpsolve.adapters.torch import ConvergenceWarning  # noqa: E402

STEPS = 3
RTOL = 1e-10
CONVERGING = Config()  # ||W||_2 = 0.5: every sample contractive, GMRES(rtol=1e-10) backward
# rho(W) > 1 (checked below) and sample 5's input scaled to zero, so its fixed point is
# h* = 0 with J_5 = W and a Neumann backward diverges on it; the other samples' inputs
# (U at twice the gain) saturate tanh and keep their J_i contractive. Sample 5 lies in rank
# 1's half of the batch. One step: after it b != 0 and h* = 0 is an unstable fixed point,
# where the forward solve would amplify rounding.
DIVERGENT = 5
MASKED = Config(w_norm=2.5, u_gain=2.0, backward="neumann", on_failure="mask", scale_sample=(DIVERGENT, 0.0))


def _both_runs(rank, world_size):
    """What each spawned rank runs: both configurations, one after the other."""
    return train(rank, world_size, CONVERGING, steps=STEPS), train(rank, world_size, MASKED, steps=1)


@pytest.fixture(scope="module")
def ddp():
    return run_ranks(_both_runs, world_size=2, timeout=120)


@pytest.fixture(scope="module")
def alone():
    converging = train(0, 1, CONVERGING, steps=STEPS)
    with pytest.warns(ConvergenceWarning, match=f"samples {DIVERGENT}"):
        masked = train(0, 1, MASKED, steps=1)
    return converging, masked


def _relative_gaps(got, want):
    """max |got - want| / max |want|, per parameter."""
    assert got.keys() == want.keys()
    return {name: float(np.max(np.abs(got[name] - want[name])) / np.max(np.abs(want[name]))) for name in want}


def _assert_close(got, want, what):
    gaps = _relative_gaps(got, want)
    print(f"{what}: relative gaps " + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items()))
    assert max(gaps.values()) <= RTOL, f"{what}: {gaps}"


def test_ddp_gradient_is_the_full_batch_gradient(ddp, alone):
    reference = alone[0]
    assert not reference.distributed and all(r[0].distributed for r in ddp)
    for rank, (record, _) in enumerate(ddp):
        assert record.rank == rank and record.steps[0].samples == tuple(range(4 * rank, 4 * rank + 4))
        _assert_close(record.first_grads, reference.first_grads, f"rank {rank} first-step gradient vs one process")
    # A DDP that summed instead of averaging would be off by a factor of 2; a rank that
    # trained on the whole batch is caught by the sample checks here and below.


def test_parameters_after_sgd_steps_agree(ddp, alone):
    for rank, (record, _) in enumerate(ddp):
        _assert_close(record.final_params, alone[0].final_params, f"rank {rank} parameters after {STEPS} steps")
    initial = {name: p.detach().numpy() for name, p in DEQClassifier(CONVERGING).named_parameters()}
    moved = max(float(np.max(np.abs(alone[0].final_params[k] - initial[k]))) for k in initial)
    assert moved > 1e-3  # the steps changed the parameters, so agreeing after them says something


def test_every_sample_solves_as_it_would_alone(ddp, alone):
    for step in range(STEPS):
        ref = alone[0].steps[step]
        forward = np.concatenate([r[0].steps[step].forward_steps for r in ddp])
        backward = np.concatenate([r[0].steps[step].backward_steps for r in ddp])
        status = sum((r[0].steps[step].backward_status for r in ddp), ())
        assert status == ref.backward_status == ("CONVERGED",) * CONVERGING.batch_size
        np.testing.assert_array_equal(forward, ref.forward_steps)
        np.testing.assert_array_equal(backward, ref.backward_steps)
        assert (backward > 0).all()


def test_ddp_allreduce_is_the_only_gradient_traffic(ddp, alone):
    n_bytes = 8 * sum(v.size for v in alone[0].final_params.values())
    for rank, (record, _) in enumerate(ddp):
        counts = [(s.comm_buckets, s.comm_bytes) for s in record.steps]
        print(f"rank {rank}: DDP hook per step (buckets, bytes) {counts}")
        assert counts == [(1, n_bytes)] * STEPS
    assert all((s.comm_buckets, s.comm_bytes) == (0, 0) for s in alone[0].steps)


def test_a_masked_sample_is_dropped_on_its_own_rank(ddp, alone):
    W = DEQClassifier(MASKED).W.detach().numpy()
    assert np.max(np.abs(np.linalg.eigvals(W))) > 1.1  # else sample 5 would not diverge
    reference = alone[1].steps[0]
    assert reference.masked == (DIVERGENT,)
    assert reference.backward_status[DIVERGENT] == "DIVERGED"
    assert reference.backward_status.count("CONVERGED") == MASKED.batch_size - 1
    (_, mask0), (_, mask1) = ddp
    assert mask0.steps[0].masked == () and mask1.steps[0].masked == (DIVERGENT,)
    assert mask0.steps[0].backward_status + mask1.steps[0].backward_status == reference.backward_status
    for rank, (_, record) in enumerate(ddp):
        _assert_close(record.first_grads, alone[1].first_grads, f"rank {rank} masked first-step gradient")
    # Without the mask the diverged z_5 would reach W's gradient: the masked one is finite.
    assert all(np.isfinite(g).all() for g in alone[1].first_grads.values())


def test_main_runs_as_one_process(capsys, monkeypatch):
    # Without WORLD_SIZE, main makes a group of one in memory: DDP and its hook still run.
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["--steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("step   0  rank-0 loss") and "backward: 8 converged" in lines[0]
    assert "DDP allreduce: 1 bucket(s), 2136 bytes" in lines[1]
    assert lines[-1].startswith("1 rank(s), 2 steps: DDP's hook allreduced 2 bucket(s), 4272 bytes")
