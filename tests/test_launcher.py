"""The process launcher behind the suite's ``jobs`` and the sweep's ``--workers``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.launcher import run_in_processes

REPO_ROOT = Path(__file__).resolve().parents[1]  # not from conftest: spawned workers import this module, not torch


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


def sleep_and_note(job: tuple[str, int]) -> None:
    """Writes ``<folder>/<item>.pid`` and sleeps; on the way out, how it was stopped into ``<item>.end``."""
    folder, item = job
    Path(folder, f"{item}.pid").write_text(str(os.getpid()))
    try:
        time.sleep(120)
    except BaseException as e:
        Path(folder, f"{item}.end").write_text(type(e).__name__)
        raise


PARENT = "from benchmark.launcher import run_in_processes; from tests.test_launcher import sleep_and_note; " \
         "list(run_in_processes(sleep_and_note, [({folder!r}, i) for i in range(6)], jobs=2))"  # fmt: skip


def start_parent(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(folder=str(tmp_path))], env=env, start_new_session=True)
    deadline = time.time() + 120
    while len(pids := sorted(tmp_path.glob("*.pid"))) < 2:
        assert parent.poll() is None and time.time() < deadline, "the workers did not start"
        time.sleep(0.1)
    return parent, [int(p.read_text()) for p in pids]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_for(condition, limit_s: float = 60) -> bool:
    """Polls ``condition`` until true; the limit only keeps a broken build from hanging the tests."""
    deadline = time.time() + limit_s
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_the_workers_through_the_parent_and_starts_nothing_new(tmp_path):
    parent, _ = start_parent(tmp_path)
    os.killpg(parent.pid, signal.SIGINT)  # what a terminal's Ctrl+C does: the whole group gets it
    parent.wait(timeout=60)
    assert sorted(p.name for p in tmp_path.glob("*.pid")) == ["0.pid", "1.pid"]  # nothing handed out after it
    ends = {p.name: p.read_text() for p in tmp_path.glob("*.end")}
    assert ends == {"0.end": "SystemExit", "1.end": "SystemExit"}  # stopped by the parent's SIGTERM, not by Ctrl+C


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent_even_on_kill_9(tmp_path):
    parent, workers = start_parent(tmp_path)
    parent.kill()
    parent.wait()
    assert wait_for(lambda: not any(alive(pid) for pid in workers)), "orphaned workers kept running"
    assert {p.read_text() for p in tmp_path.glob("*.end")} == {"SystemExit"}  # each unwound (its run marked KILLED)
