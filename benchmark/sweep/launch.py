"""``rnnbench sweep``: prepare every study, run the workers on them, finalize the results."""

from __future__ import annotations

import os

import optuna
from rich.console import Console
from rich.markup import escape

from benchmark import tracking
from benchmark.config import HELD
from benchmark.launcher import run_in_processes
from benchmark.sweep.config import SweepConfig
from benchmark.sweep.finalize import StudyOutcome, finalize
from benchmark.sweep.studies import open_storage, plan_studies, prepare_study, safe_url
from benchmark.sweep.worker import work, worker_process


def run_sweep(sweep: SweepConfig, workers: int = 1, console: Console | None = None) -> list[StudyOutcome]:
    """Prepare every study, run ``workers`` local workers on them, then write the results to MLflow."""
    console = console or Console()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plans = plan_studies(sweep)
    HELD.release()
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
        threads = max(1, (os.cpu_count() or 1) // workers)
        jobs = [(sweep.model_dump_json(), i, threads) for i in range(workers)]
        for outcome in run_in_processes(worker_process, jobs, workers):
            if not outcome.ok:
                console.print(f"[red]worker {outcome.index} stopped: {escape(outcome.error.strip())}[/]")
    return [finalize(sweep, plan, storage, mlflow) for plan in plans]
