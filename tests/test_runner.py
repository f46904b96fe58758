"""End to end: one run into a temporary MLflow store, and what it recorded."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.config import load_run_config
from benchmark.runner import execute_run
from benchmark.task import TASKS, Batch
from tasks.synthetic import Adding


class DivergingAdding(Adding):
    """The adding problem with NaN targets: the loss is NaN from the first step."""

    name = "adding_nan"

    def sample(self, n, generator, device):
        batch = super().sample(n, generator, device)
        return Batch(batch.inputs, torch.full_like(batch.targets, float("nan")))


@pytest.fixture
def diverging_task(monkeypatch):
    monkeypatch.setitem(TASKS._items, DivergingAdding.name, DivergingAdding)
    return DivergingAdding.name


def test_run_records_params_metrics_and_tags(tiny_overrides, mlflow_uri):
    cfg = load_run_config(None, ["task=adding", "model=bilstm", "task.seq_len=12", "model.param_budget=3000", *tiny_overrides])
    result = execute_run(cfg)
    assert result.status == "FINISHED", result.failure
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    for key, value in {
        "task": "adding",
        "task_label": "adding[seq_len=12]",
        "model": "bilstm",
        "cell": "lstm",
        "bidirectional": "true",
        "layers": "1",
        "seed": "0",
        "run_key": cfg.run_key(),
        "main_metric": "mse",
        "higher_is_better": "false",
        "kind": "run",
    }.items():
        assert tags[key] == value, key
    for key in ("device", "torch_version", "lightning_version", "git_commit", "hidden", "param_count", "task_version"):
        assert tags[key]
    assert tags["torch_version"] == torch.__version__
    assert abs(int(tags["param_count"]) - 3000) < 300
    assert params["train.lr"] == str(cfg.train.lr) and params["task.seq_len"] == "12"
    assert params["arch.hidden_size"] == tags["hidden"] and params["param_count"] == tags["param_count"]
    for key in ("test/mse", "best_val/mse", "throughput_seq_per_s", "wall_time_s", "train_time_s", "peak_memory_mb"):
        assert key in metrics, key
    assert metrics["test/mse"] == result.metrics["test/mse"]
    assert metrics["baseline/mse"] == pytest.approx(1 / 6)
    assert metrics["throughput_seq_per_s"] > 0
    history = MlflowClient(mlflow_uri).get_metric_history(result.run_id, "val/mse")
    assert len(history) == cfg.train.max_epochs  # one validation point per epoch
    assert len(MlflowClient(mlflow_uri).get_metric_history(result.run_id, "train/loss")) == cfg.train.max_epochs


def test_same_seed_same_metrics_different_seed_different(tiny_overrides):
    overrides = ["task=copy_memory", "task.delay=5", "model=gru", "model.hidden_size=8", *tiny_overrides]
    first = execute_run(load_run_config(None, overrides))
    second = execute_run(load_run_config(None, overrides))
    third = execute_run(load_run_config(None, [*overrides, "seed=1"]))
    assert first.metrics["test/cross_entropy"] == second.metrics["test/cross_entropy"]
    assert first.metrics["test/cross_entropy"] != third.metrics["test/cross_entropy"]


def test_nan_loss_is_recorded_as_failed(diverging_task, tiny_overrides, mlflow_uri):
    result = execute_run(load_run_config(None, [f"task={diverging_task}", "model=gru", "model.hidden_size=4", *tiny_overrides]))
    assert result.status == "FAILED"
    assert "NonFiniteLossError" in result.failure
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.info.status == "FAILED"
    assert "non-finite training loss" in run.data.tags["failure_reason"]


def test_cli_run_succeeds_and_learns_the_adding_problem(tiny_overrides, mlflow_uri, capsys):
    """A GRU, a few hundred steps: well below the predict-1 baseline of 1/6."""
    overrides = [o for o in tiny_overrides if not o.startswith(("task.train_size", "train.max_epochs"))]
    code = main(["run", "task=adding", "task.seq_len=10", "model=gru", "model.hidden_size=32", "train.lr=0.01",
                 "task.train_size=4096", "train.max_epochs=4", *overrides])
    assert code == 0
    out = capsys.readouterr().out
    assert "ok adding[seq_len=10] gru" in out
    run = MlflowClient(mlflow_uri).search_runs([MlflowClient(mlflow_uri).get_experiment_by_name("test").experiment_id])[0]
    assert run.data.metrics["test/mse"] < 0.05 < run.data.metrics["baseline/mse"]
