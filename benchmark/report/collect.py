"""Read an experiment's runs and sweeps from MLflow into tidy tables (one row per run / trial).

Only the tracking store is needed, never the process that trained the runs. Tags follow the
project's conventions: ``kind`` is ``run`` (ordinary runs; runs from before the tag existed count
as ``run`` too), ``sweep`` (an Optuna study's parent run) or ``trial`` (a sweep's child run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from benchmark.config import ConfigError
from benchmark.tracking import experiment_id, search_all

# final metrics the runner logs once per run, as tidy column names
RUN_METRICS = {
    "param_count": "param_count",
    "throughput_seq_per_s": "throughput",
    "train_time_s": "train_time_s",
    "wall_time_s": "wall_time_s",
    "peak_memory_mb": "peak_memory_mb",
    "epochs_trained": "epochs",
}
KEY = ["task_label", "model", "seed"]  # one cell of a suite
RUN_TAGS = (
    "kind", "task", "task_label", "model", "cell", "layers", "bidirectional", "hidden", "main_metric",
    "device", "torch_version", "git_commit", "suite", "failure_reason", "run_key",
)  # fmt: skip


@dataclass
class Sweep:
    run_id: str
    study_name: str
    task_label: str
    model: str
    main_metric: str
    higher_is_better: bool
    best_value: float
    best_params: dict[str, str]
    importances: dict[str, float]  # empty when the sweep logged none
    trials: pd.DataFrame  # number, value, status


@dataclass
class Collection:
    experiment: str
    tracking_uri: str
    runs: pd.DataFrame  # every ordinary run, whatever its status
    sweeps: list[Sweep] = field(default_factory=list)

    @property
    def finished(self) -> pd.DataFrame:
        """The latest FINISHED run of each (task setting, model, seed); earlier ones are in ``excluded``."""
        done = self.runs[self.runs.status == "FINISHED"]
        return done.sort_values("start").drop_duplicates(KEY, keep="last").sort_values(KEY).reset_index(drop=True)

    @property
    def excluded(self) -> pd.DataFrame:
        """Runs that do not count, and why: failed, killed, still running, superseded, or missing.

        A seed counts as missing for a model when other models of the same task setting ran it.
        """
        kept = set(self.finished.run_id)
        rows = []
        for r in self.runs[~self.runs.run_id.isin(kept)].itertuples():
            if r.status == "FINISHED":
                why = "superseded by a later finished run of the same task, model and seed"
            else:
                rerun = ((self.finished[KEY] == (r.task_label, r.model, r.seed)).all(axis=1)).any()
                why = r.failure_reason or (
                    "still running, or its process died (a resumed suite marks it KILLED)" if r.status == "RUNNING"
                    else "no reason recorded"
                )  # fmt: skip
                why += "; a later run of it finished" if rerun else "; no finished run of it"
            rows.append({"task_label": r.task_label, "model": r.model, "seed": r.seed, "status": r.status,
                         "run_id": r.run_id, "reason": why})
        for label, group in self.runs.groupby("task_label"):
            seeds = set(group.seed)
            for model, runs in group.groupby("model"):
                for seed in sorted(seeds - set(runs.seed)):
                    rows.append({"task_label": label, "model": model, "seed": seed, "status": "MISSING",
                                 "run_id": "", "reason": "no run recorded (other models ran this seed)"})
        return pd.DataFrame(rows, columns=["task_label", "model", "seed", "status", "run_id", "reason"])


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _run_row(run) -> dict:
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    main = tags.get("main_metric", "")
    row = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start": dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.timezone.utc) if run.info.start_time else pd.NaT,
        **{t: tags.get(t, "") for t in RUN_TAGS},
        "seed": int(tags["seed"]) if tags.get("seed", "").lstrip("-").isdigit() else -1,
        "higher_is_better": tags.get("higher_is_better") == "true",
        "value": metrics.get(f"test/{main}", float("nan")),
        "best_val": metrics.get(f"best_val/{main}", float("nan")),
        "baseline": metrics.get(f"baseline/{main}", float("nan")),
        **{col: metrics.get(name, float("nan")) for name, col in RUN_METRICS.items()},
    }
    if row["param_count"] != row["param_count"]:  # failed runs have the tag, not the final metric
        row["param_count"] = _as_float(tags.get("param_count"))
    row["kind"] = row["kind"] or "run"
    # the task's options (task.seq_len, task.delay, ...) name the setting; the length plot reads them
    row.update({k: v for k, v in params.items() if k.startswith("task.") and k != "task.name"})
    return row


def _experiment(mlflow: MlflowClient, name: str, uri: str) -> str:
    exp_id = experiment_id(mlflow, name, create=False)
    if exp_id is None:
        known = sorted(e.name for e in mlflow.search_experiments())
        raise ConfigError(
            f"experiment '{name}' not found at {uri}. Experiments there: {', '.join(known) or 'none'}"
        )
    return exp_id


os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one tiny JSON per sweep


def _importances(mlflow: MlflowClient, run_id: str) -> dict[str, float]:
    names = {a.path for a in mlflow.list_artifacts(run_id)}
    if "importances.json" not in names:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.download_artifacts(run_id, "importances.json", tmp)
        return {k: float(v) for k, v in json.loads(Path(path).read_text()).items()}


def _sweeps(mlflow: MlflowClient, exp_id: str) -> list[Sweep]:
    parents = sorted(search_all(mlflow, exp_id, "tags.kind = 'sweep'"), key=lambda r: r.data.tags.get("study_name", ""))
    trials = search_all(mlflow, exp_id, "tags.kind = 'trial'") if parents else []
    sweeps = []
    for p in parents:
        tags, main = p.data.tags, p.data.tags.get("main_metric", "")
        rows = [
            {
                "number": int(t.data.tags.get("trial_number", -1)),
                "value": t.data.metrics.get(f"best_val/{main}", float("nan")),
                "status": t.info.status,
            }
            for t in trials
            if t.data.tags.get("mlflow.parentRunId") == p.info.run_id
        ]
        sweeps.append(
            Sweep(
                run_id=p.info.run_id,
                study_name=tags.get("study_name", p.info.run_name),
                task_label=tags.get("task_label", tags.get("task", "?")),
                model=tags.get("model", "?"),
                main_metric=main,
                higher_is_better=tags.get("higher_is_better") == "true",
                best_value=p.data.metrics.get("best_value", float("nan")),
                # params normally; tags when an extended study found a better trial (params are immutable)
                best_params={k[5:]: v for k, v in (p.data.params | tags).items() if k.startswith("best.")},
                importances=_importances(mlflow, p.info.run_id),
                trials=pd.DataFrame(rows, columns=["number", "value", "status"]).sort_values("number"),
            )
        )
    return sweeps


def collect(tracking_uri: str, experiment: str) -> Collection:
    """Every ordinary run (any status) and every sweep of ``experiment``; ConfigError if none."""
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    exp_id = _experiment(mlflow, experiment, tracking_uri)
    runs = [r for r in search_all(mlflow, exp_id) if r.data.tags.get("kind", "run") == "run"]
    sweeps = _sweeps(mlflow, exp_id)
    if not runs and not sweeps:
        raise ConfigError(f"experiment '{experiment}' at {tracking_uri} holds no runs; run a suite into it first")
    rows = [_run_row(r) for r in runs]
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run_id", "status", "start", *RUN_TAGS, "seed"])
    table = table.sort_values([*KEY, "start"], kind="stable").reset_index(drop=True)
    return Collection(experiment, tracking_uri, table, sweeps)


def val_curves(tracking_uri: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation main metric of each run: columns run_id, step, value."""
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    rows = []
    for run_id, main in zip(runs.run_id, runs.main_metric):
        for m in mlflow.get_metric_history(run_id, f"val/{main}"):
            rows.append({"run_id": run_id, "step": m.step, "value": m.value})
    return pd.DataFrame(rows, columns=["run_id", "step", "value"])
