"""Optuna sweeps: one study per (task setting, model), the same budget and sampler seed for each.

    rnnbench sweep configs/sweeps/default.yaml
    rnnbench sweep configs/sweeps/default.yaml --workers 2
    rnnbench sweep configs/sweeps/default.yaml --storage postgresql://postgres@db-host/optuna  # on each machine
    rnnbench suite --from-sweep configs/sweeps/default.yaml seeds=[1,2,3]

A trial is an ordinary run (``execute_run``) nested under its study's MLflow parent run. A study
runs until it holds ``n_trials`` finished (COMPLETE or PRUNED) trials, however many workers,
machines or reruns it takes: a worker starts a trial only while finished + running + waiting
trials are fewer than the target, and a trial that finds the target already reserved by trials
numbered before it ends at once (FAIL, user attr ``surplus``) without training. Killed workers
are found by the RDB storage's heartbeat; their trials are failed, re-queued with the same
params (``RetryHeartbeatStaleTrialCallback``) and their MLflow runs marked KILLED.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState
from pydantic import Field, field_validator, model_validator
from rich.console import Console
from rich.markup import escape

from benchmark import tracking
from benchmark.config import (
    ConfigError,
    ModelConfig,
    RunConfig,
    Section,
    SuiteConfig,
    SuiteTask,
    TrackingConfig,
    TrainConfig,
    _validate,
    apply_overrides,
    flatten,
    load_yaml,
)
from benchmark.registry import Registry
from benchmark.search_space import SearchSpace, apply_params

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

# ----------------------------------------------------------------------------- config


class SamplerConfig(Section):
    name: str = "tpe"
    n_startup_trials: int = Field(10, ge=0, description="tpe: random trials before the model kicks in")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data):
        return {"name": data} if isinstance(data, str) else data


class PrunerConfig(Section):
    name: str = "median"
    n_startup_trials: int = Field(5, ge=0, description="median: trials finished before any is pruned")
    n_warmup_steps: int = Field(0, ge=0, description="median: epochs a trial always gets")
    min_resource: int = Field(1, gt=0, description="hyperband: epochs every trial gets")
    reduction_factor: int = Field(3, ge=2, description="hyperband")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data):
        return {"name": data} if isinstance(data, str) else data


SAMPLERS: Registry = Registry("sampler")
SAMPLERS.register("tpe", lambda c, seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=c.n_startup_trials))
SAMPLERS.register("random", lambda c, seed: optuna.samplers.RandomSampler(seed=seed))

PRUNERS: Registry = Registry("pruner")
PRUNERS.register("median", lambda c, epochs: optuna.pruners.MedianPruner(c.n_startup_trials, c.n_warmup_steps))
PRUNERS.register(
    "hyperband",
    lambda c, epochs: optuna.pruners.HyperbandPruner(c.min_resource, epochs, reduction_factor=c.reduction_factor),
)
PRUNERS.register("none", lambda c, epochs: optuna.pruners.NopPruner())


class SweepConfig(Section):
    """Studies for tasks x models; each trial is a run of the shared sections plus sampled values."""

    name: str
    tasks: list[SuiteTask] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    seed: int = Field(0, description="training seed of every trial")
    seeds: list[int] = Field([1, 2, 3], min_length=1, description="suite --from-sweep: seeds for the best configs")
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    n_trials: int = Field(20, gt=0, description="finished (complete or pruned) trials per study")
    max_failures: int | None = Field(None, gt=0, description="give a study up after this many failed trials")
    sampler: SamplerConfig = SamplerConfig()
    sampler_seed: int = 0
    pruner: PrunerConfig = PrunerConfig()
    storage: str | None = Field(None, description="an SQLAlchemy URL; default sqlite:///<storage_dir>/<name>.db")
    storage_dir: str = "optuna"
    heartbeat_interval: int = Field(10, gt=0, description="seconds between a running trial's heartbeats")
    grace_period: int | None = Field(None, gt=0, description="silence after which a trial is stale (2 x interval)")
    max_retry: int = Field(2, ge=0, description="re-runs of a trial whose worker died")
    search_space: dict[str, Any]
    results_dir: str = "results"

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or v.strip() != v:
            raise ValueError("must be non-empty, without '/' or surrounding spaces")
        return v

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.storage_dir) / self.name}.db"

    def space(self) -> SearchSpace:
        return SearchSpace.parse(self.search_space)

    def as_suite(self, name: str, seeds: list[int]) -> SuiteConfig:
        """The same tasks, models and shared sections as an ordinary suite (train overrides merged there)."""
        return SuiteConfig(
            name=name,
            tasks=self.tasks,
            models=self.models,
            seeds=seeds,
            model=self.model,
            train=self.train,
            tracking=self.tracking,
            results_dir=self.results_dir,
        )


def load_sweep_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    sweep = _validate(SweepConfig, apply_overrides(load_yaml(path), list(overrides)))
    SAMPLERS.get(sweep.sampler.name), PRUNERS.get(sweep.pruner.name)
    space = sweep.space()
    for plan in plan_studies(sweep):
        space.check(plan.base)
    return sweep


# ----------------------------------------------------------------------------- studies


@dataclass
class StudyPlan:
    name: str  # <sweep>/<task label>/<model>
    label: str
    model: str
    facts: dict[str, Any]  # the variant's cell, layers, bidirectional: what `when:` conditions may name
    base: RunConfig  # the run config before sampled values are applied
    main_metric: str
    higher_is_better: bool

    @property
    def direction(self) -> str:
        return "maximize" if self.higher_is_better else "minimize"


def plan_studies(sweep: SweepConfig) -> list[StudyPlan]:
    from benchmark.models import MODELS
    from benchmark.task import create_task

    plans, specs = [], {}
    for base in sweep.as_suite(sweep.name, [sweep.seed]).runs():
        task = create_task(base.task.name, **base.task.options)
        key = json.dumps(base.task.model_dump(mode="json"), sort_keys=True)
        if key not in specs:  # spec() may be costly for data-backed tasks: once per task setting
            specs[key] = task.spec()
        main = specs[key].metric(specs[key].main_metric)
        variant = MODELS.get(base.model.name)
        facts = {
            "cell": variant.cell,
            "layers": base.model.num_layers or variant.num_layers,
            "bidirectional": variant.bidirectional if base.model.bidirectional is None else base.model.bidirectional,
        }
        plans.append(
            StudyPlan(
                f"{sweep.name}/{task.label}/{base.model.name}",
                task.label,
                base.model.name,
                facts,
                base,
                main.name,
                main.higher_is_better,
            )
        )
    names = Counter(p.name for p in plans)
    if dupes := [n for n, c in names.items() if c > 1]:
        raise ConfigError(f"two sweep entries share the study '{dupes[0]}': give their tasks different settings")
    return plans


def open_storage(sweep: SweepConfig, stale_callback=None) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats (Optuna's journal storage has none, so it cannot find dead workers)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    url = sweep.storage_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"storage '{url}' is not a database URL (sqlite:///path.db, postgresql://user@host/db, ...)"
        ) from None
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # concurrent local workers wait for the lock
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5, and exactly what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=sweep.heartbeat_interval,
                grace_period=sweep.grace_period,
                heartbeat_stale_trial_callback=stale_callback,
            )
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise ConfigError(f"cannot open storage '{safe_url(url)}': {str(e).splitlines()[0]}") from None


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _config_hash(plan: StudyPlan, space: SearchSpace) -> str:
    return _hash({"run": plan.base.run_key(), "space": space.to_dict()})


def _hash(payload: Any) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_study(sweep: SweepConfig, plan: StudyPlan, storage, mlflow, exp_id: str) -> str:
    """Create or load the study and its MLflow parent run; returns the parent run's id."""
    study = optuna.create_study(storage=storage, study_name=plan.name, direction=plan.direction, load_if_exists=True)
    space = sweep.space()
    expected = _config_hash(plan, space)
    found = study.user_attrs.get("config_hash")
    if found is None:
        study.set_user_attr("config_hash", expected)
    elif found != expected:
        raise ConfigError(
            f"study '{plan.name}' in {safe_url(sweep.storage_url())} was made with another run config or search "
            "space (or a version of rnnbench with other config defaults); resuming it would mix trials. "
            "Use another sweep name or storage"
        )
    if study.direction.name.lower() != plan.direction:
        raise ConfigError(f"study '{plan.name}' exists with direction {study.direction.name.lower()}")
    tags = {
        "kind": "sweep",
        "sweep": sweep.name,
        "study_name": plan.name,
        "task": plan.base.task.name,
        "task_label": plan.label,
        "model": plan.model,
        "cell": plan.facts["cell"],
        "main_metric": plan.main_metric,
        "higher_is_better": str(plan.higher_is_better).lower(),
        "n_trials": str(sweep.n_trials),
        "sampler": sweep.sampler.name,
        "sampler_seed": str(sweep.sampler_seed),
        "pruner": sweep.pruner.name,
        "storage": safe_url(sweep.storage_url()),
    }
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is not None and _run_exists(mlflow, parent):
        mlflow.update_run(parent, status="RUNNING")
        mlflow.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
        return parent
    run = mlflow.create_run(exp_id, run_name=plan.name, tags=tags)
    params = flatten(plan.base.model_dump(mode="json")) | {"search_space": json.dumps(space.to_dict())}
    mlflow.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    # Machines starting together may each create a parent: all settle on the earliest one.
    query = f"tags.study_name = '{plan.name}' and tags.kind = 'sweep' and attributes.status = 'RUNNING'"
    racing = mlflow.search_runs([exp_id], filter_string=query)
    winner = min(racing, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
    if winner != run.info.run_id:
        mlflow.delete_run(run.info.run_id)
    study.set_user_attr("mlflow_parent_run_id", winner)
    return winner


def _run_exists(mlflow, run_id: str) -> bool:
    try:
        return mlflow.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


# ----------------------------------------------------------------------------- workers


class TrialFailed(RuntimeError):
    """A trial that could not produce a value; Optuna records it FAIL and the sweep goes on."""


class TrialProbe(Callback):
    """Puts the trial's MLflow run id in its user attrs as soon as training starts, and counts epochs."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.run_id, self.epochs = trial, None, 0

    def on_fit_start(self, trainer, pl_module):
        self.run_id = trainer.logger.run_id
        self.trial.set_user_attr("mlflow_run_id", self.run_id)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.epochs += 1


@dataclass
class Counts:
    finished: int = 0
    running: int = 0
    waiting: int = 0
    failures: int = 0  # trials that failed on their own (not surplus, not a dead worker)


def count_trials(study: optuna.Study) -> Counts:
    c = Counts()
    for t in study.get_trials(deepcopy=False):
        if t.state in FINISHED:
            c.finished += 1
        elif t.state == TrialState.RUNNING:
            c.running += 1
        elif t.state == TrialState.WAITING:
            c.waiting += 1
        elif t.state == TrialState.FAIL and "failure" in t.user_attrs:
            c.failures += 1
    return c


def kill_trial_runs(mlflow, exp_id: str, study_name: str, trial, reason: str) -> int:
    """Mark the MLflow runs of a dead trial KILLED: by the run id in its user attrs, else by its tags."""
    run_ids = [trial.user_attrs["mlflow_run_id"]] if "mlflow_run_id" in trial.user_attrs else []
    if not run_ids:
        query = f"tags.study_name = '{study_name}' and tags.trial_number = '{trial.number}'"
        run_ids = [r.info.run_id for r in mlflow.search_runs([exp_id], filter_string=query)]
    killed = 0
    for run_id in run_ids:
        if mlflow.get_run(run_id).info.status == "RUNNING":
            mlflow.set_tag(run_id, "failure_reason", reason)
            mlflow.set_tag(run_id, "trial_state", "FAIL")
            mlflow.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
            killed += 1
    return killed


class StaleTrialHandler:
    """Heartbeat-stale trial: its MLflow run is marked KILLED, then the trial is queued again."""

    def __init__(self, sweep: SweepConfig, console: Console, prefix: str):
        self.sweep, self.console, self.prefix = sweep, console, prefix
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=sweep.max_retry)

    def __call__(self, study: optuna.Study, trial) -> None:
        mlflow = tracking.client(self.sweep.tracking.tracking_uri)
        exp_id = tracking.experiment_id(mlflow, self.sweep.tracking.experiment)
        reason = "worker lost: no heartbeat within the grace period"
        kill_trial_runs(mlflow, exp_id, study.study_name, trial, reason)
        self.retry(study, trial)
        self.console.print(f"{self.prefix}[yellow]{escape(study.study_name)} trial {trial.number}: {reason}; queued again[/]")


def _sampler_seed(sweep: SweepConfig, worker: int, existing: int) -> int:
    """A fresh study swept by one worker is reproducible; other workers and resumed ones draw other numbers."""
    if worker == 0 and existing == 0:
        return sweep.sampler_seed
    return int(_hash([sweep.sampler_seed, worker, existing, platform.node(), os.getpid()]), 16) % 2**31


@dataclass
class TrialOutcome:
    number: int
    state: str
    value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    note: str = ""


def run_one_trial(sweep: SweepConfig, plan: StudyPlan, study: optuna.Study, parent_id: str) -> TrialOutcome:
    """Ask, train, tell: one trial of the study, recorded in Optuna and as a nested MLflow run."""
    from benchmark.runner import execute_run

    space = sweep.space()
    out = TrialOutcome(-1, "FAIL")

    def objective(trial: optuna.Trial) -> float:
        out.number = trial.number
        ahead = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state != TrialState.FAIL)
        if ahead >= sweep.n_trials:  # another worker reserved the last slot first
            trial.set_user_attr("surplus", True)
            out.state, out.note = "SURPLUS", "target already reserved by other trials"
            raise TrialFailed(out.note)
        trial.set_user_attr("worker", f"{platform.node()}:{os.getpid()}")
        out.params = space.sample(trial, plan.base, plan.facts)
        probe = TrialProbe(trial)
        pruning = _pruning_callback(trial, monitor=f"val/{plan.main_metric}")
        tags = {
            "mlflow.parentRunId": parent_id,
            "kind": "trial",
            "trial_number": str(trial.number),
            "study_name": plan.name,
            "sweep": sweep.name,
        }
        try:
            cfg = apply_params(plan.base, out.params)
            result = execute_run(cfg, extra_tags=tags, callbacks=[probe, pruning], passthrough=(optuna.TrialPruned,))
        except optuna.TrialPruned as e:
            out.state, out.epochs, out.note = "PRUNED", probe.epochs, str(e)
            _finish_trial(sweep, trial, probe.run_id, "PRUNED", probe.epochs)
            raise
        except Exception as e:  # raised before the run started (e.g. an impossible config): still a failed trial
            raise _fail(sweep, trial, out, probe, f"{type(e).__name__}: {e}")
        if result.status != "FINISHED":
            raise _fail(sweep, trial, out, probe, result.failure or result.status, result.run_id)
        value = result.metrics.get(f"best_val/{plan.main_metric}", float("nan"))
        if not math.isfinite(value):
            raise _fail(sweep, trial, out, probe, f"no finite val/{plan.main_metric}", result.run_id)
        out.state, out.value, out.epochs = "COMPLETE", value, probe.epochs
        trial.set_user_attr("mlflow_run_id", result.run_id)
        _finish_trial(sweep, trial, result.run_id, "COMPLETE", probe.epochs)
        return value

    study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=False)
    return out


def _pruning_callback(trial: optuna.Trial, monitor: str) -> Callback:
    from optuna_integration import PyTorchLightningPruningCallback  # uses the lightning.pytorch namespace

    class LastEpochKept(PyTorchLightningPruningCallback):
        """Optuna's callback, but the last epoch is only reported: pruning there saves nothing and loses the result."""

        def on_validation_end(self, trainer, pl_module):
            last = pl_module.current_epoch >= trainer.max_epochs - 1
            if not last or trainer.sanity_checking or self.is_ddp_backend:
                return super().on_validation_end(trainer, pl_module)
            if (score := trainer.callback_metrics.get(self.monitor)) is not None:
                self._trial.report(score.item(), step=pl_module.current_epoch)

    return LastEpochKept(trial, monitor)


def _finish_trial(sweep: SweepConfig, trial: optuna.Trial, run_id: str | None, state: str, epochs: int) -> None:
    trial.set_user_attr("epochs", epochs)
    if run_id:
        tracking.client(sweep.tracking.tracking_uri).set_tag(run_id, "trial_state", state)


def _fail(sweep, trial, out: TrialOutcome, probe: TrialProbe, reason: str, run_id: str | None = None) -> TrialFailed:
    """Record why the trial failed (user attr ``failure``, MLflow tag) and return the error to raise."""
    out.state, out.epochs, out.note = "FAIL", probe.epochs, reason
    trial.set_user_attr("failure", reason[:1000])
    _finish_trial(sweep, trial, run_id or probe.run_id, "FAIL", probe.epochs)
    return TrialFailed(reason)


def work(sweep: SweepConfig, worker: int = 0, console: Console | None = None) -> None:
    """One worker: trials for the first study short of its target, until every study has reached it.

    A study whose remaining slots are all taken by running trials is left to them; the worker
    moves on, and comes back to it while it polls for those trials to finish or go stale.
    """
    console = console or Console()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # outcomes are printed below, one line per trial
    with warnings.catch_warnings():  # heartbeats and stale-trial retries are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _work(sweep, worker, console)


def _work(sweep: SweepConfig, worker: int, console: Console) -> None:
    prefix = f"[dim]w{worker}[/] " if worker else ""
    storage = open_storage(sweep, StaleTrialHandler(sweep, console, prefix))
    limit = sweep.max_failures or sweep.n_trials
    pending = []
    for plan in plan_studies(sweep):
        study = optuna.load_study(study_name=plan.name, storage=storage)
        existing = len(study.get_trials(deepcopy=False))
        study.sampler = SAMPLERS.get(sweep.sampler.name)(sweep.sampler, _sampler_seed(sweep, worker, existing))
        study.pruner = PRUNERS.get(sweep.pruner.name)(sweep.pruner, plan.base.train.max_epochs)
        pending.append((plan, study, study.user_attrs["mlflow_parent_run_id"]))
    poll = min(5.0, sweep.heartbeat_interval)
    while pending:
        started = False
        for plan, study, parent_id in list(pending):
            optuna.storages.fail_stale_trials(study)
            c = count_trials(study)
            if c.finished >= sweep.n_trials or c.failures >= limit:
                pending.remove((plan, study, parent_id))
                continue
            if c.waiting or c.finished + c.running < sweep.n_trials:
                outcome = run_one_trial(sweep, plan, study, parent_id)
                _print_trial(console, prefix, plan, outcome, count_trials(study).finished, sweep)
                started = True
                break
        if pending and not started:
            time.sleep(poll)


def _print_trial(console: Console, prefix: str, plan: StudyPlan, o: TrialOutcome, done: int, sweep: SweepConfig) -> None:
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.params.items())
    colour = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "SURPLUS": "dim"}[o.state]
    value = f" val/{plan.main_metric}={o.value:.4g}" if o.value is not None else ""
    note = f" ({o.note})" if o.state in ("FAIL", "SURPLUS") else ""
    console.print(
        f"{prefix}{escape(plan.name)} \\[{done}/{sweep.n_trials}] trial {o.number}: [{colour}]{o.state}[/]{value} "
        f"after {o.epochs} epochs{escape(note)}  {escape(params)}"
    )


