"""A run's trained network, kept in MLflow and rebuilt from the run id alone.

Every finished run logs ``checkpoint/model.pt`` (``record.CHECKPOINT_ARTIFACT``): the network's
best-validation state dict, the run config and the resolved architecture. ``load_run`` downloads
it (``torch.load(weights_only=True)``: tensors and plain data only, never pickled code), recreates
the task from the config and loads the weights, so later questions (robustness, gates) need no
retraining. ``evaluate`` scores the test split exactly as the run did (same batches, same
accumulation), optionally with its inputs perturbed (``benchmark.perturb``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from mlflow.exceptions import MlflowException
from torchmetrics import MeanMetric

from benchmark import record
from benchmark.config import ConfigError, RunConfig
from benchmark.models import Architecture, RecurrentNetwork
from benchmark.task import Batch, Task, TaskSpec, create_task
from benchmark.tracking import client, experiment_id, search_all

FORMAT = 1  # bump when the payload's layout changes
CHECKPOINT_PARTS = tuple(record.CHECKPOINT_ARTIFACT.rsplit("/", 1))  # (artifact folder, file name)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr stays one line on an error


def payload(cfg: RunConfig, arch: Architecture, network: torch.nn.Module) -> dict:
    """What ``checkpoint/model.pt`` holds: plain data and tensors, loadable with ``weights_only=True``."""
    state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    return {"format": FORMAT, "config": cfg.model_dump(mode="json"), "arch": arch.as_dict(), "state_dict": state}


def log_checkpoint(mlflow, run_id: str, cfg: RunConfig, arch: Architecture, network: torch.nn.Module) -> None:
    """Log the network (already holding its best-validation weights) as the run's checkpoint artifact."""
    folder, name = CHECKPOINT_PARTS
    with tempfile.TemporaryDirectory(prefix="rnnbench-model-") as tmp:
        path = Path(tmp) / name
        torch.save(payload(cfg, arch, network), path)
        mlflow.log_artifact(run_id, str(path), folder)


@dataclass
class LoadedRun:
    """A finished run rebuilt: its config, task, spec and trained network (eval mode, on CPU)."""

    run_id: str
    cfg: RunConfig
    task: Task
    spec: TaskSpec
    arch: Architecture
    network: RecurrentNetwork

    def test_loader(self):
        """The run's test split in its batches, and the datamodule that turns each into a ``Batch``."""
        datamodule = self.task.datamodule(self.cfg.train.batch_size, self.cfg.seed)
        return datamodule, datamodule.test_dataloader()


def load_run(run_id: str, tracking_uri: str, tasks: dict | None = None) -> LoadedRun:
    """Rebuild a run's trained network and task from its id; ``ConfigError`` (one line) if it cannot be.

    ``tasks`` (task config JSON -> (task, spec)) lets runs of one task setting share its data.
    """
    mlflow = client(tracking_uri)
    try:
        mlflow.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--run-id '{run_id}': no such run at {tracking_uri}") from None
    folder, name = CHECKPOINT_PARTS
    if name not in {Path(a.path).name for a in mlflow.list_artifacts(run_id, folder)}:
        raise ConfigError(
            f"run '{run_id}' has no {record.CHECKPOINT_ARTIFACT} artifact (trained before checkpoints were kept, "
            "or with tracking.log_checkpoint=false): rerun it to keep its weights"
        )
    with tempfile.TemporaryDirectory(prefix="rnnbench-model-") as tmp:
        data = torch.load(mlflow.download_artifacts(run_id, record.CHECKPOINT_ARTIFACT, tmp), weights_only=True)
    if data.get("format") != FORMAT:
        raise ConfigError(f"run '{run_id}': {record.CHECKPOINT_ARTIFACT} has format {data.get('format')}, this rnnbench reads {FORMAT}")
    cfg = RunConfig.model_validate(data["config"])
    key = cfg.task.model_dump_json()
    tasks = {} if tasks is None else tasks
    if key not in tasks:
        task = create_task(cfg.task.name, **cfg.task.options)
        tasks[key] = task, task.spec()
    task, spec = tasks[key]
    arch = Architecture(**data["arch"])
    network = RecurrentNetwork(spec, arch)
    network.load_state_dict(data["state_dict"])
    return LoadedRun(run_id, cfg, task, spec, arch, network.eval())


BatchHook = Callable[[object, int], object]  # (loader item or Batch, index of its first example) -> the same kind


def test_batches(loaded: LoadedRun, raw: BatchHook | None = None, batch: BatchHook | None = None):
    """The test split as ``Batch``es in the run's order; ``raw`` sees each loader item before the
    datamodule prepares it (e.g. waveforms before features), ``batch`` the prepared ``Batch``."""
    datamodule, loader = loaded.test_loader()
    first = 0
    for item in loader:
        size = len(item) if isinstance(item, Batch) else len(item[-1])
        if raw is not None:
            item = raw(item, first)
        prepared = datamodule.on_after_batch_transfer(item, 0)
        if batch is not None:
            prepared = batch(prepared, first)
        yield prepared
        first += size


@torch.no_grad()
def evaluate(loaded: LoadedRun, raw: BatchHook | None = None, batch: BatchHook | None = None) -> dict[str, float]:
    """Each task metric on the test split (hooks as in ``test_batches``), averaged as the run's test
    step averaged them: the same per-example values, batches and ``MeanMetric``, so with no hook the
    result equals the run's recorded ``test/<metric>`` on CPU."""
    meters = {m.name: MeanMetric(nan_strategy="disable") for m in loaded.spec.metrics}
    for b in test_batches(loaded, raw, batch):
        output = loaded.network(b.inputs, b.lengths)
        for m in loaded.spec.metrics:
            meters[m.name].update(m.fn(output, b))
    return {name: float(meter.compute()) for name, meter in meters.items()}


def finished_runs(tracking_uri: str, experiment: str | None, run_ids: list[str], task: str | None = None) -> list[str]:
    """The given run ids, or else every finished ordinary run (``kind=run``) of ``experiment`` (of
    ``task`` only, if given), oldest first."""
    if run_ids:
        return list(dict.fromkeys(run_ids))
    if not experiment:
        raise ConfigError("give --experiment (optionally with --task) or --run-id")
    mlflow = client(tracking_uri)
    exp_id = experiment_id(mlflow, experiment, create=False)
    if exp_id is None:
        known = sorted(e.name for e in mlflow.search_experiments())
        raise ConfigError(f"experiment '{experiment}' not found at {tracking_uri}. Experiments there: {', '.join(known) or 'none'}")
    runs = [r for r in search_all(mlflow, exp_id, f"attributes.status = '{record.FINISHED}'") if record.kind_of(r.data.tags) == record.RunKind.RUN]
    tasks = sorted({r.data.tags.get(record.Tag.TASK, "") for r in runs})
    if task is not None:
        runs = [r for r in runs if r.data.tags.get(record.Tag.TASK) == task]
    if not runs:
        which = f" of task '{task}' (its tasks: {', '.join(tasks) or 'none'})" if task else ""
        raise ConfigError(f"experiment '{experiment}' at {tracking_uri} has no finished runs{which}")
    return [r.info.run_id for r in sorted(runs, key=lambda r: r.info.start_time)]


def load_runs(tracking_uri: str, run_ids: list[str]) -> list[LoadedRun]:
    """``load_run`` for each, sharing one task per distinct task config (data are loaded once)."""
    tasks: dict[str, tuple[Task, TaskSpec]] = {}
    return [load_run(run_id, tracking_uri, tasks) for run_id in run_ids]
