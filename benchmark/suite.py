"""The main job: tasks x models x seeds, resumable, with a summary table at the end.

    rnnbench suite configs/suites/default.yaml

A rerun skips every run whose FINISHED record (same run key) is already in MLflow; a run left
RUNNING is marked KILLED and run again only when its owner is gone (``tracking.owner_gone``: its
process ended, or its lease ran out), else it is left to the process training it; a failed run
is recorded and the suite goes on. ``jobs: N`` trains N runs at once in separate processes (one core each, say).

In MLflow a suite is a parent run (``kind=suite``, named ``suite <name>``) with its runs nested
under it; a resumed suite reopens the same parent (same name and planned runs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient
from rich.console import Console
from rich.progress import Progress

from benchmark import dashboard, record, tracking
from benchmark.config import HELD, RunConfig, SuiteConfig
from benchmark.launcher import run_in_processes
from benchmark.record import RunKind, Tag
from benchmark.runner import RunResult, execute_run, make_console, print_result, progress_bar
from benchmark.summary import Summary, summarize
from benchmark.task import create_task


@dataclass
class SuiteOutcome:
    executed: list[RunResult]
    skipped: int
    summary: Summary
    parent_run_id: str  # the suite's parent run in MLflow
    tracking_uri: str

    def attach(self, files: list[Path]) -> None:
        """Log files (the written summary) onto the suite's parent run."""
        mlflow = tracking.client(self.tracking_uri)
        for path in files:
            mlflow.log_artifact(self.parent_run_id, str(path))


def run_suite(suite: SuiteConfig, console: Console | None = None, runs: list[RunConfig] | None = None) -> SuiteOutcome:
    """Run the suite's runs (or ``runs``, e.g. tuned configs from a sweep) that MLflow has not finished."""
    console = console or make_console()
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
    HELD.release()
    parent = _open_parent(mlflow, exp_id, suite, runs)
    context = {"extra_tags": {Tag.SUITE: suite.name, Tag.SUITE_JOBS: str(suite.jobs)}, "parent_run_id": parent}
    names = _run_names(suite, runs)
    try:
        with progress_bar(console) as progress:
            overall = progress.add_task("suite", total=len(pending), info="")
            run = _run_in_processes if suite.jobs > 1 and len(pending) > 1 else _run_here
            executed = run([(cfg, names[cfg.run_key()]) for cfg in pending], context, progress, overall, suite.jobs)
    except BaseException:  # Ctrl+C or a kill: the parent ends KILLED like its interrupted run
        record.end_run(mlflow, parent, record.KILLED, "interrupted")
        raise
    summary = summarize(mlflow, exp_id, runs)
    missing = sum(row.missing for row in summary.rows)
    record.end_run(mlflow, parent, record.FAILED if missing else record.FINISHED,
                   f"{missing} planned run(s) have no finished run; rerun the suite to resume" if missing else None)  # fmt: skip
    return SuiteOutcome(executed, skipped, summary, parent, suite.tracking.tracking_uri)


def _run_names(suite: SuiteConfig, runs: list[RunConfig]) -> dict[str, str]:
    """Run key -> ``model · s<seed> · <short task label>``, the labels shortened over all the suite's task settings
    (not only this batch's: a batch of extra seeds names its runs as the first batch did)."""
    tasks = {}
    for cfg in [*suite.runs(), *runs]:  # cheap: options only
        task = create_task(cfg.task.name, **cfg.task.options)
        tasks.setdefault(task.label, task)
    short = dict(zip(tasks, dashboard.short_labels(list(tasks.values()))))
    label = {cfg.run_key(): create_task(cfg.task.name, **cfg.task.options).label for cfg in runs}
    return {cfg.run_key(): dashboard.run_name(cfg.model.name, cfg.seed, short[label[cfg.run_key()]]) for cfg in runs}


def suite_hash(suite: SuiteConfig) -> str:
    """16 hex digits of the run keys the suite's config plans: the same suite, however often resumed (or
    extended by ``--until-decided`` or given tuned configs), has the same hash; other tasks, models,
    seeds or settings have another."""
    return hashlib.sha1(json.dumps(sorted(r.run_key() for r in suite.runs())).encode()).hexdigest()[:16]