def _worker_process(sweep_json: str, worker: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        work(SweepConfig.model_validate_json(sweep_json), worker)
    except Exception:
        traceback.print_exc()
        raise SystemExit(1)


# ----------------------------------------------------------------------------- results


@dataclass
class StudyOutcome:
    plan: StudyPlan
    parent_run_id: str
    complete: int
    pruned: int
    failed: int
    epochs: int  # every epoch trained by the study's trials, pruned and failed ones included
    best_value: float | None
    best_params: dict[str, Any]
    reached_target: bool
    notes: list[str] = field(default_factory=list)


def finalize(sweep: SweepConfig, plan: StudyPlan, storage, mlflow) -> StudyOutcome:
    """Best params and value, trial counts, plots and importances onto the study's parent run."""
    study = optuna.load_study(study_name=plan.name, storage=storage)
    parent = study.user_attrs["mlflow_parent_run_id"]
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and "failure" in t.user_attrs)
    epochs = sum(int(t.user_attrs.get("epochs", len(t.intermediate_values))) for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    metrics = {
        "n_complete": states[TrialState.COMPLETE],
        "n_pruned": states[TrialState.PRUNED],
        "n_failed": failed,
        "epochs_total": epochs,
    }
    out = StudyOutcome(
        plan, parent, metrics["n_complete"], metrics["n_pruned"], failed, epochs,
        best.value if best else None, dict(best.params) if best else {},
        states[TrialState.COMPLETE] + states[TrialState.PRUNED] >= sweep.n_trials,
    )
    if best:
        metrics["best_value"] = best.value
        tags = {"best_trial": str(best.number), "best_run_id": best.user_attrs.get("mlflow_run_id", "")}
        best_params = {f"best.{k}": str(v) for k, v in best.params.items()}
        mlflow.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
        try:
            mlflow.log_batch(parent, params=[Param(k, v) for k, v in best_params.items()])
        except MlflowException:  # params are immutable: an extended study found a better trial
            mlflow.log_batch(parent, tags=[RunTag(k, v) for k, v in best_params.items()])
            out.notes.append("best changed since the params were first logged: tags best.* hold the current one")
    mlflow.log_batch(parent, metrics=[_metric(k, v) for k, v in metrics.items()])
    out.notes += _log_plots(sweep, study, parent, mlflow, len(complete))
    status = "FINISHED" if out.reached_target else "FAILED"
    mlflow.set_terminated(parent, status)
    return out


def _metric(key: str, value: float):
    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)


