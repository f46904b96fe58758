"""Short answers to the questions the GRU-vs-LSTM literature keeps asking, each with its evidence.

Every verdict function takes the report's data and returns a ``Verdict``; "inconclusive" is an
answer when the runs do not decide, "not asked here" when no run addresses the question. ``VERDICTS`` lists them in the order the report shows them:
the first is the experiment's one answer, GRU vs LSTM across its task settings
(``benchmark.decide``: three-way decisions per setting, pooled per pair type).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from benchmark import record
from benchmark.decide import FIXED, Design, Pooled, Verdict as Outcome, location
from benchmark.decide import ablation
from benchmark.decide.margins import MarginConfig
from benchmark.decide.matched import ACCURACY, SPEED, PairDecision, Question, decide_all, decide_pairs, overall
from benchmark.report.collect import LengthAxis, length_axis
from benchmark.report.tables import by_label

BREAKDOWN_MARGIN = 0.10  # a variant "falls to its baseline" once it beats it by less than 10 %
GRU_OVER_LSTM_LAYER = 3 / 4  # gate blocks per layer, GRU 3 vs LSTM 4: torch.nn's weights are 3H vs 4H rows


@dataclass
class Verdict:
    question: str
    answer: str  # one line; "Inconclusive: ..." when the runs do not decide, "Not asked here: ..." when none address it
    evidence: list[str] = field(default_factory=list)
    pooled: list[Pooled] = field(default_factory=list)  # per pair type, for the forest plot

    @property
    def conclusive(self) -> bool:
        return not self.answer.startswith(("Inconclusive", NOT_ASKED))


@dataclass
class Evidence:
    """What the verdicts read: finished runs, the model table, sweeps, the margins and sequential design."""

    finished: pd.DataFrame
    table: pd.DataFrame
    sweeps: list
    margins: MarginConfig = field(default_factory=dict)
    design: Design = FIXED
    _decided: dict = field(default_factory=dict, repr=False)

    def decisions(self, question: Question) -> list[PairDecision]:
        """The matched GRU-vs-LSTM pairs of every task setting, decided on ``question`` (computed once)."""
        if question not in self._decided:
            groups = [runs for _, runs in by_label(self.finished)] if not self.finished.empty else []
            self._decided[question] = decide_all(groups, question, self.margins, self.design)
        return self._decided[question]

    def ablations(self) -> list[ablation.AblationDecision]:
        """Every cell variant against its family's vanilla in each task setting (computed once)."""
        if ablation.VARIANT not in self._decided:
            groups = [runs for _, runs in by_label(self.finished)] if not self.finished.empty else []
            self._decided[ablation.VARIANT] = ablation.decide_all(groups, self.margins, self.design)
        return self._decided[ablation.VARIANT]


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def _setting_line(d: PairDecision) -> str:
    return f"{d.label}, {d.pair.name} ({d.metric}): {d.decision.reason}"


def _pooled_line(p: Pooled) -> str:
    t = p.tally
    split = "; the settings disagree: it depends on the task" if t["wins"] and t["losses"] else ""
    return (f"{p.kind} ({p.a} vs {p.b}): {p.reason}; per setting {t['wins']} won, {t['equivalent']} equivalent, "
            f"{t['losses']} lost, {t['undecided']} undecided{split}")  # fmt: skip


NOT_ASKED = "Not asked here: "  # the experiment holds no runs that address the question: not a statistical outcome
NO_PAIRS = NOT_ASKED + "no task setting has finished runs of a GRU and an LSTM variant of the same layers and direction."


# ----------------------------------------------------------------------------- the questions


def gru_vs_lstm(ev: Evidence) -> Verdict:
    """The experiment's one answer: per pair type, the pooled main-metric comparison across task settings."""
    q = "GRU or LSTM: which is better?"
    decisions = ev.decisions(ACCURACY)
    if not decisions:
        return Verdict(q, NO_PAIRS)
    answers = overall(decisions)
    lead = "On the test main metric of each task setting: "
    return Verdict(q, lead + "; ".join(_pooled_line(p) for p in answers) + ".", [_setting_line(d) for d in decisions], answers)


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
    decisions = ev.decisions(SPEED)
    if not decisions:
        return Verdict(q, NO_PAIRS)
    devices = "; ".join(sorted(set(ev.finished.device) - {""})) or "unknown device"
    answers = overall(decisions)
    lines = [
        f"{d.label}, {d.pair.name} (training seq/s, hidden {_hidden(ev, d.label, d.pair.gru)} vs "
        f"{_hidden(ev, d.label, d.pair.lstm)}): {d.decision.reason}"
        for d in decisions
    ]
    return Verdict(q, f"On {devices}: " + "; ".join(_pooled_line(p) for p in answers) + ".", lines, answers)


def _hidden(ev: Evidence, label: str, model: str) -> str:
    runs = ev.finished[(ev.finished.task_label == label) & (ev.finished.model == model)]
    return str(runs.hidden.iloc[0]) if len(runs) else "?"


