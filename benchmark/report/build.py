"""Assemble the report: collect -> tables and verdicts -> plots -> Markdown, HTML and CSV files.

    rnnbench report --experiment default-suite --out results/default-suite
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd

from benchmark import record, tracking
from benchmark.config import ConfigError, Reference
from benchmark.decide import ALPHA, LEVEL, Design, Verdict as Outcome, margin_for
from benchmark.decide.ablation import AblationDecision
from benchmark.decide.margins import MarginConfig, check, merged, recorded_margins
from benchmark.decide.matched import ACCURACY, SPEED, PairDecision
from benchmark.decide.paired import BOOTSTRAP_MIN_SEEDS, margin_text
from benchmark.record import ExperimentTag
from benchmark.report import gates, noise, plots
from benchmark.report.collect import Collection, collect, length_axis, reference_rows, suite_runs, val_curves
from benchmark.report.render import Block, Bullets, Heading, Image, Para, Table, markdown, to_html
from benchmark.report.tables import by_label, model_table
from benchmark.report.verdicts import BREAKDOWN_MARGIN, Evidence, Verdict, all_verdicts, breakdown, fmt

INTERVALS = ("t", "bootstrap")


def _method(design: Design, margins_used: str, interval: str) -> str:
    """How every number of the per-setting tables and verdicts was computed (see ``benchmark.decide``)."""
    boot = (f"; with --interval bootstrap, where a variant has {BOOTSTRAP_MIN_SEEDS}+ seeds, the percentile interval of "
            "10,000 seed resamples instead (the table says which)") if interval == "bootstrap" else ""  # fmt: skip
    return (
        "Main metric: the test set, scored with each run's best-validation checkpoint. Per variant: the geometric mean over "
        "seeds for errors (ratio scale) or the mean for accuracies (proportions), with a "
        f"{LEVEL:.0%} interval that stays inside the metric's range: the t-interval of log values for errors, the "
        f"t-interval intersected with [0, 1] for accuracies{boot}. Comparisons are by seed: the ratio of geometric means "
        "(errors, throughput) or the difference in points (accuracies), with its "
        f"{LEVEL:.0%} t-interval. A comparison is *equivalent* when two one-sided t-tests (TOST, alpha {ALPHA}) put the "
        f"difference inside the equivalence margin, else *better* when the paired t-test of no difference rejects "
        f"(alpha {ALPHA}), else *undecided*, with the seeds that would likely decide it: the smallest n at which a "
        "fixed-sample test at alpha / (comparisons in the family) has 80 % power if the observed mean difference and "
        "spread were the truth (an estimate). Holm's correction within each family (one task setting, one question). "
        f"Sequential design: {design.describe()}. Margins: {margins_used}. Each variant is also compared with the best of "
        "its task setting, under the same design (descriptive: the best was picked from the same data). Throughput: training sequences per "
        "second, validation excluded. Peak memory: CUDA allocator peak on GPU, process peak RSS on CPU, which includes "
        "the Python runtime and, for runs of one suite process, is the high-water mark of every run before it."
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
    if math.isnan(row.ci_low):
        return "n/a (1 seed)" if row.n == 1 else "n/a"
    return f"[{fmt(row.ci_low)}, {fmt(row.ci_high)}]"


def _model_block(t: pd.DataFrame, references: pd.DataFrame) -> Table:
    """The setting's models, the trivial baseline, then the published numbers its configs named (marked,
    with their source and setup; never ranked or compared)."""
    metric, higher = t.metric.iloc[0], bool(t.higher_is_better.iloc[0])
    center = "geometric mean" if t.scale.iloc[0] == "ratio" else "mean"
    methods = sorted(set(t.interval) - {""})
    header = [
        "model", f"test {metric} {'↑' if higher else '↓'} ({center})", f"{LEVEL:.0%} interval ({', '.join(methods)})",
        "n seeds", "params", "hidden", "train seq/s", "train time s", "wall time s", "peak memory MB", "vs best",
    ]  # fmt: skip
    rows = [
        [r.model, fmt(r.center), _ci(r), str(r.n), f"{r.param_count:,}" if r.param_count else "-", str(r.hidden),
         f"{r.throughput_seq_per_s:,.0f}", fmt(r.train_time_s, 3), fmt(r.wall_time_s, 3), f"{r.peak_memory_mb:,.0f}",
         _vs_best(r)]  # fmt: skip
        for r in t.itertuples()
    ]
    rows.append(["*trivial baseline*", fmt(t.baseline.iloc[0])] + [""] * (len(header) - 2))
    for r in references.itertuples():
        value = fmt(r.value) if r.metric == metric else f"{r.metric} {fmt(r.value)}"
        rows.append([f"*{r.model} ({Reference.MARK})*", value] + [""] * (len(header) - 3) + [f"{r.source}: {r.setup}"])
    return Table(header, rows, frozenset(i for i, r in enumerate(t.itertuples()) if r.status == "best"))


def _vs_best(row) -> str:
    if row.status == "best" or not row.vs_best_reason:
        return row.status
    return f"{row.status}: {row.vs_best_reason.split(': ', 1)[-1]}"


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


def build_report(tracking_uri: str, experiment: str, out: Path, margins: MarginConfig | None = None,
                 interval: str = "t") -> list[Path]:  # fmt: skip
    """Write report.md, report.html, plots/*.png and *.csv under ``out``; returns the paths written.

    ``margins`` override those the suite recorded on the experiment (``benchmark.decide.margins``);
    ``interval``: ``t`` or ``bootstrap`` (per-variant intervals, where n >= 5).
    """
    if interval not in INTERVALS:
        raise ConfigError(f"--interval '{interval}': choose one of {', '.join(INTERVALS)}")
    c = collect(tracking_uri, experiment)
    finished = c.finished
    if margins:
        check(margins, {t: set(g.main_metric) for t, g in finished.groupby("task")} if not finished.empty else {}, "--margin")
    used = merged(recorded_margins(c.tags), margins or {})
    design = Design.from_json(c.tags.get(ExperimentTag.DESIGN))
    figs = out / "plots"
    figs.mkdir(parents=True, exist_ok=True)
    for stale in figs.glob("*.png"):  # a rebuild must not keep figures of runs since removed
        stale.unlink()
    table = model_table(finished, used, interval, design) if not finished.empty else pd.DataFrame()
    ev = Evidence(finished, table, c.sweeps, used, design)
    noise_blocks, noise_verdict, noise_table = noise.section(finished, used, figs)
    gate_blocks, gate_verdict, gate_table = gates.section(finished, figs)
    verdicts = all_verdicts(ev) + [v for v in (noise_verdict, gate_verdict) if v is not None]
    method = _method(design, _margins_used(finished, used, bool(recorded_margins(c.tags)), bool(margins)), interval)
    doc = _header(c, experiment) + _verdict_section(verdicts, figs) + _variants_section(ev.ablations())
    doc += _settings_section(c, table, figs, method)
    length_blocks, length_tables = _length_sections(finished, figs)
    doc += length_blocks + noise_blocks + gate_blocks + _sweeps_section(c, figs) + _excluded_section(c.excluded)
    decisions = ev.decisions(ACCURACY) + ev.decisions(SPEED) + ev.ablations()
    written = _write(out, experiment, doc, c, table, length_tables, verdicts, decisions)
    for name, extra in (("robustness.csv", noise_table), ("gates.csv", gate_table)):
        if not extra.empty:
            extra.to_csv(out / name, index=False)
            written.append(out / name)
    return written


def _margins_used(finished: pd.DataFrame, margins: MarginConfig, recorded: bool, given: bool) -> str:
    """Each task's main-metric and throughput margins, and where they came from."""
    if finished.empty:
        return "none used"
    parts = []
    for task, runs in finished.groupby("task"):
        metric, scale, _ = ACCURACY.metric(runs)
        tp, tp_scale, _ = SPEED.metric(runs)
        parts.append(f"{task}: {metric} {margin_text(scale, margin_for(margins, task, metric, scale))}, "
                     f"throughput {margin_text(tp_scale, margin_for(margins, task, tp, tp_scale))}")  # fmt: skip
    source = ("--margin given to the report" if given else "") + (" over " if given and recorded else "")
    source += "the suite's report.margins" if recorded else ("" if given else "the defaults")
    return "; ".join(parts) + f" ({source})"


def attach_report(tracking_uri: str, experiment: str, out: Path, written: list[Path]) -> list[str]:
    """Log the report's files onto every suite parent run of the experiment (artifact folder ``report/``).

    Returns the parent runs' ids (none: the experiment has no suite runs). In MLflow's UI the
    suite's run then opens ``report/report.html`` in its Artifacts tab.
    """
    mlflow = tracking.client(tracking_uri)
    parents = suite_runs(mlflow, experiment)
    for parent in parents:
        for path in written:
            folder = Path(record.REPORT_ARTIFACTS) / path.relative_to(out).parent
            mlflow.log_artifact(parent, str(path), folder.as_posix())
    return parents


def _header(c: Collection, experiment: str) -> list[Block]:
    """Title, what the store holds, and how it was measured."""
    return [
        Heading(f"rnnbench report: {experiment}", 1),
        Para(_runs_line(c) + f" Built {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC."),
        Para(_provenance(c.runs) if not c.runs.empty else "No ordinary runs."),
    ]


def _verdict_section(verdicts: list[Verdict], figs: Path) -> list[Block]:
    doc: list[Block] = [Heading("Verdicts")]
    for v in verdicts:
        doc.append(Para(f"**{v.question}** {v.answer}"))
        if v.evidence:
            doc.append(Bullets(v.evidence))
        if v.pooled:
            title = f"{v.question}\neach task setting (95 % t-interval) and the pooled random-effects estimate (95 %)"
            fig = plots.forest(v.pooled, title, figs / f"forest_{plots.slug(v.pooled[0].question)}.png")
            if fig is not None:
                doc.append(Image(fig, f"forest plot: {v.question}"))
    return doc


VERSUS_VANILLA = {Outcome.A_BETTER: "better", Outcome.B_BETTER: "**worse**", Outcome.EQUIVALENT: "equivalent", Outcome.UNDECIDED: "undecided"}


def _variants_section(decisions: list[AblationDecision]) -> list[Block]:
    """Greff et al.'s table: each cell variant (rows) against its family's vanilla in each task setting (columns)."""
    if not decisions:
        return []
    labels = list(dict.fromkeys(d.label for d in decisions))
    cells = {(d.pair, d.label): d.decision for d in decisions}
    pairs = list(dict.fromkeys(d.pair for d in decisions))
    rows = [
        [p.variant, p.vanilla, p.kind.split(", ", 1)[1]]
        + [f"{VERSUS_VANILLA[x.verdict]}: {x.effect_text()}" if (x := cells.get((p, label))) else "-" for label in labels]
        for p in pairs
    ]  # fmt: skip
    return [
        Heading("Cell variants against their family's vanilla"),
        Para("Each variant against the vanilla cell of its family with the same layers and direction (Greff et al.'s V, "
             "`lstm-peep`, for the LSTM family where it ran, else `lstm`; `gru` for the GRU family), by seed on the "
             "task's main metric: the variant's ratio of geometric means to the vanilla's (errors) or its difference "
             "in points (accuracies), with the 95 % interval, decided as in the tables below (TOST for equivalence, "
             "Holm over the variants of one task setting). *better*/*worse* is the variant's side. The pooled answer "
             "per variant is in the verdict above and in overall.csv."),  # fmt: skip
        Table(["variant", "vanilla", "structure", *labels], rows),
    ]