def _log_plots(sweep: SweepConfig, study: optuna.Study, parent: str, mlflow, n_complete: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    # Optuna 5 changed the default evaluator: pin fANOVA (seeded) so importances stay comparable.
    evaluator = functools.partial(optuna.importance.FanovaImportanceEvaluator, seed=sweep.sampler_seed)
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
        "param_importances": lambda: ovm.plot_param_importances(study, evaluator=evaluator()),
    }
    notes = []
    with tempfile.TemporaryDirectory(prefix="rnnbench-sweep-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:  # fANOVA needs complete trials whose values and params vary
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator()) if n_complete >= 2 else None
        except (ValueError, RuntimeError) as e:
            importances = None
            notes.append(f"no importances: {e}")
        if importances is not None:
            path = Path(tmp) / "importances.json"
            path.write_text(json.dumps({k: float(v) for k, v in importances.items()}, indent=2))
            mlflow.log_artifact(parent, str(path))
        else:
            del plots["param_importances"]
        for name, draw in plots.items():
            try:
                ax = draw()
            except (ValueError, RuntimeError) as e:
                notes.append(f"no {name} plot: {e}")
                continue
            fig = ax.figure
            fig.suptitle(study.study_name, fontsize=9, x=0.01, ha="left")
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = Path(tmp) / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            mlflow.log_artifact(parent, str(path), "plots")
    return notes


