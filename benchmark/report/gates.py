"""The report's gate section: "How do the gates behave?"

Reads the ``gates/<layer>/<direction>/<gate>/<stat>`` metrics ``rnnbench gates`` logged on each run
(``record.parse_gate_metric``): per variant and task setting, each gate's mean activation and the
fractions of its values left-saturated (< 0.1) and right-saturated (> 0.9) over the test set's
valid steps (Karpathy et al. 2015), averaged over seeds. Where a task's settings vary the sequence
length, the gate that decides what is kept of the state (LSTM forget, GRU update; first layer,
forward) is compared between the longest and the shortest length seed by seed
(``benchmark.decide``, proportion scale, ±1 point): does it saturate more on longer sequences?
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark import record
from benchmark.decide import compare_paired
from benchmark.decide.matched import seed_values
from benchmark.report.collect import length_axis
from benchmark.report.plots import plt, save, slug
from benchmark.report.render import Block, Heading, Image, Para, Table
from benchmark.report.verdicts import Verdict
from benchmark.scales import PROPORTION

QUESTION = "How do the gates behave?"
KEEP_GATE = {"lstm": "forget", "gru": "update"}  # the share of the old state kept, in each family's vanilla cell


def gate_columns(runs: pd.DataFrame) -> dict[tuple[str, str, str], dict[str, str]]:
    """(layer, direction, gate) -> stat -> column, for the gate metrics present in ``runs``."""
    found: dict[tuple[str, str, str], dict[str, str]] = {}
    for column in runs.columns:
        parsed = record.parse_gate_metric(str(column))
        if parsed and runs[column].notna().any():
            found.setdefault(parsed[:3], {})[parsed[3]] = column
    return found


def saturation_table(finished: pd.DataFrame) -> pd.DataFrame:
    """One row per task setting, model, layer, direction and gate: each statistic's mean over seeds, and n."""
    columns = gate_columns(finished)
    rows = []
    for (label, model), g in finished.groupby(["task_label", "model"]):
        for (layer, direction, gate), stats in sorted(columns.items()):
            seen = g.dropna(subset=list(stats.values()))
            if seen.empty:
                continue
            rows.append({"task_label": label, "task": seen.task.iloc[0], "cell": seen.cell.iloc[0], "model": model,
                         "layer": layer, "direction": direction, "gate": gate, "n": len(seen),
                         **{stat: seen[col].mean() for stat, col in stats.items()}})  # fmt: skip
    return pd.DataFrame(rows)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if x == x else "n/a"


def _length_lines(finished: pd.DataFrame, figs: Path) -> tuple[list[str], list[Block]]:
    """Per task that varies its length and per model: the keep gate's right saturation, longest vs shortest."""
    lines, blocks = [], []
    for task, runs in finished.groupby("task"):
        axis = length_axis(runs)
        if axis is None:
            continue
        lengths = pd.to_numeric(runs[axis.column])
        points = []
        for model, g in runs.groupby("model"):
            gate = KEEP_GATE.get(str(g.cell.iloc[0]))
            column = record.gate_metric(0, 0, gate, "right_sat") if gate else None
            if column not in g or g[column].isna().all():
                continue
            at = pd.to_numeric(g[axis.column])
            short, long = g[at == lengths.min()], g[at == lengths.max()]
            d = compare_paired(seed_values(long, column), seed_values(short, column), PROPORTION, PROPORTION.default_margin,
                               higher_is_better=True, names=(f"{axis.name}={lengths.max():g}", f"{axis.name}={lengths.min():g}"),
                               better="more saturated")  # fmt: skip
            lines.append(f"{task}, {model}: {gate} gate right-saturated share, {d.reason}")
            for length, h in g.groupby(at):
                points.append((model, gate, float(length), h[column].mean(), h[column].min(), h[column].max()))
        if points:
            blocks.append(Image(_plot(points, task, axis.name, figs / f"gates_length_{slug(task)}.png"), f"{task} gates vs length"))
    return lines, blocks


def _plot(points: list, task: str, axis: str, path: Path) -> Path:
    data = pd.DataFrame(points, columns=["model", "gate", "length", "mean", "min", "max"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (model, gate), g in data.groupby(["model", "gate"]):
        g = g.sort_values("length")
        ax.errorbar(g.length, g["mean"], yerr=[g["mean"] - g["min"], g["max"] - g["mean"]], marker="o", capsize=3,
                    label=f"{model} {gate}")  # fmt: skip
    ax.set(xlabel=axis, ylabel="share of values > 0.9", ylim=(-0.02, 1.02),
           title=f"{task}: right-saturated share of the keep gate (layer 0, forward), mean over seeds (bars: min-max)")  # fmt: skip
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def section(finished: pd.DataFrame, figs: Path) -> tuple[list[Block], Verdict | None, pd.DataFrame]:
    """The section's blocks, its verdict (None: no run's gates were inspected) and the saturation table."""
    table = saturation_table(finished) if not finished.empty else pd.DataFrame()
    if table.empty:
        return [], None, table
    doc: list[Block] = [
        Heading(QUESTION),
        Para("Each run's checkpoint loaded into the reference cells and run over its test split (`rnnbench gates`). Per gate, "
             "over every valid step and unit (padding excluded): the mean activation and the shares left-saturated "
             "(< 0.1, nearly closed) and right-saturated (> 0.9, nearly open), as Karpathy, Johnson & Fei-Fei (2015) count "
             "them; means over seeds. GRU's update gate is the weight kept on the previous state (1: copy it)."),  # fmt: skip
        Table(["task setting", "model", "layer", "direction", "gate", "n seeds", "mean", "< 0.1", "> 0.9"],
              [[r.task_label, r.model, r.layer, r.direction, r.gate, str(r.n), f"{r.mean:.3f}", _pct(r.left_sat),
                _pct(r.right_sat)] for r in table.itertuples()]),  # fmt: skip
    ]
    lines, blocks = _length_lines(finished, figs)
    doc += blocks
    is_keep = pd.Series([KEEP_GATE.get(c) == g for c, g in zip(table.cell, table.gate)], index=table.index)
    keep = table[is_keep & (table.layer == "l0") & (table.direction == "fwd")]
    summary = "; ".join(f"{r.model} {r.gate} on {r.task_label}: {_pct(r.right_sat)} open, {_pct(r.left_sat)} closed"
                        for r in keep.itertuples())  # fmt: skip
    answer = f"Keep gates (layer 0, forward), share of values right- / left-saturated: {summary or 'none inspected'}."
    if lines:
        answer += " Longer sequences vs shorter: see below."
    return doc, Verdict(QUESTION, answer, lines), table
