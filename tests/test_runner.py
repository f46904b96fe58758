"""End to end: one run into a temporary MLflow store, and what it recorded."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark import record
from benchmark.cli import main
from benchmark.config import ModelConfig, load_run_config
from benchmark.models import parameter_count, resolve_architecture
from benchmark.record import RunKind, RunMetric, Tag
from benchmark.runner import execute_run
from benchmark.task import create_task


def test_run_records_params_metrics_and_tags(tiny_overrides, mlflow_uri):
    cfg = load_run_config(None, ["task=adding", "model=bilstm", "task.seq_len=12", "model.param_budget=3000", *tiny_overrides])
    result = execute_run(cfg)
    assert result.status == record.FINISHED, result.failure
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.info.status == record.FINISHED
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    for key, value in {
        Tag.TASK: "adding",
        Tag.TASK_LABEL: "adding[seq_len=12]",
        Tag.MODEL: "bilstm",
        Tag.CELL: "lstm",
        Tag.BIDIRECTIONAL: "true",
        Tag.LAYERS: "1",
        Tag.SEED: "0",
        Tag.RUN_KEY: cfg.run_key(),
        Tag.MAIN_METRIC: "mse",
        Tag.HIGHER_IS_BETTER: "false",
        Tag.KIND: RunKind.RUN,
        Tag.LENGTH_FACT: "seq_len",
    }.items():
        assert tags[key] == value, key
    for key in (*record.RUN_TAGS, Tag.LIGHTNING_VERSION, Tag.HOST, Tag.HIDDEN, Tag.PARAM_COUNT, Tag.TASK_VERSION):
        if key not in (Tag.SUITE, Tag.FAILURE_REASON):  # a run outside a suite that finished has neither
            assert tags[key], key
    assert tags[Tag.TORCH_VERSION] == torch.__version__
    assert abs(int(tags[Tag.PARAM_COUNT]) - 3000) < 300
    assert params["train.lr"] == str(cfg.train.lr) and params["task.seq_len"] == "12"
    assert params["arch.hidden_size"] == tags[Tag.HIDDEN] and params[record.PARAM_COUNT] == tags[Tag.PARAM_COUNT]
    assert params["fact.seq_len"] == "12"  # the task's facts (TaskSpec.extra)
    # the same network with each cell, counted independently here
    spec = create_task("adding", seq_len=12).spec()
    hidden = int(tags[Tag.HIDDEN])
    for cell, variant in (("rnn", "birnn"), ("gru", "bigru"), ("lstm", "bilstm")):
        expected = parameter_count(spec, resolve_architecture(spec, ModelConfig(name=variant, hidden_size=hidden)))
        assert params[record.cell_param_count(cell)] == str(expected), cell
    assert params[record.cell_param_count("lstm")] == tags[Tag.PARAM_COUNT]
    for key in (record.on_test("mse"), record.best_val("mse"), RunMetric.THROUGHPUT, RunMetric.WALL_TIME,
                RunMetric.TRAIN_TIME, RunMetric.PEAK_MEMORY, RunMetric.EPOCHS):  # fmt: skip
        assert key in metrics, key
    assert metrics[record.on_test("mse")] == result.metrics[record.on_test("mse")]
    assert metrics[record.baseline("mse")] == pytest.approx(1 / 6)
    assert metrics[RunMetric.THROUGHPUT] > 0
    assert metrics[RunMetric.EPOCHS] == cfg.train.max_epochs
    history = MlflowClient(mlflow_uri).get_metric_history(result.run_id, record.on_val("mse"))
    assert len(history) == cfg.train.max_epochs  # one validation point per epoch
    assert len(MlflowClient(mlflow_uri).get_metric_history(result.run_id, record.TRAIN_LOSS)) == cfg.train.max_epochs


def test_copy_memory_names_its_delay_as_the_length(tiny_overrides, mlflow_uri):
    cfg = load_run_config(None, ["task=copy_memory", "task.delay=3", "model=gru", "model.hidden_size=4", *tiny_overrides])
    run = MlflowClient(mlflow_uri).get_run(execute_run(cfg).run_id)
    assert run.data.tags[Tag.LENGTH_FACT] == "delay"
    assert run.data.params["fact.delay"] == "3" and run.data.params["fact.seq_len"] == "23"  # 3 + 2 x 10 symbols


def test_same_seed_same_metrics_different_seed_different(tiny_overrides):
    overrides = ["task=copy_memory", "task.delay=5", "model=gru", "model.hidden_size=8", *tiny_overrides]
    first = execute_run(load_run_config(None, overrides))
    second = execute_run(load_run_config(None, overrides))
    third = execute_run(load_run_config(None, [*overrides, "seed=1"]))
    ce = record.on_test("cross_entropy")
    assert first.metrics[ce] == second.metrics[ce]
    assert first.metrics[ce] != third.metrics[ce]


def test_nan_loss_is_recorded_as_failed(diverging_task, tiny_overrides, mlflow_uri):
    result = execute_run(load_run_config(None, [f"task={diverging_task}", "model=gru", "model.hidden_size=4", *tiny_overrides]))
    assert result.status == record.FAILED
    assert "NonFiniteLossError" in result.failure
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.info.status == record.FAILED
    assert "non-finite training loss" in run.data.tags[Tag.FAILURE_REASON]


def test_cli_run_succeeds_and_learns_the_adding_problem(tiny_overrides, mlflow_uri, capsys):
    """A GRU, a few hundred steps: well below the predict-1 baseline of 1/6."""
    overrides = [o for o in tiny_overrides if not o.startswith(("task.train_size", "train.max_epochs"))]
    code = main(["run", "task=adding", "task.seq_len=10", "model=gru", "model.hidden_size=32", "train.lr=0.01",
                 "task.train_size=4096", "train.max_epochs=4", *overrides])
    assert code == 0
    out = capsys.readouterr().out
    assert "ok adding[seq_len=10] gru" in out
    run = MlflowClient(mlflow_uri).search_runs([MlflowClient(mlflow_uri).get_experiment_by_name("test").experiment_id])[0]
    assert run.data.metrics[record.on_test("mse")] < 0.05 < run.data.metrics[record.baseline("mse")]
