"""Sweep workers: ask a trial, train it as an ordinary nested run, tell Optuna; until every study is full.

A worker runs trials for the first study short of its target until every study has reached it.
Local workers are processes of ``benchmark.launcher``; other machines run the same command.
A dead worker's trials are found by the storage's heartbeat (``StaleTrialHandler``): their MLflow
runs are reaped (``tracking.reap``) and the trials queued again with the same params.
"""

from __future__ import annotations

import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState
from rich.console import Console
from rich.markup import escape

from benchmark import dashboard, record, tracking
from benchmark.record import RunKind, Tag
from benchmark.search_space import apply_params
from benchmark.sweep.config import SweepConfig
from benchmark.sweep.studies import StudyAttr, StudyPlan, TrialAttr, count_trials, open_storage, plan_studies


class TrialFailed(RuntimeError):
    """A trial that could not produce a value; Optuna records it FAIL and the sweep goes on."""


class TrialProbe(Callback):
    """Puts the trial's MLflow run id in its user attrs as soon as training starts (the reaper finds it there)."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.run_id = trial, None

    def on_fit_start(self, trainer, pl_module):
        self.run_id = trainer.logger.run_id
        self.trial.set_user_attr(TrialAttr.RUN_ID, self.run_id)


def kill_trial_runs(mlflow, exp_id: str, study_name: str, trial, reason: str) -> int:
    """Reap the MLflow runs of a dead trial: by the run id in its user attrs, else by its tags."""
    run_ids = [trial.user_attrs[TrialAttr.RUN_ID]] if TrialAttr.RUN_ID in trial.user_attrs else []
    if not run_ids:
        query = f"tags.{Tag.STUDY_NAME} = '{study_name}' and tags.{Tag.TRIAL_NUMBER} = '{trial.number}'"
        run_ids = [r.info.run_id for r in tracking.search_all(mlflow, exp_id, query)]
    return tracking.reap(mlflow, run_ids, reason, {Tag.TRIAL_STATE: "FAIL"})


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
    from benchmark.runner import ThroughputMeter, execute_run

    space = sweep.space()
    out = TrialOutcome(-1, "FAIL")

    def objective(trial: optuna.Trial) -> float:
        out.number = trial.number
        ahead = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and t.state != TrialState.FAIL)
        if ahead >= sweep.n_trials:  # another worker reserved the last slot first
            trial.set_user_attr(TrialAttr.SURPLUS, True)
            out.state, out.note = "SURPLUS", "target already reserved by other trials"
            raise TrialFailed(out.note)
        trial.set_user_attr(TrialAttr.WORKER, f"{platform.node()}:{os.getpid()}")
        out.params = space.sample(trial, plan.base, plan.facts)
        probe, meter = TrialProbe(trial), ThroughputMeter()
        pruning = _pruning_callback(trial, monitor=record.on_val(plan.main_metric))
        tags = {Tag.TRIAL_NUMBER: str(trial.number), Tag.STUDY_NAME: plan.name, Tag.SWEEP: sweep.name}
        try:
            cfg = apply_params(plan.base, out.params)
            result = execute_run(
                cfg, kind=RunKind.TRIAL, parent_run_id=parent_id, extra_tags=tags, callbacks=[probe, pruning],
                meter=meter, passthrough=(optuna.TrialPruned,), run_name=dashboard.trial_name(plan.model, trial.number),
            )  # fmt: skip
        except optuna.TrialPruned as e:
            out.state, out.epochs, out.note = "PRUNED", meter.epochs, str(e)
            _finish_trial(sweep, trial, probe.run_id, "PRUNED", meter.epochs)
            raise
        except Exception as e:  # raised before the run started (e.g. an impossible config): still a failed trial
            raise _fail(sweep, trial, out, probe.run_id, meter.epochs, record.describe(e))
        if result.status != record.FINISHED:
            raise _fail(sweep, trial, out, result.run_id, meter.epochs, result.failure or result.status)
        value = result.metrics.get(record.best_val(plan.main_metric), float("nan"))
        if not math.isfinite(value):
            raise _fail(sweep, trial, out, result.run_id, meter.epochs, f"no finite {record.on_val(plan.main_metric)}")
        out.state, out.value, out.epochs = "COMPLETE", value, meter.epochs
        trial.set_user_attr(TrialAttr.RUN_ID, result.run_id)
        _finish_trial(sweep, trial, result.run_id, "COMPLETE", meter.epochs)
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
    trial.set_user_attr(TrialAttr.EPOCHS, epochs)
    if run_id:
        tracking.client(sweep.tracking.tracking_uri).set_tag(run_id, Tag.TRIAL_STATE, state)


def _fail(sweep, trial, out: TrialOutcome, run_id: str | None, epochs: int, reason: str) -> TrialFailed:
    """Record why the trial failed (user attr ``failure``, MLflow tag) and return the error to raise."""
    out.state, out.epochs, out.note = "FAIL", epochs, reason
    trial.set_user_attr(TrialAttr.FAILURE, reason[:1000])
    _finish_trial(sweep, trial, run_id, "FAIL", epochs)
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
        study.sampler = sweep.sampler.per_trial(sweep.sampler_seed)
        study.pruner = sweep.pruner.build(plan.prune_context())
        pending.append((plan, study, study.user_attrs[StudyAttr.PARENT_RUN_ID]))
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


def worker_process(job: tuple[str, int, int]) -> None:
    """Entry point of a local worker process (``benchmark.launcher``): (sweep as JSON, worker number, torch threads)."""
    import torch

    sweep_json, worker, threads = job
    torch.set_num_threads(threads)
    work(SweepConfig.model_validate_json(sweep_json), worker)
