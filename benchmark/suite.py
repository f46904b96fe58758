"""The main job: tasks x models x seeds, resumable, with a summary table at the end.

    rnnbench suite configs/suites/default.yaml

A rerun skips every run whose FINISHED record (same run key) is already in MLflow; runs left
RUNNING by a killed process are marked KILLED and run again; a failed run is recorded and the
suite goes on. ``jobs: N`` trains N runs at once in separate processes (one core each, say).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress

from benchmark import record, tracking
from benchmark.config import RunConfig, SuiteConfig
from benchmark.launcher import run_in_processes
from benchmark.runner import RunResult, execute_run, print_result, progress_bar
from benchmark.summary import Summary, summarize
from benchmark.task import create_task


@dataclass
class SuiteOutcome:
    executed: list[RunResult]
    skipped: int
    summary: Summary


def run_suite(suite: SuiteConfig, console: Console | None = None, runs: list[RunConfig] | None = None) -> SuiteOutcome:
    """Run the suite's runs (or ``runs``, e.g. tuned configs from a sweep) that MLflow has not finished."""
    console = console or Console()
    runs = suite.runs() if runs is None else runs
    mlflow = tracking.client(suite.tracking.tracking_uri)
    exp_id = tracking.experiment_id(mlflow, suite.tracking.experiment)
    finished = {
        r.data.tags.get(record.Tag.RUN_KEY)
        for r in tracking.search_all(mlflow, exp_id, f"attributes.status = '{record.FINISHED}'")
    }
    pending = [r for r in runs if r.run_key() not in finished]
    skipped = len(runs) - len(pending)
    grid = len(suite.tasks) * len(suite.models) * len(suite.seeds)
    shape = f" ({len(suite.tasks)} tasks x {len(suite.models)} models x {len(suite.seeds)} seeds)" if len(runs) == grid else ""
    console.print(
        f"suite [bold]{suite.name}[/]: {len(runs)} runs{shape}, {skipped} already finished in MLflow, {len(pending)} to run. "
        f"Tracking: {suite.tracking.tracking_uri} (experiment '{suite.tracking.experiment}')"
    )
    tags = {record.Tag.SUITE: suite.name, record.Tag.SUITE_JOBS: str(suite.jobs)}
    with progress_bar(console) as progress:
        overall = progress.add_task("suite", total=len(pending), info="")
        run = _run_in_processes if suite.jobs > 1 and len(pending) > 1 else _run_here
        executed = run(pending, tags, progress, overall, suite.jobs)
    summary = summarize(mlflow, exp_id, runs)
    return SuiteOutcome(executed, skipped, summary)


def _run_here(pending: list[RunConfig], tags: dict, progress: Progress, overall, jobs: int) -> list[RunResult]:
    executed = []
    for cfg in pending:
        current = progress.add_task(f"  {cfg.task.name}/{cfg.model.name}/seed{cfg.seed}", total=None, info="")
        result = execute_run(cfg, progress=progress, progress_task=current, extra_tags=tags)
        progress.remove_task(current)
        executed.append(result)
        print_result(progress.console, result)
        progress.advance(overall)
    return executed


def _execute_in_worker(job: tuple[str, dict]) -> RunResult:
    cfg_json, tags = job
    return execute_run(RunConfig.model_validate_json(cfg_json), extra_tags=tags)


def _run_in_processes(pending: list[RunConfig], tags: dict, progress: Progress, overall, jobs: int) -> list[RunResult]:
    """``jobs`` runs at once in worker processes (``benchmark.launcher``); results come back as they finish.

    Each run still ends FINISHED/FAILED/KILLED in MLflow by itself; a worker that dies outright
    (killed, out of memory) leaves its run RUNNING, which the next resume marks KILLED.
    """
    executed = []
    progress.update(overall, info=f"{jobs} at a time")
    for outcome in run_in_processes(_execute_in_worker, [(cfg.model_dump_json(), tags) for cfg in pending], jobs):
        result = outcome.result if outcome.ok else _lost(pending[outcome.index], outcome.error)
        executed.append(result)
        print_result(progress.console, result)
        progress.advance(overall)
    return executed


def _lost(cfg: RunConfig, error: str) -> RunResult:
    """The result of a run whose worker died or raised outside the runner: its MLflow run, if any, is reaped on resume."""
    label = create_task(cfg.task.name, **cfg.task.options).label
    reason = error.strip().splitlines()[-1]
    return RunResult("", record.KILLED, label, cfg.model.name, cfg.seed, 0, failure=f"{reason}; rerun the same command to resume")
