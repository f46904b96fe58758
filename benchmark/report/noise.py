"""The report's noise section: "Which degrades less under noise, GRU or LSTM?"

Reads the ``robust/<kind>/<level>/<metric>`` metrics ``rnnbench robustness`` logged on each run
(``record.parse_robust_metric``) for the task's main metric. Per run and kind, two numbers sum up
its degradation curve over the finite levels it was evaluated at (the clean level of ``snr``,
+inf dB, is the run's own test value):

- *area*: the area under the curve divided by the level range (trapezoids), i.e. the metric's
  average over that range (the metric at that level when only one was run); on the metric's scale;
- *retained*: area / clean test value, a ratio (errors grow above 1, accuracies fall below 1),
  compared on the ratio scale with its default ±10 % margin: how much of its clean performance a
  model keeps, whatever that clean performance was.

Matched GRU-vs-LSTM pairs are decided on both with ``benchmark.decide`` (seed by seed, Holm over the
pairs of a task setting), and pooled across task settings per pair type.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import record
from benchmark.decide import location
from benchmark.decide.margins import MarginConfig
from benchmark.decide.matched import Question, decide_setting, overall
from benchmark.report.plots import plt, save, slug
from benchmark.report.render import Block, Heading, Image, Para, Table
from benchmark.report.tables import by_label
from benchmark.report.verdicts import NOT_ASKED, Verdict, fmt
from benchmark.scales import RATIO

QUESTION = "Which degrades less under noise, GRU or LSTM?"


def curves(runs: pd.DataFrame) -> dict[str, dict[float, str]]:
    """kind -> level -> column of the main metric, over the columns of one task setting's runs."""
    main = str(runs.main_metric.iloc[0])
    found: dict[str, dict[float, str]] = {}
    for column in runs.columns:
        parsed = record.parse_robust_metric(str(column))
        if parsed and parsed[2] == main and runs[column].notna().any():
            found.setdefault(parsed[0], {})[parsed[1]] = column
    return found


def summarize(runs: pd.DataFrame, levels: dict[float, str]) -> pd.DataFrame:
    """``runs`` with columns ``area`` and ``retained`` over the finite levels (see the module doc)."""
    finite = sorted(v for v in levels if math.isfinite(v))
    values = runs[[levels[v] for v in finite]].to_numpy(dtype=float)
    if len(finite) == 1:
        area = values[:, 0]
    else:
        area = np.trapezoid(values, finite, axis=1) / (finite[-1] - finite[0])
    return runs.assign(area=area, retained=area / runs.value.to_numpy(dtype=float))


def _decide(runs: pd.DataFrame, kind: str, margins: MarginConfig):
    area = decide_setting(runs, Question(f"{kind}: area under the degradation curve", "area"), margins)
    retained_runs = runs.assign(scale=RATIO.name, main_metric=f"{runs.main_metric.iloc[0]} retained")
    retained = decide_setting(retained_runs, Question(f"{kind}: share of the clean metric retained", "retained"), margins)
    return area, retained


def _plot(runs: pd.DataFrame, levels: dict[float, str], label: str, kind: str, path: Path) -> Path:
    ordered = sorted(levels, reverse=math.isinf(max(levels)))  # from clean to noisiest
    x = np.arange(len(ordered))
    metric, higher = runs.main_metric.iloc[0], bool(runs.higher_is_better.iloc[0])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for model, g in runs.groupby("model"):
        v = g[[levels[lv] for lv in ordered]].to_numpy(dtype=float)
        (line,) = ax.plot(x, v.mean(0), marker="o", label=f"{model} (n={len(g)})")
        if len(g) > 1:
            ax.fill_between(x, v.min(0), v.max(0), color=line.get_color(), alpha=0.2)
    base = runs.baseline.iloc[0]
    if base == base:
        ax.axhline(base, color="black", ls="--", lw=1, label="trivial baseline (clean)")
    ax.set_xticks(x, [record.level_text(v) for v in ordered])
    ax.set(xlabel=f"{kind} level", ylabel=f"test {metric} ({'higher' if higher else 'lower'} is better)",
           title=f"{label}: test {metric} under {kind}, mean over seeds (band: min-max)")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def section(finished: pd.DataFrame, margins: MarginConfig, figs: Path) -> tuple[list[Block], Verdict | None, pd.DataFrame]:
    """The section's blocks, its verdict (None: no run was evaluated under noise) and a tidy table of the curves."""
    doc: list[Block] = []
    rows, decided = [], {}
    for label, runs in by_label(finished) if not finished.empty else []:
        for kind, levels in sorted(curves(runs).items()):
            done = runs.dropna(subset=list(levels.values()))
            if done.empty:
                continue
            summed = summarize(done, levels)
            _, scale, _ = Question("", "value").metric(done)
            ordered = sorted(levels, reverse=math.isinf(max(levels)))
            table_rows = []
            for model, g in summed.groupby("model"):
                cells = []
                for lv in ordered:
                    spot = location(g[levels[lv]], scale)
                    cells.append(fmt(spot.center))
                    rows.append({"task_label": label, "kind": kind, "level": lv, "model": model, "center": spot.center,
                                 "ci_low": spot.low, "ci_high": spot.high, "n": len(g)})  # fmt: skip
                table_rows.append([model, str(len(g)), *cells, fmt(location(g.area, scale).center),
                                   fmt(location(g.retained, RATIO).center)])  # fmt: skip
            area, retained = _decide(summed, kind, margins)
            decided.setdefault(kind, ([], []))
            decided[kind][0].extend(area)
            decided[kind][1].extend(retained)
            metric = done.main_metric.iloc[0]
            doc += [
                Heading(f"{label}: {metric} under {kind}", 3),
                Table(["model", "n seeds", *[f"{kind} {record.level_text(v)}" for v in ordered], "area / range", "retained"],
                      table_rows),  # fmt: skip
                Image(_plot(done, levels, label, kind, figs / f"noise_{slug(label)}_{slug(kind)}.png"), f"{label} under {kind}"),
            ]
            doc += [Para(f"{d.pair.name}, {d.question.name}: {d.decision.reason}") for d in area + retained]
    if not decided:
        return [], None, pd.DataFrame(rows)
    lead = [
        Heading(QUESTION),
        Para("Each run's checkpoint re-evaluated on its perturbed test split (`rnnbench robustness`; the same seeded "
             "perturbations for every model). Columns: the main metric at each level (geometric mean over seeds for "
             "errors, mean for accuracies); *area / range*: the area under the curve over the finite levels divided by "
             "their range (the metric's average over the noise range); *retained*: area / the run's clean test value "
             "(geometric mean; errors above 1 and accuracies below 1 mean degradation). GRU-vs-LSTM pairs are decided "
             "seed by seed on both, as the main comparison is."),  # fmt: skip
    ]
    answers, evidence, pooled = [], [], []
    for kind, (area, retained) in sorted(decided.items()):
        for decisions in (retained, area):
            if not decisions:
                continue
            for p in overall(decisions):
                answers.append(f"{decisions[0].question.name}, {p.kind} ({p.a} vs {p.b}): {p.reason}")
                pooled.append(p)
            evidence += [f"{d.label}, {d.pair.name}, {d.question.name}: {d.decision.reason}" for d in decisions]
    if not answers:
        verdict = Verdict(QUESTION, NOT_ASKED + "no task setting has a GRU and an LSTM variant evaluated under noise.")
    else:
        verdict = Verdict(QUESTION, "; ".join(answers) + ".", evidence, pooled)
    return lead + doc, verdict, pd.DataFrame(rows)