def breakdown(runs: pd.DataFrame, axis: LengthAxis) -> pd.DataFrame:
    """Per model and length: center over seeds (geometric mean on a ratio scale) with its interval, the
    baseline, and whether it still beats the baseline."""
    rows = []
    _, scale, _ = ACCURACY.metric(runs)
    for (model, length), g in runs.groupby(["model", pd.to_numeric(runs[axis.column]).rename("length")]):
        spot = location(g.value, scale)
        base = g.baseline.iloc[0]
        gain = (spot.center - base if g.higher_is_better.iloc[0] else base - spot.center) / abs(base) if base else math.nan
        rows.append({"model": model, "length": length, "center": spot.center, "ci_low": spot.low, "ci_high": spot.high,
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
                f"{name}: {model} {held_text} ({axis.name}: {metric} over "
                f"{'/'.join(map(str, sorted(set(g.n))))} seeds vs baseline: "
                + ", ".join(f"{fmt(r.length)}: {fmt(r.center)} vs {fmt(r.baseline)}" for r in g.itertuples()) + ")"
            )
    if not holds:
        return Verdict(q, NOT_ASKED + "no task in this experiment varies its sequence length.")
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
    lines, helped, hurt, same = [], [], [], []
    for label, task in by_label(ev.finished) if not ev.finished.empty else []:
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
        metric, decisions = decide_pairs(task, [(b, s) for _, b, s in pairs], ACCURACY, ev.margins)
        for (what, big, small), d in zip(pairs, decisions):
            where = f"{big} vs {small} on {label}"
            {Outcome.A_BETTER: helped, Outcome.B_BETTER: hurt, Outcome.EQUIVALENT: same}.get(d.verdict, []).append(where)
            lines.append(f"{label}, {what}: {big} vs {small} ({metric}): {d.reason}")
    if not lines:
        return Verdict(q, NOT_ASKED + "no pair of variants differing only in direction or depth was run.")
    undecided = len(lines) - len(helped) - len(hurt) - len(same)
    if undecided == len(lines):
        return Verdict(q, f"Inconclusive: undecided in all {len(lines)} comparison(s); each line below says how many seeds would decide it.", lines)
    parts = [f"helps: {', '.join(helped)}" if helped else "", f"hurts: {', '.join(hurt)}" if hurt else "",
             f"equivalent within the margin: {', '.join(same)}" if same else ""]  # fmt: skip
    answer = "; ".join(p for p in parts if p) + f"; undecided in the other {undecided} of {len(lines)}."
    return Verdict(q, answer[0].upper() + answer[1:], lines)


def gates(ev: Evidence) -> Verdict:
    """Greff et al.'s question: which one-change variant differs from its family's vanilla cell."""
    q = "Which gates and activations matter? (each cell variant against its family's vanilla)"
    decisions = ev.ablations()
    if not decisions:
        return Verdict(q, NOT_ASKED + "no task setting has finished runs of a cell variant and its family's vanilla "
                       "of the same layers and direction (configs/suites/odyssey.yaml runs them).")  # fmt: skip
    answers = ablation.overall(decisions)
    groups = {"hurts": [], "helps": [], "makes no difference within the margin": [], "undecided": []}
    for p in answers:
        word = {Outcome.B_BETTER: "hurts", Outcome.A_BETTER: "helps", Outcome.EQUIVALENT: "makes no difference within the margin"}
        groups[word.get(p.verdict, "undecided")].append(f"{p.a} vs {p.b}")
    said = [f"the change {word}: {', '.join(names)}" for word, names in groups.items() if names and word != "undecided"]
    if groups["undecided"]:
        said.append(f"undecided: {', '.join(groups['undecided'])}")
    lead = "" if len(groups["undecided"]) < len(answers) else "Inconclusive: "
    answer = lead + "; ".join(said) + f" (pooled over task settings, main metric, Holm over {len(answers)} variants)."
    lines = [f"{d.label}, {d.pair.name} ({d.metric}): {d.decision.reason}" for d in decisions]
    lines += [f"pooled, {p.a} vs {p.b} ({p.kind}): {p.reason}" for p in answers]
    return Verdict(q, answer[0].upper() + answer[1:], lines, answers)


def hyperparameters(ev: Evidence) -> Verdict:
    q = "Which hyperparameters matter most?"
    found = [s for s in ev.sweeps if s.importances]
    if not found:
        why = "no sweeps in this experiment" if not ev.sweeps else "the sweeps logged no importances"
        return Verdict(q, f"{NOT_ASKED}{why} (run `rnnbench sweep` into it).")
    total = pd.DataFrame([s.importances for s in found]).fillna(0.0).mean().sort_values(ascending=False)
    lines = [
        f"{s.study_name} ({s.task_label}, {s.model}, {len(s.trials)} trials): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(s.importances.items(), key=lambda kv: -kv[1]))
        for s in found
    ]
    top = ", ".join(f"{k} ({v:.2f})" for k, v in total.head(3).items())
    return Verdict(q, f"{top} - mean fANOVA importance over {len(found)} sweep(s).", lines)


VERDICTS: list[Callable[[Evidence], Verdict]] = [gru_vs_lstm, parameters, speed, lengths, structure, gates, hyperparameters]


def all_verdicts(ev: Evidence) -> list[Verdict]:
    return [v(ev) for v in VERDICTS]
