"""The main job: tasks x models x seeds, resumable, with a summary table at the end.

    rnnbench suite configs/suites/default.yaml

A rerun skips every run whose FINISHED record (same run key) is already in MLflow; runs left
RUNNING by a killed process are marked KILLED and run again; a failed run is recorded and the
suite goes on. ``jobs: N`` trains N runs at once in separate processes (one core each, say).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from benchmark import tracking
from benchmark.config import RunConfig, SuiteConfig
from benchmark.runner import RunResult, execute_run
from benchmark.summary import Summary, summarize


@dataclass
class SuiteOutcome:
    executed: list[RunResult]
    skipped: int
    summary: Summary


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )


def run_suite(suite: SuiteConfig, console: Console | None = None, runs: list[RunConfig] | None = None) -> SuiteOutcome:
    """Run the suite's runs (or ``runs``, e.g. tuned configs from a sweep) that MLflow has not finished."""
    console = console or Console()
    runs = suite.runs() if runs is None else runs
    mlflow = tracking.client(suite.tracking.tracking_uri)
    exp_id = tracking.experiment_id(mlflow, suite.tracking.experiment)
    finished = {r.data.tags.get("run_key") for r in tracking.search_all(mlflow, exp_id, "attributes.status = 'FINISHED'")}
    pending = [r for r in runs if r.run_key() not in finished]
    skipped = len(runs) - len(pending)
    console.print(
        f"suite [bold]{suite.name}[/]: {len(runs)} runs ({len(suite.tasks)} tasks x {len(suite.models)} models x "
        f"{len(suite.seeds)} seeds), {skipped} already finished in MLflow, {len(pending)} to run. "
        f"Tracking: {suite.tracking.tracking_uri} (experiment '{suite.tracking.experiment}')"
    )
    tags = {"suite": suite.name, "suite_jobs": str(suite.jobs)}
    with _progress(console) as progress:
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
        _report_run(progress.console, result)
        progress.advance(overall)
    return executed


def _execute_in_worker(cfg_json: str, tags: dict) -> RunResult:
    return execute_run(RunConfig.model_validate_json(cfg_json), extra_tags=tags)


def _run_in_processes(pending: list[RunConfig], tags: dict, progress: Progress, overall, jobs: int) -> list[RunResult]:
    """``jobs`` runs at once, each in a fresh (spawned) process; results come back as they finish.

    Each run still ends FINISHED/FAILED/KILLED in MLflow by itself; a worker that dies outright
    (killed, out of memory) leaves its run RUNNING, which the next resume marks KILLED.
    """
    executed = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_execute_in_worker, cfg.model_dump_json(), tags) for cfg in pending]
        progress.update(overall, info=f"{jobs} at a time")
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise RuntimeError("a suite worker process died; rerun the same command to resume") from None
                executed.append(result)
                _report_run(progress.console, result)
                progress.advance(overall)
        except BaseException:  # Ctrl+C or a kill of this process: stop the workers too
            for future in futures:
                future.cancel()
            for process in list(pool._processes.values()):
                process.terminate()  # Lightning turns SIGTERM into an exit; the runner marks the run KILLED
            raise
    return executed


def _report_run(console: Console, r: RunResult) -> None:
    name = escape(f"{r.label} {r.model} seed={r.seed}")  # labels hold [...], which rich reads as markup
    if r.status != "FINISHED":
        console.print(f"[red]x {name}: {r.status} - {escape(r.failure or '')}[/]")
        return
    tests = " ".join(f"{k}={v:.4g}" for k, v in r.metrics.items() if k.startswith("test/"))
    console.print(
        f"[green]ok[/] {name}: {tests}  params={r.param_count:,}  "
        f"{r.metrics['throughput_seq_per_s']:,.0f} seq/s  {r.metrics['wall_time_s']:.1f}s"
    )
