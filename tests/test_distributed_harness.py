"""The spawning harness of the distributed tests: answers come back in rank order, a raising
rank fails the test with its traceback, a stuck rank is killed at the timeout."""

import time

import pytest

pytest.importorskip("torch")

from distributed_harness import RankFailure, run_ranks  # noqa: E402


def _sum_of_ranks(rank, world_size):
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return rank, float(t)


def _raises_on_rank_one(rank, world_size):
    if rank == 1:
        raise ValueError("rank one refuses")
    return rank


def _hangs_on_rank_one(rank, world_size):
    if rank == 1:
        time.sleep(60)
    return rank


def test_answers_in_rank_order():
    assert run_ranks(_sum_of_ranks, timeout=120) == [(0, 3.0), (1, 3.0)]


def test_a_raising_rank_fails_with_its_traceback():
    with pytest.raises(RankFailure, match="rank one refuses"):
        run_ranks(_raises_on_rank_one, timeout=120)


def test_a_stuck_rank_is_killed_at_the_timeout():
    start = time.monotonic()
    with pytest.raises(RankFailure, match="did not finish"):
        run_ranks(_hangs_on_rank_one, timeout=8)
    assert time.monotonic() - start < 30
