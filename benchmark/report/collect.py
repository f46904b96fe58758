"""Read an experiment's runs and sweeps from MLflow into tidy tables (one row per run / trial).

Only the tracking store is needed, never the process that trained the runs: the names come from
``benchmark.record``. ``latest_finished`` is the one rule for which run counts (the suite's
summary uses it too); ``length_axis`` finds the sequence length a task's settings vary.
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

from benchmark import record
from benchmark.config import ConfigError
from benchmark.record import RunKind, RunMetric, StudyMetric, Tag
from benchmark.tracking import client, experiment_id, search_all

# final metrics the runner logs once per run, as tidy column names
RUN_METRICS = {
    RunMetric.PARAM_COUNT: "param_count",
    RunMetric.THROUGHPUT: "throughput",
    RunMetric.TRAIN_TIME: "train_time_s",
    RunMetric.WALL_TIME: "wall_time_s",
    RunMetric.PEAK_MEMORY: "peak_memory_mb",
    RunMetric.EPOCHS: "epochs",
}
KEY = [Tag.TASK_LABEL, Tag.MODEL, Tag.SEED]  # one cell of a suite: at most one run of it counts
# params copied to columns: the task's options and facts, the per-cell parameter counts
PARAM_COLUMNS = (record.TASK_PREFIX, record.FACT_PREFIX, record.cell_param_count(""))


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
    tags: dict[str, str] = field(default_factory=dict)  # the experiment's (margins, sequential design)

    @property
    def finished(self) -> pd.DataFrame:
        """The runs that count (``latest_finished``); the others are in ``excluded``."""
        return latest_finished(self.runs)

    @property
    def excluded(self) -> pd.DataFrame:
        """Runs that do not count, and why: failed, killed, still running, superseded, or missing.

        A seed counts as missing for a model when other models of the same task setting ran it.
        """
        kept = set(self.finished.run_id)
        rows = []
        for r in self.runs[~self.runs.run_id.isin(kept)].itertuples():
            if r.status == record.FINISHED:
                why = "superseded by a later finished run of the same task, model and seed"
            else:
                rerun = ((self.finished[KEY] == (r.task_label, r.model, r.seed)).all(axis=1)).any()
                why = r.failure_reason or (
                    "still running, or its process died (a resumed suite marks it KILLED)" if r.status == record.RUNNING
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


def latest_finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The latest FINISHED run of each (task setting, model, seed), sorted by them: the runs that count."""
    done = runs[runs.status == record.FINISHED]
    return done.sort_values("start").drop_duplicates(KEY, keep="last").sort_values(KEY).reset_index(drop=True)


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def run_row(run) -> dict:
    """One ordinary MLflow run as a flat row: identity tags, main test metric, costs, task options and facts."""
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    main = tags.get(Tag.MAIN_METRIC, "")
    row = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start": dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.timezone.utc) if run.info.start_time else pd.NaT,
        **{t: tags.get(t, "") for t in record.RUN_TAGS},
        Tag.REFERENCES: tags.get(Tag.REFERENCES, ""),  # config, not a result: only reference_rows reads it
        Tag.SEED: int(tags[Tag.SEED]) if tags.get(Tag.SEED, "").lstrip("-").isdigit() else -1,
        Tag.HIGHER_IS_BETTER: record.is_true(tags.get(Tag.HIGHER_IS_BETTER)),
        "scale": tags.get(record.metric_scale(main), ""),  # empty on runs from before scales were tagged
        "value": metrics.get(record.on_test(main), float("nan")),
        "best_val": metrics.get(record.best_val(main), float("nan")),
        "baseline": metrics.get(record.baseline(main), float("nan")),
        **{col: metrics.get(name, float("nan")) for name, col in RUN_METRICS.items()},
        # later evaluations of the run's checkpoint (rnnbench robustness, rnnbench gates), under their own names
        **{name: value for name, value in metrics.items() if name.startswith((record.ROBUST_PREFIX, record.GATES_PREFIX))},
    }
    if row["param_count"] != row["param_count"]:  # failed runs have the tag, not the final metric
        row["param_count"] = _as_float(tags.get(Tag.PARAM_COUNT))
    row[Tag.KIND] = record.kind_of(tags)
    if Tag.LENGTH_FACT in tags:
        row[Tag.LENGTH_FACT] = tags[Tag.LENGTH_FACT]
    row.update({k: v for k, v in params.items() if k.startswith(PARAM_COLUMNS) and k != f"{record.TASK_PREFIX}name"})
    return row


