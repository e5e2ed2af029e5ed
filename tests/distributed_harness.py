"""Run a function on several CPU processes joined by torch.distributed (gloo), from pytest.

``run_ranks(target, world_size=2, timeout=...)`` spawns ``world_size`` fresh processes (the
"spawn" start method: no forked torch state), each of which joins a gloo process group on
a free local port, calls ``target(rank, world_size, *args)`` and sends back what it
returned (or its traceback). The parent waits at most ``timeout`` seconds in all and kills
every process still running then, so that a rank stuck in a collective (its peer died)
fails the test instead of hanging CI.

``target`` must be importable by name in a fresh interpreter: a module-level function of a
module under ``tests/`` (on the path through pytest's ``pythonpath``) or of the package.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queue_module
import socket
import time
import traceback

__all__ = ["free_port", "run_ranks", "RankFailure"]


class RankFailure(AssertionError):
    """A rank raised, died, or did not finish within the timeout."""


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(target, rank, world_size, port, args, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    try:
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        try:
            value = target(rank, world_size, *args)
        finally:
            dist.destroy_process_group()
        # Plain pickle bytes: a tensor put on the queue as itself would travel as a shared-memory
        # handle that dies with this process (torch's multiprocessing reductions).
        results.put((rank, True, pickle.dumps(value)))
    except BaseException:  # noqa: BLE001 -- every failure goes back to the parent, with its traceback
        results.put((rank, False, traceback.format_exc()))


def run_ranks(target, *args, world_size: int = 2, timeout: float = 180.0) -> list:
    """``[target(rank, world_size, *args) for rank in range(world_size)]``, run in parallel
    on ``world_size`` processes in one gloo group.

    Raises
    ------
    RankFailure
        If a rank raised (its traceback is in the message), exited without an answer, or
        the whole run took longer than ``timeout`` seconds (all ranks are then killed).
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    port = free_port()
    processes = [
        context.Process(target=_entry, args=(target, rank, world_size, port, args, results), daemon=True)
        for rank in range(world_size)
    ]
    for p in processes:
        p.start()
    answers, deadline = {}, time.monotonic() + timeout
    try:
        while len(answers) < world_size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RankFailure(
                    f"{target.__name__} did not finish on {world_size} ranks within {timeout:.0f} s "
                    f"(answers from ranks {sorted(answers)})"
                )
            try:
                rank, ok, value = results.get(timeout=min(left, 1.0))
            except queue_module.Empty:
                dead = [r for r, p in enumerate(processes) if p.exitcode not in (None, 0) and r not in answers]
                if dead:
                    raise RankFailure(f"rank(s) {dead} of {target.__name__} died without an answer "
                                      f"(exit codes {[processes[r].exitcode for r in dead]})")
                continue
            if not ok:
                raise RankFailure(f"rank {rank} of {target.__name__} raised:\n{value}")
            answers[rank] = pickle.loads(value)
    finally:
        # Finished ranks exit at once; after a failure the others may be waiting in a
        # collective for a peer that is gone: they are killed without waiting.
        failed = len(answers) < world_size
        for p in processes:
            p.join(timeout=0.5 if failed else 10)
            if p.is_alive():
                p.kill()
                p.join()
    return [answers[r] for r in range(world_size)]
