"""Sweeps: real Optuna storages (SQLite, PostgreSQL), real MLflow stores, tiny synthetic studies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from benchmark import record
from benchmark.cli import main
from benchmark.config import ConfigError
from benchmark.record import RunKind, StudyMetric, Tag
from benchmark.sweep import load_sweep_config, run_sweep, tuned_suite
from benchmark.sweep.studies import TrialAttr, open_storage
from tests.conftest import REPO_ROOT

TINY_TASK = {"name": "adding", "seq_len": 8, "train_size": 128, "val_size": 32, "test_size": 32}


def write_sweep(tmp_path, mlflow_uri, **fields) -> str:
    cfg = {
        "name": "tiny",
        "tasks": [TINY_TASK],
        "models": ["gru"],
        "n_trials": 3,
        "model": {"hidden_size": 8},
        "train": {"batch_size": 32, "max_epochs": 2},
        "tracking": {"tracking_uri": mlflow_uri, "experiment": "sweep-test"},
        "storage_dir": str(tmp_path / "optuna"),
        "search_space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        **fields,
    }
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def trials_of(sweep, study_name: str):
    """The study's trials, opened as the workers open it: a poll while a worker is still creating the storage
    takes the same create-or-retry path instead of racing it on the tables."""
    return optuna.load_study(study_name=study_name, storage=open_storage(sweep)).get_trials()


def child_runs(mlflow_uri: str, parent_id: str):
    mlflow = MlflowClient(mlflow_uri)
    exp = mlflow.get_run(parent_id).info.experiment_id
    return mlflow.search_runs([exp], f"tags.`{Tag.PARENT_RUN}` = '{parent_id}'")


def assert_exact_target(sweep, study_name: str, mlflow_uri: str, parent_id: str) -> list:
    """Exactly n_trials finished, nothing RUNNING/WAITING, one distinct MLflow child per trial that ran."""
    trials = trials_of(sweep, study_name)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == sweep.n_trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    ran = [t for t in trials if not t.user_attrs.get(TrialAttr.SURPLUS)]
    run_ids = [t.user_attrs[TrialAttr.RUN_ID] for t in ran]
    assert len(set(run_ids)) == len(ran)
    children = {r.info.run_id: r for r in child_runs(mlflow_uri, parent_id)}
    assert set(children) == set(run_ids)
    for t in ran:
        assert children[t.user_attrs[TrialAttr.RUN_ID]].data.tags[Tag.TRIAL_NUMBER] == str(t.number)
    return trials


def test_sweep_nests_one_run_per_trial_and_feeds_the_tuned_suite(tmp_path, mlflow_uri):
    path = write_sweep(
        tmp_path,
        mlflow_uri,
        models=["gru", "lstm"],
        search_space={
            "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
            "model.forget_bias": {"type": "float", "low": 0.0, "high": 2.0, "when": {"cell": "lstm"}},
        },
        seeds=[1],
    )
    sweep = load_sweep_config(path)
    outcomes = run_sweep(sweep)
    mlflow = MlflowClient(mlflow_uri)
    assert len(outcomes) == 2
    for o in outcomes:
        assert o.reached_target and o.complete == 3
        trials = assert_exact_target(sweep, o.plan.name, mlflow_uri, o.parent_run_id)
        for t in trials:  # the child's logged config is the trial's sampled params
            child = mlflow.get_run(t.user_attrs[TrialAttr.RUN_ID])
            for key, value in t.params.items():
                assert float(child.data.params[key]) == pytest.approx(value)
            assert ("model.forget_bias" in t.params) == (o.plan.model == "lstm")
            assert child.info.run_name == f"{o.plan.model} · trial {t.number}"
        parent = mlflow.get_run(o.parent_run_id)
        assert parent.data.tags[Tag.KIND] == RunKind.SWEEP and parent.data.tags[Tag.MODEL] == o.plan.model
        assert parent.info.run_name == f"{o.plan.model} · adding · sweep tiny"
        assert o.plan.name in parent.data.tags[Tag.NOTE]
        assert parent.info.status == "FINISHED"
        best = min((t for t in trials if t.value is not None), key=lambda t: t.value)
        assert parent.data.metrics[StudyMetric.BEST_VALUE] == pytest.approx(best.value)
        assert {k: float(v) for k, v in parent.data.params.items() if k.startswith("best.")} == pytest.approx(
            {f"best.{k}": v for k, v in best.params.items()}
        )
        artifacts = {a.path for a in mlflow.list_artifacts(o.parent_run_id, "plots")}
        assert artifacts == {f"plots/{n}.png" for n in ("optimization_history", "intermediate_values", "param_importances")}
        local = mlflow.download_artifacts(o.parent_run_id, record.IMPORTANCES_ARTIFACT, str(tmp_path))
        assert set(yaml.safe_load(open(local))) == set(best.params)

    # a rerun has nothing left to do: still exactly the target
    assert main(["sweep", path]) == 0
    assert all(len(trials_of(sweep, o.plan.name)) == 3 for o in outcomes)

    # the best config of each study, rerun on fresh seeds as an ordinary suite
    suite, runs = tuned_suite(sweep)
    assert [r.seed for r in runs] == [1, 1]
    for run, o in zip(runs, outcomes):
        assert run.train.lr == pytest.approx(o.best_params["train.lr"])
    assert main(["suite", "--from-sweep", path, "seeds=[1]"]) == 0
    query = f"tags.{Tag.SUITE} = 'tiny-tuned' and tags.{Tag.KIND} = 'run'"  # the suite's parent run has kind=suite
    tuned = mlflow.search_runs([mlflow.get_run(outcomes[0].parent_run_id).info.experiment_id], query)
    assert len(tuned) == 2 and all(r.info.status == "FINISHED" for r in tuned)
    with pytest.raises(ConfigError, match="fresh seeds"):
        tuned_suite(load_sweep_config(path, ["seeds=[0]"]))


def test_median_pruner_prunes_and_records_pruned_trials(tmp_path, mlflow_uri):
    path = write_sweep(
        tmp_path,
        mlflow_uri,
        n_trials=5,
        sampler={"name": "random"},
        pruner={"name": "median", "n_startup_trials": 1},
        train={"batch_size": 32, "max_epochs": 3},
        search_space={"train.lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
    )
    sweep = load_sweep_config(path)
    (o,) = run_sweep(sweep)
    trials = assert_exact_target(sweep, o.plan.name, mlflow_uri, o.parent_run_id)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and o.pruned == len(pruned)
    assert all(len(t.intermediate_values) < 3 for t in pruned)
    assert o.epochs == sum(len(t.intermediate_values) for t in trials) < 5 * 3
    mlflow = MlflowClient(mlflow_uri)
    for t in pruned:
        run = mlflow.get_run(t.user_attrs[TrialAttr.RUN_ID])
        assert run.info.status == "KILLED" and run.data.tags[Tag.TRIAL_STATE] == "PRUNED"


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, mlflow_uri):
    path = write_sweep(
        tmp_path,
        mlflow_uri,
        n_trials=2,
        sampler={"name": "random"},
        pruner="none",
        train={"batch_size": 32, "max_epochs": 2, "optimizer": "sgd", "grad_clip": None, "nan_check_every": 1},
        search_space={"train.lr": {"type": "categorical", "choices": [1.0e8, 1.0e-2]}},
    )
    sweep = load_sweep_config(path)
    (o,) = run_sweep(sweep)
    trials = assert_exact_target(sweep, o.plan.name, mlflow_uri, o.parent_run_id)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and o.failed == len(failed), "seed 0 draws 0.01, 1e8, 0.01"
    mlflow = MlflowClient(mlflow_uri)
    for t in failed:
        assert t.params["train.lr"] == 1e8 and "non-finite" in t.user_attrs[TrialAttr.FAILURE]
        run = mlflow.get_run(t.user_attrs[TrialAttr.RUN_ID])
        assert run.info.status == "FAILED" and "non-finite" in run.data.tags[Tag.FAILURE_REASON]


def test_killed_worker_trial_goes_stale_and_the_rerun_reaches_the_target(tmp_path, mlflow_uri):
    path = write_sweep(
        tmp_path,
        mlflow_uri,
        pruner="none",
        heartbeat_interval=1,
        grace_period=3,
        train={"batch_size": 32, "max_epochs": 30},  # long enough that the kill lands mid-trial
    )
    sweep = load_sweep_config(path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "benchmark", "sweep", path], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    study_name = "tiny/adding[seq_len=8]/gru"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:  # kill it once a trial is training (its MLflow run id recorded)
            try:
                running = [t for t in trials_of(sweep, study_name) if t.state == TrialState.RUNNING]
            except (KeyError, OperationalError):  # the worker has not made the storage or the study yet
                running = []
            if running and TrialAttr.RUN_ID in running[0].user_attrs:
                break
            assert worker.poll() is None, "the worker ended before it was killed"
            time.sleep(0.2)
        else:
            pytest.fail("no trial started within 180 s")
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    killed = running[0]

    (o,) = run_sweep(sweep)
    trials = assert_exact_target(sweep, study_name, mlflow_uri, o.parent_run_id)
    stale = trials_of(sweep, study_name)[killed.number]
    assert stale.state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state == TrialState.COMPLETE
    run = MlflowClient(mlflow_uri).get_run(killed.user_attrs[TrialAttr.RUN_ID])
    assert run.info.status == "KILLED" and "heartbeat" in run.data.tags[Tag.FAILURE_REASON]


def _two_workers(tmp_path, mlflow_uri, storage: str | None = None):
    path = write_sweep(tmp_path, mlflow_uri, n_trials=4, pruner="none", heartbeat_interval=2)
    sweep = load_sweep_config(path)
    if storage:
        sweep = sweep.model_copy(update={"storage": storage})
    (o,) = run_sweep(sweep, workers=2)
    assert o.reached_target
    trials = assert_exact_target(sweep, o.plan.name, mlflow_uri, o.parent_run_id)
    assert [t.number for t in trials] == list(range(len(trials)))  # no number handed out twice


def test_two_workers_on_sqlite_lose_and_duplicate_nothing(tmp_path, mlflow_uri):
    _two_workers(tmp_path, mlflow_uri)


@pytest.fixture
def postgres_url(postgres):
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{postgres.create(f'rnnbench_sweep_{uuid.uuid4().hex[:12]}')}"


def test_two_workers_on_postgresql_lose_and_duplicate_nothing(tmp_path, mlflow_uri, postgres_url):
    _two_workers(tmp_path, mlflow_uri, postgres_url)


@pytest.mark.parametrize(
    "space, message",
    [
        ({"train.lrr": {"type": "float", "low": 0.1, "high": 1}}, "'train.lrr' is not a tunable key. Did you mean 'train.lr'?"),
        ({"model.name": {"type": "categorical", "choices": ["gru"]}}, "'model.name' is not a tunable key"),
        ({"train.lr": {"type": "flaot", "low": 0.1, "high": 1}}, "needs a 'type', one of: float, int, categorical"),
        ({"train.lr": {"type": "float", "low": 1, "high": 0.1}}, "low (1.0) must not exceed high (0.1)"),
        ({"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "a log scale needs low > 0"),
        ({"train.lr": {"type": "float", "low": 0.1, "hihg": 1}}, "unknown field 'hihg'. Did you mean 'high'?"),
        ({"train.lr": {"type": "float", "low": 0.1}}, "missing required field 'high'"),
        ({"model.dropout": {"type": "float", "low": 0.0, "high": 1.5}}, "'search_space.model.dropout': value 1.5 is out of range"),
        ({"train.optimizer": {"type": "categorical", "choices": ["adam", "lion"]}}, "value 'lion' is out of range"),
        ({"train.lr": {"type": "float", "low": 0.1, "high": 1, "when": {"cel": "lstm"}}}, "unknown condition key 'cel'. Did you mean 'cell'?"),
        ({}, "'search_space' must be a non-empty mapping"),
    ],
)
def test_bad_search_space_is_one_clear_error(tmp_path, mlflow_uri, space, message):
    path = write_sweep(tmp_path, mlflow_uri, search_space=space)
    with pytest.raises(ConfigError) as e:
        load_sweep_config(path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["pruner={name: median, min_resource: 3}"], "Valid keys: pruner.name, pruner.n_startup_trials, pruner.n_warmup_steps"),
        (["pruner.min_resource=3"], "unknown key 'pruner.min_resource'"),  # the default pruner is median
        (["pruner={name: median, n_warmup_step: 2}"], "Did you mean 'pruner.n_warmup_steps'?"),
        (["pruner={name: hyperband, reduction_factor: 1}"], "invalid value for 'pruner.reduction_factor'"),
        (["pruner={name: none, n_startup_trials: 2}"], "unknown key 'pruner.n_startup_trials'."),
        (["sampler={name: random, n_startup_trials: 3}"], "unknown key 'sampler.n_startup_trials'"),
        (["pruner={name: medain}"], "unknown pruner 'medain'. Did you mean 'median'?"),
        (["pruner={name: hyperband, min_early_stopping_rate: 1}"], "unknown key 'pruner.min_early_stopping_rate'"),
        (["pruner={name: plateau, inner: {name: median, min_resource: 1}}"], "unknown key 'pruner.inner.min_resource'"),
        (["pruner={name: patient, inner: medain}"], "unknown pruner 'medain'. Did you mean 'median'?"),
        (["pruner={name: plateau, tol: -0.1}"], "invalid value for 'pruner.tol'"),
        (["pruner={name: patient, inner: threshold}"], "pruner.inner: threshold needs pruner.inner.lower, pruner.inner.upper or both"),
        (["pruner={name: successive_halving, min_resource: 1}"], "pruner.min_resource=1: the first rung must come before the last epoch"),
    ],
)
def test_each_pruner_and_sampler_has_its_own_options(tmp_path, mlflow_uri, capsys, overrides, message):
    path = write_sweep(tmp_path, mlflow_uri)
    assert main(["sweep", path, *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "optuna").exists()  # stopped before any storage was made


def test_pruner_options_survive_the_trip_to_worker_processes(tmp_path, mlflow_uri):
    six = "train.max_epochs=6"  # room for a rung before the last epoch
    sweep = load_sweep_config(write_sweep(tmp_path, mlflow_uri), ["pruner={name: hyperband, min_resource: 2}", "sampler=random", six])
    again = type(sweep).model_validate_json(sweep.model_dump_json())  # what a local worker receives
    assert (again.pruner.name, again.pruner.min_resource, again.pruner.reduction_factor) == ("hyperband", 2, 3)
    assert again.sampler.name == "random" and again == sweep
    assert load_sweep_config(write_sweep(tmp_path, mlflow_uri), ["pruner=hyperband", six]).pruner.min_resource == 1
    nested = load_sweep_config(write_sweep(tmp_path, mlflow_uri), ["pruner={name: plateau, max_wait: 3, inner: {name: patient, inner: hyperband}}", six])
    again = type(nested).model_validate_json(nested.model_dump_json())
    assert again == nested and (again.pruner.inner.name, again.pruner.inner.inner.name) == ("patient", "hyperband")


def test_bad_sweep_settings_exit_2(tmp_path, mlflow_uri, capsys):
    path = write_sweep(tmp_path, mlflow_uri)
    assert main(["sweep", path, "pruner=medain"]) == 2
    assert "unknown pruner 'medain'. Did you mean 'median'?" in capsys.readouterr().err
    assert main(["sweep", path, "--storage", "not a url"]) == 2
    assert "is not a database URL" in capsys.readouterr().err
    assert main(["suite", "--from-sweep", path]) == 2  # nothing swept yet
    assert "run the sweep first" in capsys.readouterr().err