def run_sweep(sweep: SweepConfig, workers: int = 1, console: Console | None = None) -> list[StudyOutcome]:
    """Prepare every study, run ``workers`` local workers on them, then write the results to MLflow."""
    console = console or Console()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plans = plan_studies(sweep)
    storage = open_storage(sweep)
    mlflow = tracking.client(sweep.tracking.tracking_uri)
    exp_id = tracking.experiment_id(mlflow, sweep.tracking.experiment)
    for plan in plans:  # before any worker: they find studies, parent runs and MLflow tables in place
        prepare_study(sweep, plan, storage, mlflow, exp_id)
    console.print(
        f"sweep [bold]{sweep.name}[/]: {len(plans)} studies x {sweep.n_trials} trials "
        f"(sampler {sweep.sampler.name}, seed {sweep.sampler_seed}; pruner {sweep.pruner.name}), {workers} worker(s). "
        f"Storage: {safe_url(sweep.storage_url())}. Tracking: {sweep.tracking.tracking_uri} "
        f"(experiment '{sweep.tracking.experiment}')",
        highlight=False,
    )
    if workers == 1:
        work(sweep, 0, console)
    else:
        ctx = multiprocessing.get_context("spawn")  # no forked torch/SQLAlchemy state
        threads = max(1, (os.cpu_count() or 1) // workers)
        procs = [ctx.Process(target=_worker_process, args=(sweep.model_dump_json(), i, threads)) for i in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        for i, p in enumerate(procs):
            if p.exitcode:
                console.print(f"[red]worker {i} exited with code {p.exitcode}[/]")
    return [finalize(sweep, plan, storage, mlflow) for plan in plans]


# ----------------------------------------------------------------------------- suite --from-sweep


def tuned_suite(sweep: SweepConfig) -> tuple[SuiteConfig, list[RunConfig]]:
    """Each study's best params over ``sweep.seeds``, as an ordinary suite named ``<sweep>-tuned``."""
    if sweep.seed in sweep.seeds:
        raise ConfigError(
            f"seeds {sweep.seeds} include the sweep's training seed {sweep.seed}: rerun the tuned configs on "
            "fresh seeds, or the best trial's lucky initialisation counts twice"
        )
    storage = open_storage(sweep)
    best = {}
    for plan in plan_studies(sweep):
        try:
            study = optuna.load_study(study_name=plan.name, storage=storage)
        except KeyError:
            raise ConfigError(
                f"no study '{plan.name}' in {safe_url(sweep.storage_url())}: run the sweep first"
            ) from None
        c = count_trials(study)
        if c.finished < sweep.n_trials:
            raise ConfigError(
                f"study '{plan.name}' has {c.finished} of {sweep.n_trials} finished trials: finish the sweep first "
                "(every model gets the same budget)"
            )
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            raise ConfigError(f"study '{plan.name}' has no complete trial")
        best[(plan.label, plan.model)] = study.best_trial.params
    suite = sweep.as_suite(f"{sweep.name}-tuned", sweep.seeds)
    from benchmark.task import create_task

    runs = [
        apply_params(r, best[(create_task(r.task.name, **r.task.options).label, r.model.name)]) for r in suite.runs()
    ]
    return suite, runs


def outcome_table(outcomes: list[StudyOutcome], sweep: SweepConfig):
    from rich.table import Table

    table = Table(
        "task", "model", "trials c/p/f", "epochs", "best val", "best params",
        title=f"sweep {sweep.name}: complete/pruned/failed trials, epochs trained, best trial",
        caption=f"Without pruning every trial trains {sweep.train.max_epochs} epochs. MLflow: parent runs tagged "
        f"kind=sweep in experiment '{sweep.tracking.experiment}'. Optuna: {safe_url(sweep.storage_url())}",
        caption_justify="left",
    )
    for o in outcomes:
        arrow = "↑" if o.plan.higher_is_better else "↓"
        best = f"{o.plan.main_metric} {arrow} {o.best_value:.4g}" if o.best_value is not None else "-"
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.best_params.items())
        counts = f"{o.complete}/{o.pruned}/{o.failed}"
        table.add_row(escape(o.plan.label), o.plan.model, counts, str(o.epochs), best, escape(params) or "-")
    return table
