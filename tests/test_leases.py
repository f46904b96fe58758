"""Run leases: a RUNNING run is reaped only when its owner is gone, so a second copy of a suite leaves live runs alone."""

from __future__ import annotations

import os
import platform
import subprocess
import time

from mlflow.tracking import MlflowClient
from rich.console import Console

from benchmark import record, tracking
from benchmark.config import load_suite_config
from benchmark.record import RunKind, Tag
from benchmark.suite import run_suite
from tests.test_exit_codes import write


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def lease(host: str, pid: int, age_s: float = 0) -> dict[str, str]:
    return {Tag.OWNER: f"{host}:{pid}", Tag.HEARTBEAT: f"{time.time() - age_s:.0f}"}


def test_owner_is_gone_when_its_process_ended_or_its_lease_ran_out():
    here = platform.node()
    assert not tracking.owner_gone(lease(here, os.getpid()))
    assert tracking.owner_gone(lease(here, dead_pid()))
    assert not tracking.owner_gone(lease("elsewhere", 1))  # another machine: the heartbeat decides
    assert tracking.owner_gone(lease("elsewhere", 1, age_s=record.LEASE_S + 5))
    assert tracking.owner_gone(lease(here, os.getpid(), age_s=record.LEASE_S + 5))  # a reused pid
    assert tracking.owner_gone({})  # a run from before leases


def test_second_copy_of_a_suite_leaves_a_live_run_and_reaps_a_dead_one(tmp_path):
    suite = load_suite_config(write(tmp_path, "suite"))
    mlflow = MlflowClient(suite.tracking.tracking_uri)
    exp = tracking.experiment_id(tracking.client(suite.tracking.tracking_uri), suite.tracking.experiment)
    key = suite.runs()[0].run_key()
    live = record.create_run(mlflow, exp, RunKind.RUN, "live", {Tag.RUN_KEY: key, **lease("elsewhere", os.getpid())})
    (result,) = run_suite(suite, Console(quiet=True)).executed
    assert result.status == record.RUNNING and "elsewhere" in result.failure
    assert mlflow.get_run(live).info.status == record.RUNNING
    assert len(mlflow.search_runs([exp], f"tags.{Tag.RUN_KEY} = '{key}'")) == 1  # no duplicate started

    mlflow.set_tag(live, Tag.OWNER, f"{platform.node()}:{dead_pid()}")  # its process ends
    (result,) = run_suite(suite, Console(quiet=True)).executed
    assert result.status == record.FINISHED
    assert mlflow.get_run(live).info.status == record.KILLED
    ran = mlflow.get_run(result.run_id).data.tags
    assert ran[Tag.OWNER] == tracking.owner() and float(ran[Tag.HEARTBEAT]) <= time.time()
