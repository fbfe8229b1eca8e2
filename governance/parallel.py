"""Pure work spread over the machine's cores: a check's policies are independent given the
counts, and each costs up to a second at 2,000 checkpoints x 300 environments, so evaluating them
side by side brings a decision closer to the hardware's floor.

Workers are forked from the caller, so they start with its counts and policies already in memory
(nothing large is sent to them) and send back only their results. The answers are the same as
those computed one after the other, in the same order: a job that fails in a worker, or a machine
or process where forking is unsafe (one core, a process with other threads running), computes in
the caller, which then raises any error itself. GOV_WORKERS=1 turns it off."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

# The job and its inputs, set by the caller just before forking, so that workers inherit them.
_JOB: Callable[[int], Any] | None = None
# How many jobs the last run_each had computed in workers (what a reader of timings, or a test
# that both ways give the same answers, needs to know).
LAST_IN_WORKERS = 0


def _run(index: int) -> Any:
    assert _JOB is not None
    return _JOB(index)


MOST = 8  # workers at most, unless GOV_WORKERS asks for more


def workers() -> int:
    """How many processes to use: GOV_WORKERS if set, else the cores this process may run on."""
    wanted = os.environ.get("GOV_WORKERS", "")
    if wanted.strip().isdigit():
        return max(1, int(wanted))
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, MOST)


def run_each(
    job: Callable[[int], Any], indexes: Sequence[int], *, worth_it: bool = True
) -> dict[int, Any]:
    """job(i) for each i, in forked workers when that helps and is safe, else here.
    `worth_it`: whether the work is large enough to repay starting workers (about 0.1 s); an
    explicit GOV_WORKERS overrides it."""
    global _JOB, LAST_IN_WORKERS
    LAST_IN_WORKERS = 0
    if not worth_it and not os.environ.get("GOV_WORKERS", "").strip():
        return {i: job(i) for i in indexes}
    count = min(workers(), len(indexes))
    if count < 2 or threading.active_count() > 1 or not hasattr(os, "fork"):
        return {i: job(i) for i in indexes}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _JOB = job
    done: dict[int, Any] = {}
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
            futures = {i: pool.submit(_run, i) for i in indexes}
            for i, future in futures.items():
                try:
                    done[i] = future.result()
                except Exception:  # computed again here, where an error is raised as itself
                    continue
    except Exception:  # the pool could not start: every job here
        pass
    finally:
        _JOB = None
    LAST_IN_WORKERS = len(done)
    return {i: done[i] if i in done else job(i) for i in indexes}
