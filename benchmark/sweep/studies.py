"""Studies: one Optuna study per (task setting, model), its storage, and its MLflow parent run.

A study is named ``<sweep>/<task label>/<model>``; its parent run (``kind=sweep``) carries the
study's settings and, once finalized, its best trial. ``count_trials`` is how every worker and
``suite --from-sweep`` tell how far a study has come.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from benchmark import dashboard, record, tracking
from benchmark.config import ConfigError, RunConfig, flatten
from benchmark.record import RunKind, Tag
from benchmark.scales import RATIO, Scale
from benchmark.search_space import SearchSpace
from benchmark.sweep.config import PruneContext, SweepConfig

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StudyAttr:
    """Optuna user attrs of a study."""

    PARENT_RUN_ID = "mlflow_parent_run_id"
    CONFIG_HASH = "config_hash"  # run config and search space it was made with: a resumed study must match


class TrialAttr:
    """Optuna user attrs of a trial."""

    RUN_ID = "mlflow_run_id"
    FAILURE = "failure"  # why it failed on its own (not surplus, not a dead worker)
    SURPLUS = "surplus"  # ended untrained: the target was already reserved by earlier trials
    EPOCHS = "epochs"  # epochs trained (validated), pruned or not
    WORKER = "worker"  # host:pid


@dataclass
class StudyPlan:
    name: str  # <sweep>/<task label>/<model>
    label: str
    short_label: str  # the label shortened over the sweep's task settings (``benchmark.dashboard``), for run names
    model: str
    facts: dict[str, Any]  # the variant's cell, layers, bidirectional: what `when:` conditions may name
    base: RunConfig  # the run config before sampled values are applied
    main_metric: str
    higher_is_better: bool
    scale: Scale = RATIO  # the main metric's (``benchmark.scales``)
    baseline: float | None = None  # the task's trivial baseline on the main metric

    def prune_context(self) -> PruneContext:
        return PruneContext(self.base.train.max_epochs, self.higher_is_better, self.baseline, self.name)

    @property
    def direction(self) -> str:
        return "maximize" if self.higher_is_better else "minimize"


def plan_studies(sweep: SweepConfig) -> list[StudyPlan]:
    """One study per (task setting, model) of the sweep; its base run config trains with ``sweep.seed``."""
    from benchmark.models import MODELS
    from benchmark.task import create_task

    plans, specs = [], {}
    bases = sweep.as_suite(sweep.name, [sweep.seed]).runs()
    settings = {}
    for base in bases:  # cheap: options only
        task = create_task(base.task.name, **base.task.options)
        settings.setdefault(task.label, task)
    short = dict(zip(settings, dashboard.short_labels(list(settings.values()))))
    for base in bases:
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
                short[task.label],
                base.model.name,
                facts,
                base,
                main.name,
                main.higher_is_better,
                main.scale,
                specs[key].baseline.values.get(main.name) if specs[key].baseline else None,
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
    for attempt in range(CREATE_ATTEMPTS):
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
        except SQLAlchemyError as e:
            if attempt + 1 < CREATE_ATTEMPTS and creation_race(e):
                time.sleep(random.uniform(0.2, 1.0))  # the other machine finishes creating; then it is opened
                continue
            raise ConfigError(f"cannot open storage '{safe_url(url)}': {str(e).splitlines()[0]}") from None
        except (ImportError, ValueError) as e:
            raise ConfigError(f"cannot open storage '{safe_url(url)}': {str(e).splitlines()[0]}") from None


CREATE_ATTEMPTS = 5


def creation_race(error: Exception) -> bool:
    """Did a database error come from another process creating the same tables or rows at the same moment?

    Machines started together on a fresh database each create Optuna's (or MLflow's) tables: all but
    one get a duplicate-table or unique-violation error (PostgreSQL), or "already exists" (SQLite).
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    text = str(error).lower()
    return isinstance(error, (IntegrityError, ProgrammingError)) or (
        isinstance(error, OperationalError) and ("already exists" in text or "locked" in text)
    )


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _config_hash(plan: StudyPlan, space: SearchSpace) -> str:
    return stable_hash({"run": plan.base.run_key(), "space": space.to_dict()})


