"""The process launcher behind the suite's ``jobs`` and the sweep's ``--workers``."""

from __future__ import annotations

import os

from benchmark.launcher import run_in_processes


def square_or_fail(x: int) -> tuple[int, int]:
    """Module-level, so spawned workers can import it: 3 raises, 5 kills its own worker."""
    if x == 3:
        raise ValueError("three is refused")
    if x == 5:
        os._exit(9)
    return x * x, os.getpid()


def test_every_item_comes_back_once_and_a_dead_worker_costs_only_its_item():
    outcomes = list(run_in_processes(square_or_fail, list(range(8)), jobs=2))
    assert sorted(o.index for o in outcomes) == list(range(8))
    by_index = {o.index: o for o in outcomes}
    assert {i: o.result[0] for i, o in by_index.items() if o.ok} == {i: i * i for i in (0, 1, 2, 4, 6, 7)}
    assert not by_index[3].ok and "ValueError: three is refused" in by_index[3].error
    assert not by_index[5].ok and by_index[5].error == "worker process died (exit code 9)"
    pids = {o.result[1] for o in outcomes if o.ok}
    assert os.getpid() not in pids and 2 <= len(pids) <= 3  # two workers, one replaced after the kill


def test_no_items_start_no_workers():
    assert list(run_in_processes(square_or_fail, [], jobs=4)) == []
