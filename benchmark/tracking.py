"""MLflow plumbing: experiments, run lookup for resuming, environment and source tags.

Any tracking URI works (the default is a local SQLite file; a server URL works the same).
The runner, not Lightning, decides a run's terminal status: a run is FINISHED only once its
test metrics are written, so a resumed suite never trusts a half-done run. Per-epoch metrics are
logged with MLflow's step = the epoch (``RunLogger``), so variants with different batch counts
line up in MLflow's charts.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import platform
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

import lightning
import torch
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from benchmark import devices, record

REPO_ROOT = Path(__file__).resolve().parents[1]

for _noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger, minus marking the run finished when ``fit`` returns, with step = epoch.

    Lightning logs at the global step and adds an ``epoch`` metric; here that epoch becomes the
    step (0 = the first epoch) and is not logged again. Final metrics (no epoch) go to step 0.
    """

    def log_metrics(self, metrics, step=None) -> None:
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        super().log_metrics(metrics, int(epoch) if epoch is not None else step)

    def finalize(self, status: str = "success") -> None:
        pass


def client(tracking_uri: str) -> MlflowClient:
    _open_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


STORE_ATTEMPTS = 5


@functools.cache
def _open_store(tracking_uri: str) -> None:
    """Open the store once per process (MLflow keeps it). Processes opening a fresh database store at the same
    moment race on its tables and migrations: on SQLite they take turns (a lock on its folder), elsewhere the
    losers retry and then find the tables made."""
    path = sqlite_path(tracking_uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
        finally:
            os.close(folder)  # releases the lock
        return
    for attempt in range(STORE_ATTEMPTS):
        try:
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
            return
        except Exception:
            if attempt + 1 == STORE_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.5, 2.0))


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` URI (None for other URIs and in-memory databases)."""
    if not uri.startswith("sqlite:///") or uri in ("sqlite:///", "sqlite:///:memory:"):
        return None
    return Path(uri[len("sqlite:///"):]).resolve()


def experiment_id(mlflow: MlflowClient, name: str, create: bool = True) -> str | None:
    """The experiment's id, created if ``create``; machines creating it at the same moment all get the one made."""
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None or not create:
        return exp.experiment_id if exp else None
    try:
        return mlflow.create_experiment(name)
    except MlflowException:
        if (exp := mlflow.get_experiment_by_name(name)) is None:
            raise
        return exp.experiment_id


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


def mark_abandoned(mlflow: MlflowClient, exp_id: str, run_key: str) -> list[str]:
    """Ordinary runs of ``run_key`` left RUNNING by a process that is gone are marked KILLED; returns the owners
    (host:pid) of those still live, which the caller leaves to finish."""
    query = f"tags.{record.Tag.RUN_KEY} = '{run_key}' and attributes.status = '{record.RUNNING}'"
    running = [r for r in search_all(mlflow, exp_id, query) if record.kind_of(r.data.tags) == record.RunKind.RUN]
    reap(mlflow, [r.info.run_id for r in running if owner_gone(r.data.tags)], "process ended before the run finished")
    return [r.data.tags[record.Tag.OWNER] for r in running if not owner_gone(r.data.tags)]


def owner() -> str:
    """This process, as a run's ``owner`` tag names it."""
    return f"{platform.node()}:{os.getpid()}"


def owner_gone(tags: dict[str, str], now: float | None = None) -> bool:
    """Has a RUNNING run's owner gone? Its process has ended (this host), or its lease has run out (any host).
    Runs from before leases existed have no owner: gone."""
    host, _, pid = tags.get(record.Tag.OWNER, "").rpartition(":")
    try:
        beat = float(tags[record.Tag.HEARTBEAT])
    except (KeyError, ValueError):
        return True
    if (now or time.time()) - beat > record.LEASE_S:
        return True
    if host == platform.node() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's
            pass
    return False


def _now() -> str:
    """A heartbeat: whole seconds, rounded down so it is never ahead of the clock."""
    return str(int(time.time()))


class Lease:
    """While a run trains, its owner tags and a heartbeat renewed every ``record.HEARTBEAT_S`` (a daemon thread)."""

    def __init__(self, mlflow: MlflowClient, run_id: str):
        import threading

        self.mlflow, self.run_id, self._stop = mlflow, run_id, threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{run_id[:8]}")

    @staticmethod
    def tags() -> dict[str, str]:
        return {record.Tag.OWNER: owner(), record.Tag.HEARTBEAT: _now()}

    def _beat(self) -> None:
        while not self._stop.wait(record.HEARTBEAT_S):
            try:
                self.mlflow.set_tag(self.run_id, record.Tag.HEARTBEAT, _now())
            except Exception:  # a store hiccup: the next beat tries again; the lease is generous
                pass

    def __enter__(self) -> "Lease":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()


@functools.cache
def git_state() -> tuple[str, str, bool] | None:
    """(full commit hash, branch, dirty) of the checkout rnnbench runs from; None outside a git checkout."""
    try:
        return _git("rev-parse", "HEAD"), _git("rev-parse", "--abbrev-ref", "HEAD"), bool(_git("status", "--porcelain", "-uno"))
    except (OSError, subprocess.CalledProcessError):
        return None


def git_commit() -> str:
    """The short commit, ``+dirty`` with uncommitted changes to tracked files; ``unknown`` outside git."""
    state = git_state()
    return "unknown" if state is None else state[0][:12] + ("+dirty" if state[2] else "")


def command_line() -> str:
    """The command that made the runs, as a person would type it: what the CLI recorded, else this process's argv."""
    if recorded := os.environ.get(record.COMMAND_ENV):
        return recorded
    program = Path(sys.argv[0])
    if program.name == "__main__.py":  # python -m <package>
        return f"python -m {program.parent.name} {shlex.join(sys.argv[1:])}".strip()
    return shlex.join([program.name, *sys.argv[1:]])


def source_tags() -> dict[str, str]:
    """MLflow's own source tags: the command line and the git commit (its UI shows them)."""
    tags = {record.Tag.SOURCE_NAME: command_line()[: record.MAX_TAG_CHARS], record.Tag.SOURCE_TYPE: "LOCAL"}
    if (state := git_state()) is not None:
        commit, branch, dirty = state
        tags |= {record.Tag.SOURCE_COMMIT: commit, record.Tag.SOURCE_BRANCH: branch, record.Tag.SOURCE_DIRTY: record.flag(dirty)}
    return tags


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({devices.cpu_description()}, {torch.get_num_threads()} threads)"


def environment_tags(device: torch.device) -> dict[str, str]:
    return {
        record.Tag.DEVICE: device_name(device),
        record.Tag.TORCH_VERSION: torch.__version__,
        record.Tag.LIGHTNING_VERSION: lightning.__version__,
        record.Tag.GIT_COMMIT: git_commit(),
        record.Tag.HOST: platform.node(),
    }
