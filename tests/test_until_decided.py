"""``rnnbench suite --until-decided``: seeds added only where undecided, resumable after kill -9, and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmark import record, tracking
from benchmark.cli import main
from benchmark.decide.design import Design
from benchmark.record import ExperimentTag, RunKind, Tag
from tests.conftest import REPO_ROOT

TINY = {"name": "adding", "seq_len": 8, "train_size": 256, "val_size": 32, "test_size": 32}


def write_suite(tmp_path, mlflow_uri, **extra) -> str:
    data = {
        "name": "seq",
        "tasks": [TINY],
        "models": ["gru", "lstm"],
        "seeds": [0, 1, 2],
        "model": {"hidden_size": 6},
        "train": {"batch_size": 32, "max_epochs": 2, "cpu_threads": 1},
        "tracking": {"tracking_uri": mlflow_uri, "experiment": "seq"},
        "results_dir": str(tmp_path / "results"),
        **extra,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["report.margins.mse=-0.1"], "report.margins.mse: a margin cannot be negative (got -0.1)"),
        (["--until-decided", "--max-seeds", "2"], "--max-seeds (max_seeds) 2 is below the planned seed count 3"),
        (["report.margins.accuracy=0.01"], "report.margins.accuracy: no task here has a metric 'accuracy'. Metrics: mse"),
        (["report.margins.adding.accuracy=0.01"], "report.margins.adding.accuracy: task 'adding' has no metric 'accuracy'"),
        (["--max-seeds", "6"], "--max-seeds (max_seeds=6) applies only with --until-decided"),
        (["--until-decided", "models=[gru,bilstm]"], "hold no GRU and LSTM variant of the same layers and direction"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_store(args, message, tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    path = write_suite(tmp_path, f"sqlite:///{db}")
    assert main(["suite", path, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: ") and err.count("\n") == 1 and message in err, err
    assert not db.exists()  # nothing was created


def finished_seeds(uri: str) -> pd.DataFrame:
    client = tracking.client(uri)  # takes turns with the suite while it creates the store
    exp = client.get_experiment_by_name("seq")
    if exp is None:  # the suite has not made it yet
        return pd.DataFrame(columns=["model", "seed", "status", "key", "run_id", "parent"])
    runs = client.search_runs([exp.experiment_id], f"tags.{Tag.KIND} = '{RunKind.RUN}'", max_results=1000)
    return pd.DataFrame(
        [{"model": r.data.tags[Tag.MODEL], "seed": int(r.data.tags[Tag.SEED]), "status": r.info.status,
          "key": r.data.tags[Tag.RUN_KEY], "run_id": r.info.run_id, "parent": r.data.tags.get(Tag.PARENT_RUN)}
         for r in runs]  # fmt: skip
    )


def test_until_decided_resumes_after_kill_9_without_duplicating_seeds(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, mlflow_uri)
    command = [sys.executable, "-m", "benchmark", "suite", path, "--until-decided", "--max-seeds", "6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "500"}
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    victim = None
    try:
        deadline = time.time() + 900  # a loaded 2-core machine takes minutes for the first look
        while time.time() < deadline and first.poll() is None:
            time.sleep(0.5)  # every poll reads the SQLite store the suite writes: not too often
            if not (tmp_path / "mlflow.db").exists():
                continue
            runs = finished_seeds(mlflow_uri)
            added = runs[runs.seed >= 3] if len(runs) else runs
            if len(added):  # seeds are being added: kill the whole process group, no clean-up
                os.killpg(first.pid, signal.SIGKILL)
                # a run of a second or less can finish between two polls: kill -9 then lands on the next
                # added seed, and the victim we check is a running one where the poll saw any
                running = added[added.status == record.RUNNING]
                victim = (running if len(running) else added).run_id.iloc[0]
                break
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert victim is not None, f"the suite finished or stalled before it added a seed:\n{log.read_text()[-3000:]}"
    left_running = finished_seeds(mlflow_uri).set_index("run_id").status[victim] == record.RUNNING

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "6 already finished in MLflow" in second.stdout  # the planned seeds are not run again

    runs = finished_seeds(mlflow_uri)
    done = runs[runs.status == record.FINISHED]
    assert not done.key.duplicated().any() and not done[["model", "seed"]].duplicated().any()
    if left_running:  # the killed run was reaped on resume, and its seed trained again
        assert runs.set_index("run_id").status[victim] == record.KILLED
    design = Design.from_json(MlflowClient(mlflow_uri).get_experiment_by_name("seq").tags[ExperimentTag.DESIGN])
    assert design.looks == (3, 6)
    both = set(done[done.model == "gru"].seed) & set(done[done.model == "lstm"].seed)
    assert len(both) in design.looks and set(done.seed) == both  # every pair stopped at a look, on the same seeds
    assert sorted(both) == list(range(len(both)))  # the added seeds follow the planned ones: 3, 4, 5
    client = MlflowClient(mlflow_uri)
    parents = client.search_runs([client.get_experiment_by_name("seq").experiment_id], f"tags.{Tag.KIND} = '{RunKind.SUITE}'")
    assert len(parents) == 1 and set(runs.parent) == {parents[0].info.run_id}  # one suite run, however resumed or extended

    # the report, from MLflow alone, reaches the decisions the suite printed
    from benchmark.report import build_report

    build_report(mlflow_uri, "seq", tmp_path / "report")
    decisions = pd.read_csv(tmp_path / "report" / "decisions.csv")
    assert len(decisions) == 2  # gru vs lstm on mse and on throughput
    for d in decisions.itertuples():
        assert f"{d.task_label}, {d.pair}, {d.question}: {d.reason}" in second.stdout
        assert d.verdict != "undecided" or d.n == design.looks[-1]  # undecided only once the last look is reached
    summary = pd.read_csv(tmp_path / "results" / "seq" / "summary.csv")
    assert summary.n.tolist() == [len(both), len(both)]


def test_margins_and_design_reach_the_report(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, mlflow_uri, seeds=[0, 1], report={"margins": {"mse": 0.5}}, train={"max_epochs": 1})
    assert main(["suite", path]) == 0
    tags = MlflowClient(mlflow_uri).get_experiment_by_name("seq").tags
    assert tags[ExperimentTag.MARGINS] == '{"mse": 0.5}' and ExperimentTag.DESIGN not in tags
    from benchmark.report import build_report

    build_report(mlflow_uri, "seq", tmp_path / "r")
    decisions = pd.read_csv(tmp_path / "r" / "decisions.csv").set_index("question")
    assert decisions.margin["main metric"] == 0.5 and decisions.margin["training throughput"] == 0.05
    assert decisions.design["main metric"].startswith("fixed sample")
    assert "adding: mse ±50 %, throughput ±5 % (the suite's report.margins)" in (tmp_path / "r" / "report.md").read_text()
    build_report(mlflow_uri, "seq", tmp_path / "r2", margins={"mse": 0.25})  # --margin overrides the suite's
    assert pd.read_csv(tmp_path / "r2" / "decisions.csv").margin.iloc[0] == 0.25
    assert main(["report", "--experiment", "seq", "--tracking-uri", mlflow_uri, "--margin", "accuracy=0.02"]) == 2
    assert main(["report", "--experiment", "seq", "--tracking-uri", mlflow_uri, "--interval", "jackknife"]) == 2
    build_report(mlflow_uri, "seq", tmp_path / "r3", interval="bootstrap")  # 2 seeds: the t-interval, said so
    assert set(pd.read_csv(tmp_path / "r3" / "models.csv").interval) == {"t"}
    run = MlflowClient(mlflow_uri).search_runs([MlflowClient(mlflow_uri).get_experiment_by_name("seq").experiment_id],
                                               f"tags.{Tag.KIND} = '{RunKind.RUN}'")[0]
    assert (run.data.tags[record.metric_scale("mse")], run.data.tags[record.metric_range("mse")]) == ("ratio", "(0, inf)")


def test_the_repository_default_suite_runs_until_decided():
    raw = yaml.safe_load((REPO_ROOT / "configs" / "suites" / "default.yaml").read_text())
    assert raw.get("until_decided") is True and raw["max_seeds"] > len(raw["seeds"])
