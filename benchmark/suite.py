"""The main job: tasks x models x seeds, resumable, with a summary table at the end.

    rnnbench suite configs/suites/default.yaml

A rerun skips every run whose FINISHED record (same run key) is already in MLflow; runs left
RUNNING by a killed process are marked KILLED and run again; a failed run is recorded and the
suite goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from benchmark import tracking
from benchmark.config import RunConfig, SuiteConfig
from benchmark.runner import RunResult, execute_run
from benchmark.summary import Summary, search_all, summarize


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
    finished = {r.data.tags.get("run_key") for r in search_all(mlflow, exp_id, "attributes.status = 'FINISHED'")}
    pending = [r for r in runs if r.run_key() not in finished]
    skipped = len(runs) - len(pending)
    console.print(
        f"suite [bold]{suite.name}[/]: {len(runs)} runs ({len(suite.tasks)} tasks x {len(suite.models)} models x "
        f"{len(suite.seeds)} seeds), {skipped} already finished in MLflow, {len(pending)} to run. "
        f"Tracking: {suite.tracking.tracking_uri} (experiment '{suite.tracking.experiment}')"
    )
    executed = []
    with _progress(console) as progress:
        overall = progress.add_task("suite", total=len(pending), info="")
        for cfg in pending:
            name = f"{cfg.task.name}/{cfg.model.name}/seed{cfg.seed}"
            current = progress.add_task(f"  {name}", total=None, info="")
            result = execute_run(cfg, progress=progress, progress_task=current, extra_tags={"suite": suite.name})
            progress.remove_task(current)
            executed.append(result)
            _report_run(progress.console, result)
            progress.advance(overall)
    summary = summarize(mlflow, exp_id, runs)
    return SuiteOutcome(executed, skipped, summary)


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
