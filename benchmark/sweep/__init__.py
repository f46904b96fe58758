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

Modules: ``config`` (SweepConfig, sampler and pruner schemas), ``plateau`` (the plateau-aware
warm-up pruner), ``studies`` (plans, storage, parent runs, trial counts), ``worker`` (one trial,
the worker loop), ``finalize`` (best trial, plots, the outcome table), ``tuned``
(``suite --from-sweep``), ``launch`` (``run_sweep``), ``replay`` (pruners over recorded curves),
``efficiency`` (``rnnbench sweep-efficiency``).
"""

from benchmark.sweep.config import PRUNERS, SAMPLERS, PrunerConfig, SamplerConfig, SweepConfig, load_sweep_config
from benchmark.sweep.finalize import StudyOutcome, finalize, outcome_table
from benchmark.sweep.launch import run_sweep
from benchmark.sweep.studies import StudyPlan, count_trials, open_storage, plan_studies, prepare_study
from benchmark.sweep.tuned import tuned_suite

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "PrunerConfig",
    "SamplerConfig",
    "StudyOutcome",
    "StudyPlan",
    "SweepConfig",
    "count_trials",
    "finalize",
    "load_sweep_config",
    "open_storage",
    "outcome_table",
    "plan_studies",
    "prepare_study",
    "run_sweep",
    "tuned_suite",
]