def _settings_section(c: Collection, table: pd.DataFrame, figs: Path, method: str) -> list[Block]:
    """Per task setting: the model table with its comparisons, validation curves, metric vs cost."""
    if table.empty:
        return []
    finished = c.finished
    curves = val_curves(c.tracking_uri, finished)
    references = reference_rows(c.runs)
    doc: list[Block] = [Heading("Results per task setting"), Para(method)]
    for label, t in by_label(table):
        runs = finished[finished.task_label == label]
        refs = references[references.task_label == label]
        published = (f" Rows marked *{Reference.MARK}* are numbers from the literature that the config names, under the "
                     "setup their last column states: shown for orientation, in no statistic, verdict or plot.") if len(refs) else ""  # fmt: skip
        doc += [
            Heading(label, 3),
            Para(f"Trivial baseline: {t.metric.iloc[0]} = {fmt(t.baseline.iloc[0])}. {_provenance(runs)}{published}"),
            _model_block(t, refs),
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
        bt = breakdown(runs, axis).assign(task=task, axis=axis.name, scale=ACCURACY.metric(runs)[1].name)
        tables.append(bt)
        fig = plots.metric_vs_length(bt, axis.name, task, runs.main_metric.iloc[0], bool(runs.higher_is_better.iloc[0]),
                                     figs / f"length_{plots.slug(task)}.png")  # fmt: skip
        doc += [
            Heading(f"{task}: metric vs {axis.name}", 2),
            Para(f"A variant falls to its baseline at the first {axis.name} where it beats the trivial baseline by less "
                 f"than {BREAKDOWN_MARGIN:.0%} ({plots.center_name(bt)} over seeds)."),  # fmt: skip
            Table(["model", axis.name, plots.center_name(bt), f"{LEVEL:.0%} interval", "baseline", "gain over baseline", "beats baseline"],
                  [[r.model, fmt(r.length), fmt(r.center), _ci(r), fmt(r.baseline), f"{r.gain:.0%}",
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
           length_tables: list[pd.DataFrame], verdicts: list[Verdict], decisions: list[PairDecision | AblationDecision]) -> list[Path]:  # fmt: skip
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
    written.append(out / "references.csv")  # published numbers, apart from every table of ours
    reference_rows(c.runs).to_csv(written[-1], index=False)
    written.append(out / "decisions.csv")
    pd.DataFrame([_decision_row(d) for d in decisions], columns=DECISION_COLUMNS).to_csv(written[-1], index=False)
    written.append(out / "overall.csv")
    pd.DataFrame([_pooled_row(v.question, p) for v in verdicts for p in v.pooled], columns=OVERALL_COLUMNS).to_csv(
        written[-1], index=False
    )
    return written + sorted((out / "plots").glob("*.png"))


DECISION_COLUMNS = ["task_label", "pair", "pair_type", "question", "metric", "scale", "margin", "design", "n", "looks",
                    "estimate", "ci_low", "ci_high", "p_difference", "p_equivalence", "family", "verdict", "seeds_needed",
                    "reason"]  # fmt: skip
OVERALL_COLUMNS = ["question", "pair_type", "a", "b", "k", "effect_margins", "ci_low", "ci_high", "tau2", "i2",
                   "p_difference", "p_equivalence", "verdict", "wins", "equivalent", "losses", "undecided", "reason"]  # fmt: skip


def _decision_row(d: PairDecision | AblationDecision) -> dict:
    x = d.decision
    return {"task_label": d.label, "pair": d.pair.name, "pair_type": d.pair.kind, "question": d.question.name,
            "metric": d.metric, "scale": x.scale.name, "margin": x.margin, "design": x.design.describe(), "n": x.n,
            "looks": x.looks, "estimate": x.estimate, "ci_low": x.ci_low, "ci_high": x.ci_high,
            "p_difference": x.p_difference, "p_equivalence": x.p_equivalence, "family": x.family,
            "verdict": x.verdict.value, "seeds_needed": x.seeds_needed, "reason": x.reason}  # fmt: skip


def _pooled_row(question: str, p) -> dict:
    m = p.meta
    return {"question": question, "pair_type": p.kind, "a": p.a, "b": p.b, "k": m.k, "effect_margins": m.estimate,
            "ci_low": m.ci_low, "ci_high": m.ci_high, "tau2": m.tau2, "i2": m.i2, "p_difference": p.p_difference,
            "p_equivalence": p.p_equivalence, "verdict": p.verdict.value, **p.tally, "reason": p.reason}  # fmt: skip