def stable_hash(payload: Any) -> str:
    """16 hex digits of a JSON-able payload's SHA-1: the same on every machine and Python."""
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def prepare_study(sweep: SweepConfig, plan: StudyPlan, storage, mlflow, exp_id: str) -> str:
    """Create or load the study and its MLflow parent run; returns the parent run's id."""
    study = optuna.create_study(storage=storage, study_name=plan.name, direction=plan.direction, load_if_exists=True)
    space = sweep.space()
    expected = _config_hash(plan, space)
    found = study.user_attrs.get(StudyAttr.CONFIG_HASH)
    if found is None:
        study.set_user_attr(StudyAttr.CONFIG_HASH, expected)
    elif found != expected:
        raise ConfigError(
            f"study '{plan.name}' in {safe_url(sweep.storage_url())} was made with another run config or search "
            "space (or a version of rnnbench with other config defaults); resuming it would mix trials. "
            "Use another sweep name or storage"
        )
    if study.direction.name.lower() != plan.direction:
        raise ConfigError(f"study '{plan.name}' exists with direction {study.direction.name.lower()}")
    tags = {
        Tag.SWEEP: sweep.name,
        Tag.STUDY_NAME: plan.name,
        Tag.TASK: plan.base.task.name,
        Tag.TASK_LABEL: plan.label,
        Tag.MODEL: plan.model,
        Tag.CELL: plan.facts["cell"],
        Tag.MAIN_METRIC: plan.main_metric,
        Tag.HIGHER_IS_BETTER: record.flag(plan.higher_is_better),
        Tag.N_TRIALS: str(sweep.n_trials),
        Tag.SAMPLER: sweep.sampler.name,
        Tag.SAMPLER_SEED: str(sweep.sampler_seed),
        Tag.PRUNER: sweep.pruner.name,
        Tag.STORAGE: safe_url(sweep.storage_url()),
    }
    parent = study.user_attrs.get(StudyAttr.PARENT_RUN_ID)
    if parent is not None and _run_exists(mlflow, parent):
        mlflow.update_run(parent, status=record.RUNNING)
        mlflow.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
        return parent
    tags |= tracking.source_tags() | {Tag.NOTE: _note(sweep, plan, space)}
    name = dashboard.study_run_name(plan.model, plan.short_label, sweep.name)
    run_id = record.create_run(mlflow, exp_id, RunKind.SWEEP, name, tags)
    params = flatten(plan.base.model_dump(mode="json", exclude={"references"})) | {record.SEARCH_SPACE: json.dumps(space.to_dict())}
    mlflow.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    # Machines starting together may each create a parent: all settle on the earliest one.
    query = (
        f"tags.{Tag.STUDY_NAME} = '{plan.name}' and tags.{Tag.KIND} = '{RunKind.SWEEP}' "
        f"and attributes.status = '{record.RUNNING}'"
    )
    racing = mlflow.search_runs([exp_id], filter_string=query)
    winner = min(racing, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
    if winner != run_id:
        mlflow.delete_run(run_id)
    study.set_user_attr(StudyAttr.PARENT_RUN_ID, winner)
    return winner


def _note(sweep: SweepConfig, plan: StudyPlan, space: SearchSpace) -> str:
    """The study parent's description (``mlflow.note.content``)."""
    direction = "maximised" if plan.higher_is_better else "minimised"
    return (
        f"Optuna study **{plan.name}**: {sweep.n_trials} finished trials of **{plan.model}** on **{plan.label}** "
        f"(training seed {sweep.seed}, at most {plan.base.train.max_epochs} epochs each), nested under this run. "
        f"Sampler {sweep.sampler.name} (seed {sweep.sampler_seed}), pruner {sweep.pruner.name}; searching "
        f"{', '.join(space.to_dict()) or 'nothing'}. Objective: best validation {plan.main_metric}, {direction}. "
        f"Storage: {safe_url(sweep.storage_url())}; watch it with `optuna-dashboard {safe_url(sweep.storage_url())}`."
    )


def _run_exists(mlflow, run_id: str) -> bool:
    try:
        return mlflow.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


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
        elif t.state == TrialState.FAIL and TrialAttr.FAILURE in t.user_attrs:
            c.failures += 1
    return c
