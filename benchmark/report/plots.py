"""The report's figures (matplotlib, Agg backend: no display needed). Each function writes one PNG."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmark.report.verdicts import BREAKDOWN_MARGIN  # noqa: E402

DPI = 110


def _arrow(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def _log_if_wide(ax, values) -> None:
    v = np.asarray([x for x in values if x == x], dtype=float)
    if len(v) and (v > 0).all() and v.max() / v.min() > 20:
        ax.set_yscale("log")


def _spread(t: pd.DataFrame) -> np.ndarray:
    """Error bars from the seeds' min to max: with 2 seeds a 95 % t interval is 12.7 s.d. wide and hides the data."""
    return np.vstack([t["center"] - t["min"], t["max"] - t["center"]]).clip(min=0)


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def center_name(table: pd.DataFrame) -> str:
    return "geometric mean" if "scale" in table and (table["scale"] == "ratio").all() else "mean"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_")


def validation_curves(runs: pd.DataFrame, curves: pd.DataFrame, path: Path) -> Path | None:
    """Validation main metric per epoch: mean over seeds, band from min to max."""
    data = curves.merge(runs[["run_id", "model", "seed"]], on="run_id")
    if data.empty:
        return None
    metric, higher, base = runs.main_metric.iloc[0], bool(runs.higher_is_better.iloc[0]), runs.baseline.iloc[0]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for model, g in data.groupby("model", sort=False):
        by_epoch = g.pivot_table(index="epoch", columns="seed", values="value")
        mean = by_epoch.mean(axis=1)
        (line,) = ax.plot(mean.index, mean.values, marker="o", ms=3, label=f"{model} (n={by_epoch.shape[1]})")
        if by_epoch.shape[1] > 1:
            ax.fill_between(by_epoch.index, by_epoch.min(axis=1), by_epoch.max(axis=1), color=line.get_color(), alpha=0.2)
    if base == base:
        ax.axhline(base, color="black", ls="--", lw=1, label="trivial baseline")
    _log_if_wide(ax, list(data.value) + [base])
    ax.set(xlabel="epoch (0 = the first)", ylabel=f"validation {metric} ({_arrow(higher)})",
           title=f"{runs.task_label.iloc[0]}\nvalidation {metric}, mean over seeds (band: min-max)")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)


