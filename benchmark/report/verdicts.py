"""Short answers to the questions the GRU-vs-LSTM literature keeps asking, each with its evidence.

Every verdict function takes the report's data and returns a ``Verdict``; "inconclusive" is an
answer when the data do not decide. ``VERDICTS`` lists them in the order the report shows them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from benchmark import record
from benchmark.report.collect import LengthAxis, length_axis
from benchmark.report.stats import ALPHA, compare, holm, mean_ci, ratio_ci
from benchmark.report.tables import by_label, seed_values

BREAKDOWN_MARGIN = 0.10  # a variant "falls to its baseline" once it beats it by less than 10 %
GRU_OVER_LSTM_LAYER = 3 / 4  # gate blocks per layer, GRU 3 vs LSTM 4: torch.nn's weights are 3H vs 4H rows


@dataclass
class Verdict:
    question: str
    answer: str  # one line; starts with "Inconclusive" when the data do not decide
    evidence: list[str] = field(default_factory=list)

    @property
    def conclusive(self) -> bool:
        return not self.answer.lower().startswith("inconclusive")


@dataclass
class Evidence:
    """What the verdicts read: finished runs, the model table, sweeps."""

    finished: pd.DataFrame
    table: pd.DataFrame
    sweeps: list


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def _p(c) -> str:
    if math.isnan(c.p):
        return c.test
    return f"{c.test} over {c.n} seeds, p = {fmt(c.p, 2)}, Holm-adjusted p = {fmt(c.p_holm, 2)}"


def _effect(c, significant: str) -> str:
    if math.isnan(c.p):
        return "not tested"
    return significant if c.significant else "no significant difference"


def _cell_pairs(task: pd.DataFrame) -> list[tuple[str, str]]:
    """(gru variant, lstm variant) pairs of equal structure (layers, direction) within a task setting."""
    shape = {m: (g.cell.iloc[0], g.layers.iloc[0], g.bidirectional.iloc[0]) for m, g in task.groupby("model")}
    return [
        (g, l)
        for g, (gc, *gs) in shape.items()
        for l, (lc, *ls) in shape.items()
        if gc == "gru" and lc == "lstm" and gs == ls
    ]


# ----------------------------------------------------------------------------- the questions


def accuracy(ev: Evidence) -> Verdict:
    q = "Which is more accurate, GRU or LSTM?"
    lines, wins = [], []
    for label, task in by_label(ev.finished):
        pairs = _cell_pairs(task)
        tests = [compare(seed_values(task[task.model == g]), seed_values(task[task.model == l])) for g, l in pairs]
        holm(tests)
        higher = bool(task.higher_is_better.iloc[0])
        metric = task.main_metric.iloc[0]
        for (g, l), c in zip(pairs, tests):
            mg, ml = task[task.model == g].value.mean(), task[task.model == l].value.mean()
            better = g if (mg > ml) == higher else l
            if c.significant:
                wins.append(task[task.model == better].cell.iloc[0])
            lines.append(f"{label}: {g} {metric} {fmt(mg)} vs {l} {fmt(ml)} ({_p(c)}): " + _effect(c, f"{better} better"))
    if not lines:
        return Verdict(q, "Inconclusive: no task setting has finished runs of both a GRU and an LSTM variant.")
    if not wins:
        untested = sum("not tested" in line for line in lines)
        note = f" ({untested} not testable: fewer than 2 seeds)" if untested else ""
        return Verdict(q, f"Inconclusive: no significant difference in {len(lines)} comparison(s){note}.", lines)
    if len(set(wins)) == 1:
        rest = " (the rest not significant)" if len(wins) < len(lines) else ""
        return Verdict(q, f"{wins[0].upper()}, significantly, in {len(wins)} of {len(lines)} comparison(s){rest}.", lines)
    return Verdict(q, "It depends on the task: each cell wins somewhere.", lines)


def parameters(ev: Evidence) -> Verdict:
    q = "Does GRU have fewer parameters than LSTM at equal hidden size?"
    gru, lstm = record.cell_param_count("gru"), record.cell_param_count("lstm")
    lines = []
    for name, runs in ev.finished.groupby("task"):
        counted = runs.dropna(subset=[gru, lstm]) if {gru, lstm} <= set(runs.columns) else runs.iloc[:0]
        if counted.empty:
            lines.append(f"{name}: its runs do not record per-cell parameter counts (recorded before rnnbench logged them); left out")
            continue
        # the plainest GRU run (fewest layers, one direction) speaks for the task; its record has both counts
        order = counted.assign(_gru=counted.cell != "gru", _layers=pd.to_numeric(counted.layers), _bi=counted.bidirectional)
        run = order.sort_values(["_gru", "_layers", "_bi"], kind="stable").iloc[0]
        g, l = int(float(run[gru])), int(float(run[lstm]))
        shape = "" if (int(run.layers), run.bidirectional) == (1, "false") else (
            f"{run.layers} layers{', bidirectional' if run.bidirectional == 'true' else ''}, "
        )  # fmt: skip
        lines.append(
            f"{name} ({shape}hidden {run.hidden}, whole network with input layer and head): GRU {g:,} vs LSTM "
            f"{l:,} parameters, ratio {g / l:.4f}"
        )
    answer = (
        f"Yes: a GRU layer has exactly {GRU_OVER_LSTM_LAYER:.2f}x the parameters of an LSTM layer of the same size "
        "(3 gate blocks instead of 4, torch.nn counts)"
    )
    if any("ratio" in line for line in lines):
        answer += "; whole networks per task below."
    return Verdict(q, answer, lines)


def speed(ev: Evidence) -> Verdict:
    q = "Is GRU faster to train than LSTM on this hardware?"
    lines, verdicts = [], []
    for label, task in by_label(ev.finished):
        for g, l in _cell_pairs(task):
            a, b = task[task.model == g], task[task.model == l]
            r, lo, hi, test = ratio_ci(seed_values(a, "throughput"), seed_values(b, "throughput"))
            ok = not (math.isnan(lo) or lo <= 1 <= hi)
            verdicts.append(("faster" if r > 1 else "slower") if ok else "undecided")
            lines.append(
                f"{label}: {g} {fmt(a.throughput.mean())} vs {l} {fmt(b.throughput.mean())} training seq/s "
                f"(hidden {a.hidden.iloc[0]} vs {b.hidden.iloc[0]}): ratio {r:.3f}"
                + (f", 95 % CI {lo:.3f}-{hi:.3f} ({test}, {min(len(a), len(b))} seeds)" if not math.isnan(lo) else f" ({test})")
            )
    if not lines:
        return Verdict(q, "Inconclusive: no task setting has finished runs of both a GRU and an LSTM variant.")
    devices = "; ".join(sorted(set(ev.finished.device) - {""})) or "unknown device"
    settled = set(verdicts) - {"undecided"}
    if len(settled) == 1:
        direction = settled.pop()
        word = "Yes" if direction == "faster" else "No"
        decided = verdicts.count(direction)
        where = "every setting measured" if decided == len(verdicts) else f"{decided} of {len(verdicts)} settings"
        rest = "" if decided == len(verdicts) else "; the rest undecided"
        return Verdict(q, f"{word}, on {devices}: GRU trains {direction} in {where} (throughput-ratio CI excludes 1{rest}).", lines)
    if len(settled) > 1:
        return Verdict(q, f"It depends on the task, on {devices}: GRU is faster in some settings and slower in others.", lines)
    return Verdict(q, f"Inconclusive on {devices}: every throughput ratio's CI includes 1.", lines)


def breakdown(runs: pd.DataFrame, axis: LengthAxis) -> pd.DataFrame:
    """Per model and length: mean metric, CI, baseline, and whether it still beats the baseline."""
    rows = []
    for (model, length), g in runs.groupby(["model", pd.to_numeric(runs[axis.column]).rename("length")]):
        mean, lo, hi = mean_ci(g.value)
        base = g.baseline.iloc[0]
        gain = (mean - base if g.higher_is_better.iloc[0] else base - mean) / abs(base) if base else math.nan
        rows.append({"model": model, "length": length, "mean": mean, "ci_low": lo, "ci_high": hi,
                     "min": g.value.min(), "max": g.value.max(), "n": len(g),
                     "baseline": base, "gain": gain, "beats_baseline": gain >= BREAKDOWN_MARGIN})  # fmt: skip
    return pd.DataFrame(rows)


def lengths(ev: Evidence) -> Verdict:
    q = "Which handles longer dependencies?"
    lines, holds = [], {}
    for name, runs in ev.finished.groupby("task"):
        axis = length_axis(runs)
        if axis is None:
            continue
        table, metric = breakdown(runs, axis), runs.main_metric.iloc[0]
        for model, g in table.groupby("model"):
            g = g.sort_values("length")
            failed = g[~g.beats_baseline]
            first_fail = failed.length.iloc[0] if len(failed) else None
            held = g[g.length < first_fail].length.max() if first_fail is not None else g.length.max()
            holds[(name, model)] = (held if not math.isnan(held) else 0, first_fail is None)
            if first_fail is None:
                held_text = f"beats the baseline by >= {BREAKDOWN_MARGIN:.0%} at every {axis.name} it ran"
            elif math.isnan(held):
                held_text = f"does not beat the baseline by {BREAKDOWN_MARGIN:.0%} even at the shortest, {fmt(first_fail)}"
            else:
                held_text = (
                    f"beats the baseline by >= {BREAKDOWN_MARGIN:.0%} up to {axis.name} = {fmt(held)}, "
                    f"falls to it at {fmt(first_fail)}"
                )
            lines.append(
                f"{name}: {model} {held_text} ({axis.name}: mean {metric} over "
                f"{'/'.join(map(str, sorted(set(g.n))))} seeds vs baseline: "
                + ", ".join(f"{fmt(r.length)}: {fmt(r.mean)} vs {fmt(r.baseline)}" for r in g.itertuples()) + ")"
            )
    if not holds:
        return Verdict(q, "Inconclusive: no task in this experiment varies its sequence length.")
    answers = []
    for name in sorted({n for n, _ in holds}):
        these = {m: v for (n, m), v in holds.items() if n == name}
        top = max(v[0] for v in these.values())
        best = sorted(m for m, v in these.items() if v[0] == top)
        if len(best) == len(these):
            answers.append(f"{name}: no difference in the lengths run")
        elif all(v[1] for m, v in these.items() if m in best):
            answers.append(f"{name}: {', '.join(best)} (never fell to the baseline, up to {fmt(top)})")
        else:
            answers.append(f"{name}: {', '.join(best)} (holds up to {fmt(top)})")
    decided = [a for a in answers if "no difference" not in a]
    prefix = "" if decided else "Inconclusive: "
    return Verdict(q, prefix + "; ".join(answers) + ".", lines)


def structure(ev: Evidence) -> Verdict:
    q = "Does bidirectionality or depth help?"
    lines, helped, hurt = [], [], []
    for label, task in by_label(ev.finished):
        shape = {m: (g.cell.iloc[0], int(g.layers.iloc[0]), g.bidirectional.iloc[0]) for m, g in task.groupby("model")}
        pairs = []
        for big, (c1, l1, b1) in shape.items():
            for small, (c2, l2, b2) in shape.items():
                if c1 != c2:
                    continue
                if l1 == l2 and b1 == "true" and b2 == "false":
                    pairs.append(("bidirectional", big, small))
                elif b1 == b2 and l1 > l2:
                    pairs.append((f"{l1} vs {l2} layers", big, small))
        tests = [compare(seed_values(task[task.model == b]), seed_values(task[task.model == s])) for _, b, s in pairs]
        holm(tests)
        higher = bool(task.higher_is_better.iloc[0])
        metric = task.main_metric.iloc[0]
        for (what, big, small), c in zip(pairs, tests):
            better = (c.diff > 0) == higher
            effect = _effect(c, "helps" if better else "hurts")
            if c.significant:
                (helped if better else hurt).append(f"{big} vs {small} on {label}")
            mb, ms = task[task.model == big].value.mean(), task[task.model == small].value.mean()
            lines.append(f"{label}, {what}: {big} {metric} {fmt(mb)} vs {small} {fmt(ms)} ({_p(c)}): {effect}")
    if not lines:
        return Verdict(q, "Inconclusive: no pair of variants differing only in direction or depth was run.")
    if not helped and not hurt:
        untested = sum(line.endswith("not tested") for line in lines)
        note = f", {untested} not testable with fewer than 2 seeds" if untested else ""
        return Verdict(q, f"Inconclusive: no significant difference in {len(lines)} comparison(s) (alpha {ALPHA}{note}).", lines)
    parts = [f"helps: {', '.join(helped)}" if helped else "", f"hurts: {', '.join(hurt)}" if hurt else ""]
    undecided = len(lines) - len(helped) - len(hurt)
    answer = "; ".join(p for p in parts if p) + f"; no significant difference in the other {undecided} of {len(lines)}."
    return Verdict(q, answer[0].upper() + answer[1:], lines)


def hyperparameters(ev: Evidence) -> Verdict:
    q = "Which hyperparameters matter most?"
    found = [s for s in ev.sweeps if s.importances]
    if not found:
        why = "no sweeps in this experiment" if not ev.sweeps else "the sweeps logged no importances"
        return Verdict(q, f"Inconclusive: {why} (run `rnnbench sweep` into it).")
    total = pd.DataFrame([s.importances for s in found]).fillna(0.0).mean().sort_values(ascending=False)
    lines = [
        f"{s.study_name} ({s.task_label}, {s.model}, {len(s.trials)} trials): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(s.importances.items(), key=lambda kv: -kv[1]))
        for s in found
    ]
    top = ", ".join(f"{k} ({v:.2f})" for k, v in total.head(3).items())
    return Verdict(q, f"{top} - mean fANOVA importance over {len(found)} sweep(s).", lines)


VERDICTS: list[Callable[[Evidence], Verdict]] = [accuracy, parameters, speed, lengths, structure, hyperparameters]


def all_verdicts(ev: Evidence) -> list[Verdict]:
    return [v(ev) for v in VERDICTS]
