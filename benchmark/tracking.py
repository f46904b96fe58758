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
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

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


def mark_abandoned(mlflow: MlflowClient, exp_id: str, run_key: str) -> int:
    """Runs left RUNNING by a killed process are marked KILLED; returns how many."""
    query = f"tags.run_key = '{run_key}' and attributes.status = 'RUNNING'"
    stale = [r for r in search_all(mlflow, exp_id, query) if r.data.tags.get("kind", "run") == "run"]
    for run in stale:
        mlflow.set_tag(run.info.run_id, "failure_reason", "process ended before the run finished")
        mlflow.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
    return len(stale)


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
        "device": device_name(device),
        "torch_version": torch.__version__,
        "lightning_version": lightning.__version__,
        "git_commit": git_commit(),
        "host": platform.node(),
    }