def metric_vs_length(table: pd.DataFrame, axis: str, task: str, metric: str, higher: bool, path: Path) -> Path:
    """Mean test metric (bars: min-max over seeds) against the sequence length ``axis``; crosses where a variant falls to its baseline."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for model, g in table.groupby("model", sort=False):
        g = g.sort_values("length")
        bar = ax.errorbar(g.length, g["center"], yerr=_spread(g), marker="o", capsize=3, label=model)
        fails = g[~g.beats_baseline]
        if len(fails):
            first = fails.iloc[0]
            ax.plot(first.length, first["center"], "x", ms=12, mew=2.5, color=bar[0].get_color())
    base = table.groupby("length").baseline.first()
    ax.plot(base.index, base.values, "k--", lw=1, label="trivial baseline")
    _log_if_wide(ax, list(table["center"]) + list(base.values))
    ax.set(xlabel=axis, ylabel=f"test {metric} ({_arrow(higher)})",
           title=f"{task}: test {metric} vs {axis}, {center_name(table)} (bars: min-max over seeds)\n"
                 f"x: first length where it beats the baseline by less than {BREAKDOWN_MARGIN:.0%}")  # fmt: skip
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)


def pareto_front(cost: np.ndarray, metric: np.ndarray, higher: bool) -> np.ndarray:
    """Boolean mask of the points no other point beats on both cost (lower) and metric."""
    m = -metric if higher else metric
    keep = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        others = (cost <= cost[i]) & (m <= m[i]) & ((cost < cost[i]) | (m < m[i]))
        keep[i] = not others.any() and not (math.isnan(cost[i]) or math.isnan(m[i]))
    return keep


def metric_vs_cost(table: pd.DataFrame, path: Path) -> Path | None:
    """Mean test metric against parameter count and against training time, Pareto front marked."""
    t = table.dropna(subset=["center"])
    if t.empty:
        return None
    metric, higher = t.metric.iloc[0], bool(t.higher_is_better.iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    costs = (("param_count", "parameters"), ("train_time_s", "training time (s, mean over seeds)"))
    for ax, (col, label) in zip(axes, costs):
        cost, value = t[col].astype(float).to_numpy(), t["center"].to_numpy()
        front = pareto_front(cost, value, higher)
        ax.errorbar(cost, value, yerr=_spread(t), fmt="o", color="tab:blue", capsize=3, alpha=0.7)
        order = np.argsort(cost[front])
        ax.plot(cost[front][order], value[front][order], "-", color="tab:red", lw=1.5, label="Pareto front")
        ax.scatter(cost[front], value[front], s=90, facecolors="none", edgecolors="tab:red", lw=1.5)
        for x, y, name in zip(cost, value, t.model):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        base = t.baseline.iloc[0]
        if base == base:
            ax.axhline(base, color="black", ls="--", lw=1, label="trivial baseline")
        _log_if_wide(ax, list(value) + [base])
        ax.set(xlabel=label, ylabel=f"test {metric} ({_arrow(higher)})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    what = f"test {metric} vs cost ({center_name(t)}; bars: min-max over seeds; red: Pareto front)"
    fig.suptitle(f"{t.task_label.iloc[0]}\n{what}", fontsize=10)
    return save(fig, path)


def importances(sweep, path: Path) -> Path | None:
    if not sweep.importances:
        return None
    items = sorted(sweep.importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(items) + 1.8))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:green")
    ax.set(xlabel="fANOVA importance", title=f"{sweep.study_name}\nhyperparameter importance")
    ax.title.set_fontsize(10)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def optimization_history(sweep, path: Path) -> Path | None:
    trials = sweep.trials.dropna(subset=["value"])
    if trials.empty:
        return None
    best = trials.value.cummax() if sweep.higher_is_better else trials.value.cummin()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(trials.number, trials.value, "o", alpha=0.6, label="trial (best validation)")
    ax.step(trials.number, best, where="post", color="tab:red", label="best so far")
    _log_if_wide(ax, trials.value)
    left_out = len(sweep.trials) - len(trials)
    note = f"\n({left_out} pruned or failed trial(s) without a final value not shown)" if left_out else ""
    ax.set(xlabel="trial", ylabel=f"validation {sweep.main_metric} ({_arrow(sweep.higher_is_better)})",
           title=f"{sweep.study_name}\noptimization history{note}")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def forest(answers: list, title: str, path: Path) -> Path | None:
    """Forest plot: each task setting's effect in margins (95 % interval) and each pair type's pooled
    estimate (diamond), with the equivalence region (|effect| < 1 margin) shaded."""
    rows = []  # (label, effect, low, high, pooled?)
    mixed = len({p.question for p in answers}) > 1  # one figure for several questions: each block says which
    for p in answers:
        rows.append((f"{p.question + chr(10) if mixed else ''}{p.kind} ({p.a} vs {p.b})", None, None, None, "header"))
        for s in p.studies:
            if s.usable:
                low, high = s.interval()
                rows.append((f"  {s.label}  (n={s.decision.n})", s.effect, low, high, "study"))
            else:
                rows.append((f"  {s.label}  (not pooled)", None, None, None, "note"))
        if p.meta.k:
            rows.append(("  pooled (random effects)", p.meta.estimate, p.meta.ci_low, p.meta.ci_high, "pooled"))
    if not any(r[1] is not None for r in rows):
        return None
    fig, ax = plt.subplots(figsize=(9, 0.36 * len(rows) + 1.8))
    ax.axvspan(-1, 1, color="tab:green", alpha=0.12)
    ax.axvline(0, color="black", lw=1)
    for i, (label, effect, low, high, what) in enumerate(rows):
        y = len(rows) - i
        if what == "study":
            ax.errorbar(effect, y, xerr=[[effect - low], [high - effect]], fmt="s", color="tab:blue", capsize=3, ms=5)
        elif what == "pooled":
            ax.fill([low, effect, high, effect], [y, y + 0.3, y, y - 0.3], color="tab:red")
    ax.set_yticks([len(rows) - i for i in range(len(rows))], [r[0] for r in rows], fontsize=8)
    for tick, r in zip(ax.get_yticklabels(), rows):
        if r[4] == "header":
            tick.set_fontweight("bold")
    first = answers[0]
    if len({(p.a, p.b) for p in answers}) == 1:
        sides = f"> 0: {first.a.split(' ')[0]} {first.better}, < 0: {first.b.split(' ')[0]} {first.better}"
    else:  # one axis for several pairs: name the sides by their place in each header
        sides = f"> 0: the first of each pair {first.better}, < 0: the second {first.better}"
    ax.set(xlabel="\n".join(textwrap.wrap(f"effect in equivalence margins ({sides})", 70)),
           title="\n".join(textwrap.wrap(title, 70)) + "\ngreen: equivalent, within one margin")  # fmt: skip
    ax.title.set_fontsize(10)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)
