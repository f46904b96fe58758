"""Smoke training: every registered task, and every shipped config (suites, run presets, sweeps),
loaded and validated as shipped, then trained for a step or two on tiny data.

Data-backed configs keep every option except where their data come from (``Task.data_options``),
which the task's ``smoke_options`` replace with tiny data written here: no network, no data folders.
"""

from __future__ import annotations

import math

import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmark import record, until_decided
from benchmark.config import load_run_config, load_suite_config, load_yaml
from benchmark.models import MODELS
from benchmark.record import Tag
from benchmark.runner import execute_run
from benchmark.scales import default_scale
from benchmark.sweep import load_sweep_config, run_sweep
from benchmark.sweep.efficiency import load_efficiency_config
from benchmark.task import TASKS, create_task
from tests.conftest import REPO_ROOT

CONFIGS = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "configs").rglob("*.yaml"))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module: creating a SQLite store costs seconds, a run a fraction of one."""
    return f"sqlite:///{tmp_path_factory.mktemp('smoke') / 'mlflow.db'}"


def tiny(entry: dict, workdir) -> dict:
    """A task entry (name, options, maybe train overrides) with its data swapped for the task's smoke data."""
    cls = TASKS.get(entry["name"])
    entry = {k: v for k, v in entry.items() if k not in cls.data_options} | cls.smoke_options(workdir)
    if "train" in entry:  # a suite entry's own train overrides: one epoch there too
        entry["train"] = {**entry["train"], "max_epochs": 1}
    return entry


def assert_trained(result, store) -> None:
    assert result.status == record.FINISHED, result.failure
    run = MlflowClient(store).get_run(result.run_id)
    assert math.isfinite(run.data.metrics[record.on_test(run.data.tags[Tag.MAIN_METRIC])])


@pytest.mark.parametrize("name", TASKS.names())
def test_every_registered_task_trains(name, tmp_path, store):
    options = TASKS.get(name).smoke_options(tmp_path)
    cfg = load_run_config(None, [f"task={name}", "model=gru", "model.hidden_size=8", "train.batch_size=8",
                                 "train.max_epochs=1", f"tracking.tracking_uri={store}"])  # fmt: skip
    cfg = cfg.model_copy(update={"task": cfg.task.model_validate({"name": name, **options})})
    result = execute_run(cfg)
    assert_trained(result, store)
    spec = create_task(name, **options).spec()
    run = MlflowClient(store).get_run(result.run_id)
    assert {k: v for k, v in run.data.params.items() if k.startswith(record.FACT_PREFIX)} == record.fact_params(spec.extra)
    assert run.data.tags[Tag.LENGTH_FACT] == (spec.length_fact or "")
    for metric in spec.metrics:  # each metric's scale: its kind's default unless named, recorded with its range
        assert metric.scale is (default_scale(metric.higher_is_better) if metric.name not in NAMED_SCALES else NAMED_SCALES[metric.name])
        assert run.data.tags[record.metric_scale(metric.name)] == metric.scale.name
        assert run.data.tags[record.metric_range(metric.name)] == metric.scale.range_text
        assert metric.scale.in_range(run.data.metrics[record.on_test(metric.name)])


NAMED_SCALES: dict = {}  # metric name -> the scale a task names instead of its kind's default (none today)


def _write(tmp_path, data: dict):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("config", CONFIGS)
def test_every_shipped_config_loads_and_trains(config, tmp_path, store):
    path = REPO_ROOT / config
    raw = load_yaml(path)
    tracking = {"tracking_uri": store, "experiment": "smoke"}
    short = {"max_epochs": 1}
    kind = path.parent.name
    if kind == "tasks":  # a run preset: as shipped, then one tiny run of it
        cfg = load_run_config(path)
        create_task(cfg.task.name, **cfg.task.options)
        small = {**raw, "task": tiny(raw["task"], tmp_path), "train": {**raw.get("train", {}), **short}, "tracking": tracking}
        assert_trained(execute_run(load_run_config(_write(tmp_path, small))), store)
        return
    if kind == "sweeps" and "pruners" in raw:  # a sweep-efficiency config: checked in full on the tasks' smoke data
        small = {**raw, "tasks": [tiny(t, tmp_path) | {"train": {"max_epochs": 3}} for t in raw["tasks"]],
                 "train": {**raw.get("train", {}), "max_epochs": 3}, "tracking": tracking}  # fmt: skip
        cfg = load_efficiency_config(_write(tmp_path, small))  # search space and every pruner against every study
        assert cfg.recorded(cfg.sampler_seeds[0]).pruner.name == "none"  # the replay itself: tests/test_pruning.py
        return
    if kind == "sweeps":  # as shipped (validates the search space and pruner against every study), then one trial per study
        load_sweep_config(path)
        small = {**raw, "tasks": [tiny(t, tmp_path) for t in raw["tasks"]], "train": {**raw.get("train", {}), **short},
                 "tracking": tracking, "n_trials": 1, "storage_dir": str(tmp_path / "optuna"),
                 "pruner": "none"}  # one epoch leaves a pruner nothing to do (and rungs no room)  # fmt: skip
        outcomes = run_sweep(load_sweep_config(_write(tmp_path, small)))
        assert len(outcomes) == len(raw["tasks"]) * len(raw["models"])
        assert all(o.reached_target and o.complete == 1 for o in outcomes)
        return
    assert kind == "suites", f"{config}: configs/ holds suites/, tasks/ and sweeps/ only"
    suite = load_suite_config(path)
    for t in suite.tasks:
        create_task(t.name, **t.options)
    for m in suite.models:
        MODELS.get(m)
    small = {**raw, "tasks": [tiny(t, tmp_path) for t in raw["tasks"]], "train": {**raw.get("train", {}), **short},
             "tracking": tracking, "seeds": suite.seeds[:1], "jobs": 1}  # fmt: skip
    until_decided.check_suite(load_suite_config(_write(tmp_path, {**small, "seeds": suite.seeds})))  # margins, max_seeds
    runs = load_suite_config(_write(tmp_path, small)).runs()  # one seed: task-major, then models
    models = len(suite.models)
    chosen = [r for i, r in enumerate(runs) if i < models or i % models == 0]  # every model once, every task once
    assert len(chosen) == models + len(suite.tasks) - 1 and {r.model.name for r in chosen} == set(suite.models)
    for cfg in chosen:
        assert_trained(execute_run(cfg), store)
