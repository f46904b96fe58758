"""Suites: resumable from MLflow, a failing run recorded while the rest go on, a summary table."""

from __future__ import annotations

import csv

import pytest
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console

from benchmark import record
from benchmark.cli import main
from benchmark.record import RunKind, Tag
from benchmark.config import load_suite_config
from benchmark.suite import run_suite


def write_suite(tmp_path, mlflow_uri, tasks, models, seeds=(0,)):
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "tasks": tasks,
                "models": list(models),
                "seeds": list(seeds),
                "model": {"hidden_size": 6},
                "train": {"batch_size": 32, "max_epochs": 1},
                "tracking": {"tracking_uri": mlflow_uri, "experiment": "suite-test"},
                "results_dir": str(tmp_path / "results"),
            }
        )
    )
    return path


TINY = {"seq_len": 8, "train_size": 64, "val_size": 32, "test_size": 32}


def statuses(mlflow_uri):
    """Statuses of the suite's runs (not of its parent run, kind=suite)."""
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("suite-test")
    return sorted(r.info.status for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(Tag.KIND) != RunKind.SUITE)


def test_suite_runs_resumes_and_summarises(tmp_path, mlflow_uri, capsys):
    path = write_suite(tmp_path, mlflow_uri, [{"name": "adding", **TINY}], ["gru", "lstm"], seeds=(0, 1))
    assert main(["suite", str(path)]) == 0
    assert statuses(mlflow_uri) == ["FINISHED"] * 4
    out = capsys.readouterr().out
    assert "4 to run" in out

    rows = list(csv.DictReader(open(tmp_path / "results/tiny/summary.csv")))
    assert [(r["task"], r["model"], r["n"]) for r in rows] == [("adding[seq_len=8]", "gru", "2"), ("adding[seq_len=8]", "lstm", "2")]
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("suite-test")
    gru_mse = [r.data.metrics[record.on_test("mse")] for r in client.search_runs([exp.experiment_id], f"tags.{Tag.MODEL} = 'gru'")]
    assert float(rows[0]["mean"]) == sum(gru_mse) / 2
    assert float(rows[0]["baseline"]) == 1 / 6
    assert "mean ± sample std over n seeds" in (tmp_path / "results/tiny/summary.md").read_text()

    # A killed process leaves its run RUNNING: on resume it is marked KILLED and redone; finished runs are skipped.
    suite = load_suite_config(path)
    victim = suite.runs()[0]
    finished = client.search_runs([exp.experiment_id], f"tags.{Tag.RUN_KEY} = '{victim.run_key()}'")[0]
    client.delete_run(finished.info.run_id)
    client.create_run(exp.experiment_id, tags={Tag.RUN_KEY: victim.run_key()})  # left RUNNING, no kind tag (old runs had none)
    outcome = run_suite(suite, Console(quiet=True))
    assert outcome.skipped == 3 and len(outcome.executed) == 1
    assert outcome.executed[0].model == victim.model.name and outcome.executed[0].seed == victim.seed
    assert statuses(mlflow_uri) == ["FINISHED"] * 4 + ["KILLED"]
    assert [r.n for r in outcome.summary.rows] == [2, 2]

    # Nothing left to do: a rerun executes nothing.
    assert run_suite(suite, Console(quiet=True)).executed == []


def test_failing_run_is_recorded_and_the_suite_goes_on(tmp_path, mlflow_uri, diverging_task):
    tasks = [{"name": "adding", **TINY}, {"name": diverging_task, **TINY}]
    path = write_suite(tmp_path, mlflow_uri, tasks, ["gru"])
    outcome = run_suite(load_suite_config(path), Console(quiet=True))
    assert [r.status for r in outcome.executed] == ["FINISHED", "FAILED"]
    assert statuses(mlflow_uri) == ["FAILED", "FINISHED"]
    failed_row = next(r for r in outcome.summary.rows if r.task.startswith(diverging_task))
    assert failed_row.n == 0 and failed_row.missing == 1
    assert "1 missing" in outcome.summary.markdown("t")
    # failed runs are retried on resume, finished ones are not
    again = run_suite(load_suite_config(path), Console(quiet=True))
    assert [r.label.split("[")[0] for r in again.executed] == [diverging_task]


def test_parallel_jobs_give_the_same_results_as_one_at_a_time(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, mlflow_uri, [{"name": "adding", **TINY}], ["gru", "lstm", "rnn"])
    sequential = run_suite(load_suite_config(path, ["tracking.experiment=one"]), Console(quiet=True))
    parallel = run_suite(load_suite_config(path, ["tracking.experiment=two", "jobs=2"]), Console(quiet=True))
    assert len(parallel.executed) == 3 and all(r.status == "FINISHED" for r in parallel.executed)
    by_model = lambda outcome: {r.model: r.metrics[record.on_test("mse")] for r in outcome.executed}  # noqa: E731
    assert by_model(parallel) == by_model(sequential)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("two").experiment_id], f"tags.{Tag.KIND} = '{RunKind.RUN}'")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
    assert {r.data.tags[Tag.SUITE_JOBS] for r in runs} == {"2"}


def test_summary_and_report_count_the_same_runs(tmp_path, mlflow_uri):
    """A cell finished twice (a duplicate start): both the summary and the report count the later run."""
    path = write_suite(tmp_path, mlflow_uri, [{"name": "adding", **TINY}], ["gru"])
    suite = load_suite_config(path)
    first = run_suite(suite, Console(quiet=True)).executed[0]
    client = MlflowClient(mlflow_uri)
    old = client.get_run(first.run_id)
    tags = {k: v for k, v in old.data.tags.items() if not k.startswith("mlflow.")}
    later = record.create_run(client, old.info.experiment_id, record.RunKind.RUN, "duplicate", tags)
    client.log_metric(later, record.on_test("mse"), 0.123)
    record.end_run(client, later, record.FINISHED)

    summary = run_suite(suite, Console(quiet=True)).summary
    assert summary.rows[0].values == [0.123]
    from benchmark.report import build_report

    build_report(mlflow_uri, "suite-test", tmp_path / "report")
    models = list(csv.DictReader(open(tmp_path / "report" / "models.csv")))
    assert [float(r["center"]) for r in models] == pytest.approx([0.123])  # a geometric mean of one value (exp log)
    excluded = list(csv.DictReader(open(tmp_path / "report" / "excluded_runs.csv")))
    assert [(r["run_id"], r["status"]) for r in excluded] == [(first.run_id, record.FINISHED)]