def run_table(runs: list) -> pd.DataFrame:
    """The ordinary runs (``kind=run``) among MLflow ``runs``, one row each, sorted by ``KEY`` and start."""
    rows = [run_row(r) for r in runs if record.kind_of(r.data.tags) == RunKind.RUN]
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run_id", "status", "start", *record.RUN_TAGS, Tag.SEED])
    return table.sort_values([*KEY, "start"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class LengthAxis:
    """The column holding a task's sequence length, and its name in tables and plots."""

    column: str
    name: str


def length_axis(runs: pd.DataFrame) -> LengthAxis | None:
    """The sequence length that varies between one task's settings, or None.

    Runs name their length fact (``length_fact`` tag, ``fact.<name>`` param; empty: the task has
    none). Runs recorded before facts were logged (no tag) fall back to the old rule, for backward
    compatibility: a numeric ``task.*`` option that varies, preferring ``LEGACY_LENGTH_OPTIONS``,
    else the only one that varies.
    """
    recorded = runs[Tag.LENGTH_FACT].dropna() if Tag.LENGTH_FACT in runs else pd.Series(dtype=object)
    if len(recorded):
        named = [n for n in recorded.unique() if n]
        if not named:
            return None
        name = named[0]
        values = runs[record.FACT_PREFIX + name].fillna(runs.get(record.TASK_PREFIX + name, pd.NA))
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and numeric.nunique() > 1:
            return LengthAxis(record.FACT_PREFIX + name, name)
        return None
    varying = [
        c for c in runs.columns
        if c.startswith(record.TASK_PREFIX) and runs[c].nunique() > 1 and pd.to_numeric(runs[c], errors="coerce").notna().all()
    ]  # fmt: skip
    for name in LEGACY_LENGTH_OPTIONS:
        if record.TASK_PREFIX + name in varying:
            return LengthAxis(record.TASK_PREFIX + name, name)
    return LengthAxis(varying[0], varying[0].removeprefix(record.TASK_PREFIX)) if len(varying) == 1 else None


LEGACY_LENGTH_OPTIONS = ("seq_len", "delay", "length", "T")  # only for runs without a length_fact tag

REFERENCE_COLUMNS = ["task_label", "model", "metric", "value", "source", "setup"]


def reference_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The published numbers the runs' configs named, once per task setting (any run status: they are
    config, not results). Kept apart from the run table: no statistic reads them."""
    rows = []
    if Tag.REFERENCES in runs:
        for label, tag in zip(runs.task_label, runs[Tag.REFERENCES]):
            rows += [{"task_label": label, **ref} for ref in record.read_references(tag if isinstance(tag, str) else "")]
    table = pd.DataFrame(rows, columns=REFERENCE_COLUMNS)
    return table.drop_duplicates(ignore_index=True)


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
    if record.IMPORTANCES_ARTIFACT not in names:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.download_artifacts(run_id, record.IMPORTANCES_ARTIFACT, tmp)
        return {k: float(v) for k, v in json.loads(Path(path).read_text()).items()}


def _sweeps(mlflow: MlflowClient, exp_id: str) -> list[Sweep]:
    parents = sorted(
        search_all(mlflow, exp_id, f"tags.{Tag.KIND} = '{RunKind.SWEEP}'"), key=lambda r: r.data.tags.get(Tag.STUDY_NAME, "")
    )
    trials = search_all(mlflow, exp_id, f"tags.{Tag.KIND} = '{RunKind.TRIAL}'") if parents else []
    sweeps = []
    for p in parents:
        tags, main = p.data.tags, p.data.tags.get(Tag.MAIN_METRIC, "")
        rows = [
            {
                "number": int(t.data.tags.get(Tag.TRIAL_NUMBER, -1)),
                "value": t.data.metrics.get(record.best_val(main), float("nan")),
                "status": t.info.status,
            }
            for t in trials
            if t.data.tags.get(Tag.PARENT_RUN) == p.info.run_id
        ]
        sweeps.append(
            Sweep(
                run_id=p.info.run_id,
                study_name=tags.get(Tag.STUDY_NAME, p.info.run_name),
                task_label=tags.get(Tag.TASK_LABEL, tags.get(Tag.TASK, "?")),
                model=tags.get(Tag.MODEL, "?"),
                main_metric=main,
                higher_is_better=record.is_true(tags.get(Tag.HIGHER_IS_BETTER)),
                best_value=p.data.metrics.get(StudyMetric.BEST_VALUE, float("nan")),
                # params normally; tags when an extended study found a better trial (params are immutable)
                best_params={
                    k.removeprefix(record.BEST_PREFIX): v
                    for k, v in (p.data.params | tags).items()
                    if k.startswith(record.BEST_PREFIX)
                },
                importances=_importances(mlflow, p.info.run_id),
                trials=pd.DataFrame(rows, columns=["number", "value", "status"]).sort_values("number"),
            )
        )
    return sweeps


def suite_runs(mlflow: MlflowClient, experiment: str) -> list[str]:
    """Ids of the experiment's suite parent runs (``kind=suite``), oldest first."""
    exp_id = experiment_id(mlflow, experiment, create=False)
    found = search_all(mlflow, exp_id, f"tags.{Tag.KIND} = '{RunKind.SUITE}'") if exp_id is not None else []
    return [r.info.run_id for r in sorted(found, key=lambda r: r.info.start_time)]


def collect(tracking_uri: str, experiment: str) -> Collection:
    """Every ordinary run (any status) and every sweep of ``experiment``; ConfigError if none."""
    mlflow = client(tracking_uri)
    exp_id = _experiment(mlflow, experiment, tracking_uri)
    runs = run_table(search_all(mlflow, exp_id))
    sweeps = _sweeps(mlflow, exp_id)
    if runs.empty and not sweeps:
        raise ConfigError(f"experiment '{experiment}' at {tracking_uri} holds no runs; run a suite into it first")
    return Collection(experiment, tracking_uri, runs, sweeps, dict(mlflow.get_experiment(exp_id).tags))


LEGACY_EPOCH_METRIC = "epoch"  # runs logged before step = epoch: Lightning's epoch metric, at the global step


def val_curves(tracking_uri: str, runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation main metric of each run: columns run_id, epoch (0 = the first), value.

    Runs log it with MLflow's step = the epoch; older runs logged the global step, with the epoch
    in a separate ``epoch`` metric at the same steps, which maps them back.
    """
    mlflow = client(tracking_uri)
    rows = []
    for run_id, main in zip(runs.run_id, runs.main_metric):
        epoch_at = {m.step: int(m.value) for m in mlflow.get_metric_history(run_id, LEGACY_EPOCH_METRIC)}
        for m in mlflow.get_metric_history(run_id, record.on_val(main)):
            rows.append({"run_id": run_id, "epoch": epoch_at.get(m.step, m.step), "value": m.value})
    return pd.DataFrame(rows, columns=["run_id", "epoch", "value"])
