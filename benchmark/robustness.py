"""``rnnbench robustness``: finished runs re-evaluated on perturbed test inputs, without retraining.

    rnnbench robustness --experiment speech --kind snr --levels inf 30 20 10 5 0
    rnnbench robustness --experiment adding --kind gaussian --levels 0 0.05 0.1 0.2

Each run's checkpoint is rebuilt (``benchmark.checkpoint``), its test split perturbed by the kind
(``benchmark.perturb``) at each level and scored as the run scored it; the results are logged on
the run as ``robust/<kind>/<level>/<metric>`` with the tag ``robust.<kind>`` saying how the noise
was drawn. Every run is loaded and every kind and level checked before anything is logged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mlflow.entities import Metric as MlflowMetric, RunTag
from rich.table import Table

from benchmark import perturb, record
from benchmark.checkpoint import evaluate, finished_runs, load_runs
from benchmark.config import ConfigError
from benchmark.tracking import client


def kind_label(kind: str, noise_dir: Path | None) -> str:
    """The kind as metric names spell it: background-noise mixtures apart from white noise (``snr-<folder>``)."""
    return f"{kind}-{noise_dir.name}" if noise_dir is not None else kind


def run(tracking_uri: str, experiment: str | None, run_ids: list[str], task: str | None, kind: str, levels: list[float],
        seed: int, noise_dir: Path | None, console) -> int:  # fmt: skip
    """Evaluate and log; returns the number of runs evaluated."""
    if noise_dir is not None and kind != "snr":
        raise ConfigError(f"--noise-dir applies to --kind snr only (got --kind {kind})")
    loaded = load_runs(tracking_uri, finished_runs(tracking_uri, experiment, run_ids, task))
    kinds = {run.run_id: perturb.check(kind, levels, run.spec, f" (run {run.run_id})") for run in loaded}
    label = kind_label(kind, noise_dir)
    how = json.dumps({"seed": seed, "unit": perturb.PERTURBATIONS.get(kind).unit, "noise": str(noise_dir) if noise_dir else "white"})
    mlflow, cache, now = client(tracking_uri), {}, int(time.time() * 1000)
    table = Table("run", "model", "task", *[f"{kind} {record.level_text(v)}" for v in levels], title=f"test {kind} robustness")
    for run in loaded:
        ctx = perturb.Context(run.task, run.spec, noise_dir, cache)
        scores = {level: evaluate(run, **perturb.hooks(kinds[run.run_id], level, seed, ctx)) for level in levels}
        metrics = [MlflowMetric(record.robust_metric(label, level, name), value, now, 0)
                   for level, values in scores.items() for name, value in values.items()]  # fmt: skip
        mlflow.log_batch(run.run_id, metrics=metrics, tags=[RunTag(record.robust_tag(label), how)])
        main = run.spec.main_metric
        table.add_row(run.run_id[:8], run.cfg.model.name, run.task.label, *[f"{scores[v][main]:.4g}" for v in levels])
    console.print(table)
    return len(loaded)
