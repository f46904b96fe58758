"""Summary table of a suite, built from what MLflow recorded (so resumed runs count too)."""

from __future__ import annotations

import csv
import datetime as dt
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.tracking import MlflowClient
from rich.markup import escape
from rich.table import Table

from benchmark import record
from benchmark.config import Reference, RunConfig
from benchmark.record import RunMetric, Tag
from benchmark.report.collect import latest_finished, run_table
from benchmark.task import create_task
from benchmark.tracking import search_all


@dataclass
class Row:
    task: str
    model: str
    metric: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)
    others: dict[str, list[float]] = field(default_factory=dict)
    params: int | None = None
    seq_per_s: list[float] = field(default_factory=list)
    baseline: float | None = None
    missing: int = 0  # planned seeds with no finished run (failed, killed or not run)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else float("nan")


@dataclass
class Summary:
    rows: list[Row]
    devices: set[str]
    torch_versions: set[str]
    seeds: list[int]
    references: dict[str, list[Reference]] = field(default_factory=dict)  # task setting -> published numbers (config)

    def best(self, task: str) -> Row | None:
        rows = [r for r in self.rows if r.task == task and r.values]
        if not rows:
            return None
        return (max if rows[0].higher_is_better else min)(rows, key=lambda r: r.mean)

    @property
    def note(self) -> str:
        return (
            "Metric: test set, scored with the checkpoint of best validation score; mean ± sample std over n seeds "
            f"(seeds run: {', '.join(map(str, self.seeds))}). seq/s: training sequences per second, validation "
            f"excluded, mean over seeds. Device: {'; '.join(sorted(self.devices)) or 'n/a'}. "
            f"torch {', '.join(sorted(self.torch_versions)) or 'n/a'}. Built {dt.date.today().isoformat()}."
        )

    def _cells(self, row: Row) -> list[str]:
        def fmt(values: list[float]) -> str:
            if not values:
                return "-"
            mean = statistics.fmean(values)
            return f"{mean:.4g} ± {statistics.stdev(values):.2g}" if len(values) > 1 else f"{mean:.4g}"

        others = "; ".join(f"{k} {fmt(v)}" for k, v in sorted(row.others.items()))
        return [
            row.task,
            row.model,
            f"{row.params:,}" if row.params else "-",
            f"{row.metric} {'↑' if row.higher_is_better else '↓'} {fmt(row.values)}",
            others or "-",
            f"{row.n}" + (f" ({row.missing} missing)" if row.missing else ""),
            f"{statistics.fmean(row.seq_per_s):,.0f}" if row.seq_per_s else "-",
            f"{row.baseline:.4g}" if row.baseline is not None else "-",
        ]

    HEADER = ["task", "model", "params", "main metric (test)", "other test metrics", "n seeds", "seq/s", "baseline"]

    def _published(self, task: str) -> list[list[str]]:
        """The task's reference rows: their model and number, the source and setup where our other metrics go."""
        return [[task, f"{r.model} ({Reference.MARK})", "-", f"{r.metric} {r.value:.4g}", f"{r.source}: {r.setup}", "-", "-", "-"]
                for r in self.references.get(task, [])]  # fmt: skip

    def _lines(self) -> list[tuple[list[str], str]]:
        """(cells, kind) in table order, kind "best", "" or "published": each task's rows, then its published numbers."""
        out = []
        for i, row in enumerate(self.rows):
            out.append((self._cells(row), "best" if self.best(row.task) is row else ""))
            if i + 1 == len(self.rows) or self.rows[i + 1].task != row.task:
                out += [(cells, "published") for cells in self._published(row.task)]
        return out

    def rich_table(self) -> Table:
        table = Table(*self.HEADER, title="summary", caption=self.note, caption_justify="left")
        styles = {"best": "bold green", "published": "italic dim", "": None}
        for cells, kind in self._lines():
            table.add_row(*map(escape, cells), style=styles[kind])
        return table

    def markdown(self, title: str) -> str:
        lines = [f"# {title}", "", "| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        for cells, kind in self._lines():
            if kind == "best":
                cells[1] = f"**{cells[1]}** (best)"
            elif kind == "published":
                cells[1] = f"*{cells[1]}*"
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(lines + ["", self.note, ""])

    def write(self, directory: Path, title: str) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        md, table = directory / "summary.md", directory / "summary.csv"
        md.write_text(self.markdown(title))
        with table.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["task", "model", "params", "metric", "higher_is_better", "mean", "std", "n", "missing", "seq_per_s", "baseline"])
            for r in self.rows:
                seq = statistics.fmean(r.seq_per_s) if r.seq_per_s else ""
                w.writerow([r.task, r.model, r.params, r.metric, r.higher_is_better, r.mean, r.std, r.n, r.missing, seq, r.baseline])
        return [md, table]


def summarize(mlflow: MlflowClient, exp_id: str, planned: list[RunConfig]) -> Summary:
    """One row per (task setting, model) of the plan, from the runs carrying its run keys.

    Which run counts is the report's rule (``benchmark.report.collect.latest_finished``), so the
    summary and ``rnnbench report`` always agree.
    """
    keys = {cfg.run_key() for cfg in planned}
    finished = search_all(mlflow, exp_id, f"attributes.status = '{record.FINISHED}'")
    recorded = {r.info.run_id: r for r in finished if r.data.tags.get(Tag.RUN_KEY) in keys}
    counted = latest_finished(run_table(list(recorded.values())))
    chosen = {(r.task_label, r.model, r.seed): recorded[r.run_id] for r in counted.itertuples()}
    rows: dict[tuple[str, str], Row] = {}
    devices, versions = set(), set()
    references: dict[str, list[Reference]] = {}
    for cfg in planned:
        label = create_task(cfg.task.name, **cfg.task.options).label  # cheap: options only
        known = references.setdefault(label, [])
        known += [r for r in cfg.references if r not in known]
        row = rows.setdefault((label, cfg.model.name), Row(label, cfg.model.name, "", False))
        run = chosen.get((label, cfg.model.name, cfg.seed))
        if run is None:
            row.missing += 1
            continue
        _add(row, run)
        devices.add(run.data.tags.get(Tag.DEVICE, "?"))
        versions.add(run.data.tags.get(Tag.TORCH_VERSION, "?"))
    seeds = sorted({c.seed for c in planned})
    return Summary(list(rows.values()), devices, versions, seeds, references)


def _add(row: Row, run) -> None:
    """One finished run's numbers into its row."""
    tags, metrics = run.data.tags, run.data.metrics
    row.metric, row.higher_is_better = tags[Tag.MAIN_METRIC], record.is_true(tags[Tag.HIGHER_IS_BETTER])
    row.values.append(metrics[record.on_test(row.metric)])
    prefix = record.on_test("")
    for name, value in metrics.items():
        if name.startswith(prefix) and name != record.on_test(row.metric):
            row.others.setdefault(name.removeprefix(prefix), []).append(value)
    row.params = int(float(tags[Tag.PARAM_COUNT]))
    row.seq_per_s.append(metrics.get(RunMetric.THROUGHPUT, float("nan")))
    row.baseline = metrics.get(record.baseline(row.metric))
