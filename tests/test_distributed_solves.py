"""Every solver on a state split over 2 processes (torch.distributed, gloo) gives each rank
its block of the one-process answer, the same status, and stops at the same step.

One spawn of 2 ranks runs every check (tests/distributed_solves.py); each rank solves the
same seeded systems whole (the reference, in its own process) and split. Float64.

- On the well-conditioned operator (``||J|| = 0.5``) every solver's block equals the
  one-process answer to 1e-12 relative, with the same status and step count.
- On the slow, divergent and nearly singular ones, the status is the same; the answer
  differs from the one-process answer by no more than the solve's own rounding noise,
  measured as the difference between two one-process solves whose sums run in opposite
  orders (the state's entries reversed). CGNE and LSQR may then stop a step or two apart
  (their residual recurrences amplify rounding; the reversed one-process solve does too).
- The two ranks agree exactly: status, steps, callbacks, all-reduce counts, estimates.
- All-reduces a step: 1 for FixedPoint, Neumann, Picard, Anderson and GMRES (3 on a step
  that reorthogonalises), 2 for CGNE and LSQR; a callback adds one (its stop flag, so that a
  callback that asks one rank to stop stops them all).
- A NaN in one rank's block, or a callback that asks one rank to stop, is every rank's status.
"""

import numpy as np
import pytest

pytest.importorskip("torch")

import distributed_solves  # noqa: E402
from distributed_harness import run_ranks  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def ranks():
    return run_ranks(distributed_solves.solver_records, timeout=400)


@pytest.fixture(scope="module")
def per_step():
    return run_ranks(distributed_solves.all_reduces_per_step, timeout=200)


def _by_name(records):
    return {r["name"]: r for r in records}


def test_every_rank_takes_the_same_decisions(ranks):
    first, second = (_by_name(r) for r in ranks)
    assert first.keys() == second.keys()
    for name, a in first.items():
        b = second[name]
        for key in ("status", "steps", "all_reduces", "callback_steps", "sample_status", "sample_steps", "value",
                    "products", "estimate"):
            if key in a:
                assert a[key] == b[key], (name, key, a[key], b[key])


def _solves(ranks):
    return [r for rank in ranks for r in rank if "x_error" in r]


def test_well_conditioned_answers_equal_one_process_to_1e_12(ranks):
    checked = [r for r in _solves(ranks) if r["name"].startswith(("contraction/", "forward/"))]
    assert len(checked) == 2 * (len(distributed_solves.SOLVERS) + 4)
    for r in checked:
        assert r["status"] == r["ref_status"], r["name"]
        assert r["steps"] == r["ref_steps"], r["name"]
        assert r["products"] == r["ref_products"], r["name"]
        assert r["x_error"] <= 1e-12, (r["name"], r["x_error"])
        assert r["history_error"] <= 1e-12, (r["name"], r["history_error"])
        if np.isfinite(r["ref_estimate"]):
            assert abs(r["estimate"] - r["ref_estimate"]) <= 1e-9 * r["ref_estimate"] + 1e-15, r["name"]


def test_hard_systems_match_one_process_to_its_rounding_noise(ranks):
    hard = [r for r in _solves(ranks) if "order_noise" in r and not r["name"].startswith("contraction/")]
    assert {r["status"] for r in hard} >= {"DIVERGED", "CONVERGED", "MAX_STEPS", "BUDGET_SPENT"}
    for r in hard:
        assert r["status"] == r["ref_status"], r["name"]
        drift = abs(r["steps"] - r["ref_steps"])
        if r["name"].endswith(("/CGNE", "/LSQR")):
            assert drift <= 2 + abs(r["flipped_steps"] - r["ref_steps"]), (r["name"], r["steps"], r["ref_steps"])
        else:
            assert drift == 0, (r["name"], r["steps"], r["ref_steps"])
        assert r["x_error"] <= max(1e-12, 20 * r["order_noise"]), (r["name"], r["x_error"], r["order_noise"])


def test_batched_samples_match_their_one_process_solves(ranks):
    batched = [r for r in _solves(ranks) if r["name"].startswith("batched/")]
    assert len(batched) == 2 * 8
    statuses = set()
    for r in batched:
        assert r["sample_status"] == r["ref_sample_status"], r["name"]
        statuses |= set(r["sample_status"])
        tolerance = 2 if r["name"].endswith(("/CGNE", "/LSQR")) else 0
        assert all(abs(a - b) <= tolerance for a, b in zip(r["sample_steps"], r["ref_sample_steps"])), r["name"]
        assert r["x_error"] <= 1e-11, (r["name"], r["x_error"])
    assert {"CONVERGED", "DIVERGED"} <= statuses


def test_one_rank_s_nan_or_stop_is_every_rank_s_status(ranks):
    for rank in ranks:
        found = _by_name(rank)
        for name in ("Neumann", "GMRES"):
            assert found[f"nan_on_rank_1/{name}"]["status"] == "NONFINITE", name
            stopped = found[f"stop_on_rank_0/{name}"]
            assert (stopped["status"], stopped["steps"]) == ("STOPPED", 4), (name, stopped)


def test_callbacks_see_the_same_steps(ranks):
    for rank in ranks:
        for r in rank:
            if "callback_steps" in r:
                assert r["callback_steps"] == list(range(1, len(r["callback_steps"]) + 1)), r["name"]


def test_estimates_analyze_and_dot_test_are_the_one_process_ones(ranks):
    for rank in ranks:
        found = _by_name(rank)
        for name in ("estimate_norm", "estimate_spectral_radius", "estimate_singular_values"):
            r = found[name]
            assert r["steps"] == r["ref_steps"], name
            assert abs(r["value"] - r["ref_value"]) <= 1e-12 * abs(r["ref_value"]), name
        assert found["analyze"]["value"] == found["analyze"]["ref_value"]
        assert found["dottest"]["value"] is True and found["dottest"]["ref_value"] is True


def test_all_reduces_a_step(per_step):
    first, second = per_step
    assert first == second
    expected = {"FixedPoint": 1, "Neumann": 1, "Picard": 1, "Anderson": 1, "CGNE": 2, "LSQR": 2}
    for name, (marks, total, steps, status) in first.items():
        assert steps == 20 and status == "MAX_STEPS", name
        # The counting callback's own answer is reduced too (any rank may ask to stop): one more a step.
        counts = [c - 1 for c in marks]
        if name == "GMRES":
            # One (the first Gram-Schmidt pass, with ||w||^2), three where DGKS reorthogonalises.
            assert set(counts) <= {1, 3} and counts.count(1) >= len(counts) // 2, counts
        else:
            assert counts == [expected[name]] * (steps - 1), (name, counts)
        assert total <= sum(marks) + 12, (name, total)  # the solve's fixed cost: checks, b's norm, verification
