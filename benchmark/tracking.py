"""MLflow plumbing: experiments, run lookup for resuming, environment tags.

Any tracking URI works (the default is a local SQLite file; a server URL works the same).
The runner, not Lightning, decides a run's terminal status: a run is FINISHED only once its
test metrics are written, so a resumed suite never trusts a half-done run.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
from pathlib import Path

import lightning
import torch
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient

from benchmark import record

REPO_ROOT = Path(__file__).resolve().parents[1]

for _noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger, minus marking the run finished when ``fit`` returns."""

    def finalize(self, status: str = "success") -> None:
        pass


def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(mlflow: MlflowClient, name: str, create: bool = True) -> str | None:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(name) if create else None


def search_all(mlflow: MlflowClient, exp_id: str, filter_string: str = ""):
    """Every run matching the filter, across result pages."""
    runs, token = [], None
    while True:
        page = mlflow.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def reap(mlflow: MlflowClient, run_ids, reason: str, tags: dict[str, str] | None = None) -> int:
    """The reaper: each of these runs still RUNNING (its process is gone) ends KILLED with ``reason``.

    Returns how many it ended. ``tags`` are set on each first (e.g. a trial's state).
    """
    reaped = 0
    for run_id in run_ids:
        if mlflow.get_run(run_id).info.status != record.RUNNING:
            continue
        for key, value in (tags or {}).items():
            mlflow.set_tag(run_id, key, value)
        record.end_run(mlflow, run_id, record.KILLED, reason)
        reaped += 1
    return reaped


def mark_abandoned(mlflow: MlflowClient, exp_id: str, run_key: str) -> int:
    """Ordinary runs of ``run_key`` left RUNNING by a killed process are marked KILLED; returns how many."""
    query = f"tags.{record.Tag.RUN_KEY} = '{run_key}' and attributes.status = '{record.RUNNING}'"
    stale = [r.info.run_id for r in search_all(mlflow, exp_id, query) if record.kind_of(r.data.tags) == record.RunKind.RUN]
    return reap(mlflow, stale, "process ended before the run finished")


@functools.cache
def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=REPO_ROOT, capture_output=True, text=True)
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment_tags(device: torch.device) -> dict[str, str]:
    return {
        record.Tag.DEVICE: device_name(device),
        record.Tag.TORCH_VERSION: torch.__version__,
        record.Tag.LIGHTNING_VERSION: lightning.__version__,
        record.Tag.GIT_COMMIT: git_commit(),
        record.Tag.HOST: platform.node(),
    }