def _open_parent(mlflow: MlflowClient, exp_id: str, suite: SuiteConfig, runs: list[RunConfig]) -> str:
    """The suite's parent run, RUNNING: reopened when this suite (name and planned runs) ran before, else created."""
    digest = suite_hash(suite)
    query = f"tags.{Tag.KIND} = '{RunKind.SUITE}' and tags.{Tag.SUITE} = '{suite.name}' and tags.{Tag.SUITE_HASH} = '{digest}'"
    earlier = sorted(tracking.search_all(mlflow, exp_id, query), key=lambda r: r.info.start_time)
    if earlier:
        run_id = earlier[0].info.run_id
        mlflow.update_run(run_id, status=record.RUNNING)
        if Tag.FAILURE_REASON in earlier[0].data.tags:
            mlflow.delete_tag(run_id, Tag.FAILURE_REASON)
        return run_id
    tags = {Tag.SUITE: suite.name, Tag.SUITE_HASH: digest, Tag.NOTE: _note(suite, runs)} | tracking.source_tags()
    run_id = record.create_run(mlflow, exp_id, RunKind.SUITE, dashboard.suite_run_name(suite.name), tags)
    dashboard.log_yaml(mlflow, run_id, suite.model_dump(mode="json"), record.SUITE_ARTIFACT)
    return run_id


def _note(suite: SuiteConfig, runs: list[RunConfig]) -> str:
    """The parent run's description: what the suite compares, its shared settings, where its summary and report go."""
    labels = list(dict.fromkeys(create_task(r.task.name, **r.task.options).label for r in runs))
    models = list(dict.fromkeys(r.model.name for r in runs))
    seeds = sorted({r.seed for r in runs})
    shared = {k: v for k, v in suite.model.model_dump(exclude_defaults=True).items() if k != "name"}
    shared = {"model": shared, "train": suite.train.model_dump(exclude_defaults=True)}
    settings = "; ".join(f"{section} {', '.join(f'{k}={v}' for k, v in values.items())}" for section, values in shared.items() if values)
    return (
        f"Suite **{suite.name}**: {len(labels)} task setting(s) ({', '.join(labels)}) x {len(models)} model(s) "
        f"({', '.join(models)}) x {len(seeds)} seed(s) ({', '.join(map(str, seeds))}) = {len(runs)} runs, nested under "
        f"this run. Shared settings: {settings or 'the defaults'}. When the suite ends, `summary.md` and `summary.csv` "
        f"are attached here; each `rnnbench report --experiment {suite.tracking.experiment}` attaches `report/report.html`."
    )


def _run_here(named: list[tuple[RunConfig, str]], context: dict, progress: Progress, overall, jobs: int) -> list[RunResult]:
    executed = []
    for cfg, name in named:
        current = progress.add_task(f"  {name}", total=None, info="")
        result = execute_run(cfg, progress=progress, progress_task=current, run_name=name, **context)
        progress.remove_task(current)
        executed.append(result)
        print_result(progress.console, result)
        progress.advance(overall)
    return executed


def _execute_in_worker(job: tuple[str, str, dict]) -> RunResult:
    cfg_json, name, context = job
    return execute_run(RunConfig.model_validate_json(cfg_json), run_name=name, **context)


def _run_in_processes(named: list[tuple[RunConfig, str]], context: dict, progress: Progress, overall, jobs: int) -> list[RunResult]:
    """``jobs`` runs at once in worker processes (``benchmark.launcher``); results come back as they finish.

    Each run still ends FINISHED/FAILED/KILLED in MLflow by itself; a worker that dies outright
    (killed, out of memory) leaves its run RUNNING, which the next resume marks KILLED.
    """
    executed = []
    progress.update(overall, info=f"{jobs} at a time")
    work = [(cfg.model_dump_json(), name, context) for cfg, name in named]
    for outcome in run_in_processes(_execute_in_worker, work, jobs):
        result = outcome.result if outcome.ok else _lost(named[outcome.index][0], outcome.error)
        executed.append(result)
        print_result(progress.console, result)
        progress.advance(overall)
    return executed


def _lost(cfg: RunConfig, error: str) -> RunResult:
    """The result of a run whose worker died or raised outside the runner: its MLflow run, if any, is reaped on resume."""
    label = create_task(cfg.task.name, **cfg.task.options).label
    reason = error.strip().splitlines()[-1]
    return RunResult("", record.KILLED, label, cfg.model.name, cfg.seed, 0, failure=f"{reason}; rerun the same command to resume")
