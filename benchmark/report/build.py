"""Assemble the report: collect -> tables and verdicts -> plots -> Markdown, HTML and CSV files.

    rnnbench report --experiment default-suite --out results/default-suite
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd

from benchmark.report import plots
from benchmark.report.collect import Collection, collect, length_axis, val_curves
from benchmark.report.render import Block, Bullets, Heading, Image, Para, Table, markdown, to_html
from benchmark.report.stats import ALPHA, LEVEL, PAIRED, WELCH
from benchmark.report.tables import by_label, model_table
from benchmark.report.verdicts import BREAKDOWN_MARGIN, Evidence, Verdict, all_verdicts, breakdown, fmt

METHOD = (
    f"Main metric: the test set, scored with each run's best-validation checkpoint. Mean and {LEVEL:.0%} confidence "
    "interval over seeds (t-distribution). Each variant is tested against the best of its task setting: "
    f"{PAIRED} by seed where both ran the same seeds, {WELCH} otherwise; p-values Holm-Bonferroni-corrected across "
    f"the comparisons within the task setting; 'not significantly worse' means adjusted p >= {ALPHA}. "
    "With 2 seeds a paired test has 1 degree of freedom, so only large, consistent gaps reach significance. "
    "Throughput: training sequences per second, validation excluded. Peak memory: CUDA allocator peak on GPU, "
    "process peak RSS on CPU, which includes the Python runtime and, for runs of one suite process, is the "
    "high-water mark of every run before it."
)


def _provenance(runs: pd.DataFrame) -> str:
    def join(col: str) -> str:
        return "; ".join(sorted(set(runs[col].astype(str)) - {""})) or "unknown"

    days = runs.start.dropna()
    when = (
        f"{days.min():%Y-%m-%d %H:%M} to {days.max():%Y-%m-%d %H:%M} UTC" if len(days) else "unknown dates"
    )
    seeds = " ".join(map(str, sorted(set(runs.seed))))
    return (f"Measured on {join('device')}, torch {join('torch_version')}, seeds {seeds}, runs {when}, "
            f"code {join('git_commit')}.")  # fmt: skip


def _ci(row) -> str:
    return f"[{fmt(row.ci_low)}, {fmt(row.ci_high)}]" if not math.isnan(row.ci_low) else "n/a (1 seed)"


def _vs_best(row) -> str:
    if row.status == "best":
        return "best"
    if row.status == "not tested":
        return row.vs_best_test or "not tested"
    return f"{row.status} (p = {fmt(row.vs_best_p, 2)}, adj. {fmt(row.vs_best_p_holm, 2)})"


def _model_block(t: pd.DataFrame) -> Table:
    metric, higher = t.metric.iloc[0], bool(t.higher_is_better.iloc[0])
    header = [
        "model", f"test {metric} {'↑' if higher else '↓'} (mean)", f"{LEVEL:.0%} CI", "n seeds", "params", "hidden",
        "train seq/s", "train time s", "wall time s", "peak memory MB", "vs best",
    ]  # fmt: skip
    rows = [
        [r.model, fmt(r.mean), _ci(r), str(r.n), f"{r.param_count:,}" if r.param_count else "-", str(r.hidden),
         f"{r.throughput_seq_per_s:,.0f}", fmt(r.train_time_s, 3), fmt(r.wall_time_s, 3), f"{r.peak_memory_mb:,.0f}",
         _vs_best(r)]  # fmt: skip
        for r in t.itertuples()
    ]
    rows.append(["*trivial baseline*", fmt(t.baseline.iloc[0])] + [""] * (len(header) - 2))
    return Table(header, rows, frozenset(i for i, r in enumerate(t.itertuples()) if r.status == "best"))


def _short(value: str) -> str:
    try:
        return fmt(float(value))
    except ValueError:
        return value


def _runs_line(c: Collection) -> str:
    counts = c.runs.status.value_counts().to_dict()
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    sweeps = f"; {len(c.sweeps)} sweep(s)" if c.sweeps else "; no sweeps"
    return f"Tracking store `{c.tracking_uri}`, experiment `{c.experiment}`: {len(c.runs)} runs ({parts or 'none'}){sweeps}."


def build_report(tracking_uri: str, experiment: str, out: Path) -> list[Path]:
    """Write report.md, report.html, plots/*.png and *.csv under ``out``; returns the paths written."""
    c = collect(tracking_uri, experiment)
    figs = out / "plots"
    figs.mkdir(parents=True, exist_ok=True)
    for stale in figs.glob("*.png"):  # a rebuild must not keep figures of runs since removed
        stale.unlink()
    finished = c.finished
    table = model_table(finished) if not finished.empty else pd.DataFrame()
    verdicts = all_verdicts(Evidence(finished, table, c.sweeps))
    doc = _header(c, experiment) + _verdict_section(verdicts) + _settings_section(c, table, figs)
    length_blocks, length_tables = _length_sections(finished, figs)
    doc += length_blocks + _sweeps_section(c, figs) + _excluded_section(c.excluded)
    return _write(out, experiment, doc, c, table, length_tables, verdicts)


def _header(c: Collection, experiment: str) -> list[Block]:
    """Title, what the store holds, and how it was measured."""
    return [
        Heading(f"rnnbench report: {experiment}", 1),
        Para(_runs_line(c) + f" Built {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC."),
        Para(_provenance(c.runs) if not c.runs.empty else "No ordinary runs."),
    ]


def _verdict_section(verdicts: list[Verdict]) -> list[Block]:
    doc: list[Block] = [Heading("Verdicts")]
    for v in verdicts:
        doc.append(Para(f"**{v.question}** {v.answer}"))
        if v.evidence:
            doc.append(Bullets(v.evidence))
    return doc


def _settings_section(c: Collection, table: pd.DataFrame, figs: Path) -> list[Block]:
    """Per task setting: the model table with its tests, validation curves, metric vs cost."""
    if table.empty:
        return []
    finished = c.finished
    curves = val_curves(c.tracking_uri, finished)
    doc: list[Block] = [Heading("Results per task setting"), Para(METHOD)]
    for label, t in by_label(table):
        runs = finished[finished.task_label == label]
        doc += [
            Heading(label, 3),
            Para(f"Trivial baseline: {t.metric.iloc[0]} = {fmt(t.baseline.iloc[0])}. {_provenance(runs)}"),
            _model_block(t),
        ]
        name = plots.slug(label)
        for fig in (
            plots.validation_curves(runs, curves[curves.run_id.isin(runs.run_id)], figs / f"curves_{name}.png"),
            plots.metric_vs_cost(t, figs / f"cost_{name}.png"),
        ):
            if fig is not None:
                doc.append(Image(fig, f"{label} figure"))
    return doc


def _length_sections(finished: pd.DataFrame, figs: Path) -> tuple[list[Block], list[pd.DataFrame]]:
    """Per task whose settings vary its sequence length: metric vs length, and where each variant falls to its baseline."""
    doc: list[Block] = []
    tables = []
    for task, runs in (finished.groupby("task") if not finished.empty else []):
        axis = length_axis(runs)
        if axis is None:
            continue
        bt = breakdown(runs, axis).assign(task=task, axis=axis.name)
        tables.append(bt)
        fig = plots.metric_vs_length(bt, axis.name, task, runs.main_metric.iloc[0], bool(runs.higher_is_better.iloc[0]),
                                     figs / f"length_{plots.slug(task)}.png")  # fmt: skip
        doc += [
            Heading(f"{task}: metric vs {axis.name}", 2),
            Para(f"A variant falls to its baseline at the first {axis.name} where it beats the trivial baseline by less "
                 f"than {BREAKDOWN_MARGIN:.0%} (mean over seeds)."),  # fmt: skip
            Table(["model", axis.name, "mean", f"{LEVEL:.0%} CI", "baseline", "gain over baseline", "beats baseline"],
                  [[r.model, fmt(r.length), fmt(r.mean), _ci(r), fmt(r.baseline), f"{r.gain:.0%}",
                    "yes" if r.beats_baseline else "**no**"] for r in bt.sort_values(["model", "length"]).itertuples()]),  # fmt: skip
            Image(fig, f"{task} metric vs length"),
        ]
    return doc, tables


def _sweeps_section(c: Collection, figs: Path) -> list[Block]:
    if not c.sweeps:
        return []
    doc: list[Block] = [
        Heading("Sweeps"),
        Para("Best value: the study's best validation score (Optuna's objective); importances: fANOVA, "
             "as the sweep logged them."),  # fmt: skip
        Table(["study", "task", "model", "trials (finished)", "best value", "best parameters"],
              [[s.study_name, s.task_label, s.model, f"{len(s.trials)} ({(s.trials.status == 'FINISHED').sum()})",
                fmt(s.best_value), ", ".join(f"{k}={_short(v)}" for k, v in s.best_params.items())]
               for s in c.sweeps]),  # fmt: skip
    ]
    for s in c.sweeps:
        for fig in (plots.importances(s, figs / f"importance_{plots.slug(s.study_name)}.png"),
                    plots.optimization_history(s, figs / f"history_{plots.slug(s.study_name)}.png")):  # fmt: skip
            if fig is not None:
                doc.append(Image(fig, f"{s.study_name} figure"))
    return doc


def _excluded_section(excluded: pd.DataFrame) -> list[Block]:
    doc: list[Block] = [Heading("Runs not counted")]
    if excluded.empty:
        return doc + [Para("None: every recorded run finished and counts once.")]
    return doc + [
        Para(f"{len(excluded)} run(s) are not in the tables above (failed, killed, still running, superseded or "
             "missing); means and tests use only the finished runs."),  # fmt: skip
        Table(["task setting", "model", "seed", "status", "run id", "reason"],
              [[r.task_label, r.model, str(r.seed), r.status, r.run_id, r.reason] for r in excluded.itertuples()]),
    ]


def _write(out: Path, experiment: str, doc: list[Block], c: Collection, table: pd.DataFrame,
           length_tables: list[pd.DataFrame], verdicts: list[Verdict]) -> list[Path]:  # fmt: skip
    written = [out / "report.md", out / "report.html", out / "runs.csv", out / "models.csv", out / "excluded_runs.csv"]
    written[0].write_text(markdown(doc, out))
    written[1].write_text(to_html(doc, f"rnnbench report: {experiment}"))
    c.runs.to_csv(written[2], index=False)
    table.to_csv(written[3], index=False)
    c.excluded.to_csv(written[4], index=False)
    if length_tables:
        written.append(out / "lengths.csv")
        pd.concat(length_tables).to_csv(written[-1], index=False)
    written.append(out / "verdicts.csv")
    pd.DataFrame([{"question": v.question, "answer": v.answer, "evidence": " | ".join(v.evidence)} for v in verdicts]).to_csv(
        written[-1], index=False
    )
    return written + sorted((out / "plots").glob("*.png"))
