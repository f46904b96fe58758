"""GRU vs LSTM, like for like: the matched pairs of an experiment and their decisions.

A matched pair is a GRU variant and an LSTM variant of the same structure (layers, direction) in
one task setting: gru vs lstm, bigru vs bilstm, gru-2l vs lstm-2l, ... whichever both ran. Each
pair is compared on the task's main metric and on training throughput (``QUESTIONS``); within a
task setting the pairs asked one question form one family for Holm's correction. Across task
settings, each pair type (e.g. 1 layer, unidirectional) gets one pooled answer (``overall``).

Reads the report's run table (``benchmark.report.collect.run_table``): columns task_label, task,
model, seed, cell, layers, bidirectional, main_metric, higher_is_better, scale, value, throughput.
``rnnbench suite --until-decided`` and ``rnnbench report`` call the same functions, so a suite's
stopping decisions and the report's verdicts agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from benchmark import record
from benchmark.decide.design import FIXED, Design
from benchmark.decide.margins import THROUGHPUT, MarginConfig, margin_for
from benchmark.decide.meta import Pooled, Study, adjust_pooled, pool
from benchmark.decide.paired import Decision, adjust, compare_paired
from benchmark.scales import RATIO, Scale, scale_named

CELLS = ("gru", "lstm")  # the first is "A" in every decision: "gru better" is a win


@dataclass(frozen=True)
class Pair:
    gru: str  # model names
    lstm: str
    layers: int
    bidirectional: bool

    @property
    def kind(self) -> str:
        """The pair type, e.g. ``1 layer, unidirectional``."""
        return f"{self.layers} layer{'s' if self.layers > 1 else ''}, {'bidirectional' if self.bidirectional else 'unidirectional'}"

    @property
    def name(self) -> str:
        return f"{self.gru} vs {self.lstm}"


def matched_pairs(shapes: Mapping[str, tuple[str, int, bool]]) -> list[Pair]:
    """(gru model, lstm model) pairs of equal layers and direction among ``shapes`` (model -> cell, layers, bidirectional)."""
    pairs = []
    for g, (gc, gl, gb) in sorted(shapes.items()):
        for l, (lc, ll, lb) in sorted(shapes.items()):
            if (gc, lc) == CELLS and (int(gl), bool(gb)) == (int(ll), bool(lb)):
                pairs.append(Pair(g, l, int(gl), bool(gb)))
    return sorted(pairs, key=lambda p: (p.layers, p.bidirectional, p.gru))


def run_shapes(runs: pd.DataFrame) -> dict[str, tuple[str, int, bool]]:
    """model -> (cell, layers, bidirectional) as the runs' tags record them."""
    return {m: (g.cell.iloc[0], int(g.layers.iloc[0]), record.is_true(str(g.bidirectional.iloc[0]))) for m, g in runs.groupby("model")}


@dataclass(frozen=True)
class Question:
    name: str  # as the report says it
    column: str  # of the run table
    better: str = "better"  # the winner's word

    def metric(self, runs: pd.DataFrame) -> tuple[str, Scale, bool]:
        """(metric name, scale, higher is better) of this question on one task setting's runs."""
        if self.column == "throughput":
            return THROUGHPUT, RATIO, True
        higher = bool(runs.higher_is_better.iloc[0])
        recorded = runs["scale"].iloc[0] if "scale" in runs else ""
        return str(runs.main_metric.iloc[0]), scale_named(recorded, higher), higher


ACCURACY = Question("main metric", "value")
SPEED = Question("training throughput", "throughput", "faster")
QUESTIONS = (ACCURACY, SPEED)


@dataclass(frozen=True)
class PairDecision:
    label: str  # task setting
    task: str
    pair: Pair
    metric: str
    question: Question
    decision: Decision


def seed_values(runs: pd.DataFrame, column: str) -> dict[int, float]:
    return dict(zip(runs.seed.astype(int), runs[column].astype(float)))


def decide_pairs(runs: pd.DataFrame, pairs: Iterable[tuple[str, str]], question: Question, margins: MarginConfig,
                 design: Design = FIXED) -> tuple[str, list[Decision]]:
    """One task setting's runs: each (a, b) pair of models compared by seed on ``question``, Holm over the pairs;
    returns the metric's name and the decisions, in the pairs' order."""
    metric, scale, higher = question.metric(runs)
    margin = margin_for(margins, str(runs.task.iloc[0]), metric, scale)
    decisions = adjust([
        compare_paired(seed_values(runs[runs.model == a], question.column), seed_values(runs[runs.model == b], question.column),
                       scale, margin, higher_is_better=higher, names=(a, b), design=design, better=question.better)
        for a, b in pairs
    ])  # fmt: skip
    return metric, decisions


def decide_setting(runs: pd.DataFrame, question: Question, margins: MarginConfig, design: Design = FIXED) -> list[PairDecision]:
    """Each matched pair of one task setting's finished runs, on ``question``; Holm over the pairs."""
    pairs = matched_pairs(run_shapes(runs))
    if not pairs:
        return []
    metric, decisions = decide_pairs(runs, [(p.gru, p.lstm) for p in pairs], question, margins, design)
    label, task = str(runs.task_label.iloc[0]), str(runs.task.iloc[0])
    return [PairDecision(label, task, p, metric, question, d) for p, d in zip(pairs, decisions)]


def decide_all(settings: Iterable[pd.DataFrame], question: Question, margins: MarginConfig, design: Design = FIXED) -> list[PairDecision]:
    """``decide_setting`` for each task setting's runs (e.g. the report's ``by_label`` groups), in order."""
    return [d for runs in settings for d in decide_setting(runs, question, margins, design)]


def overall(decisions: list[PairDecision]) -> list[Pooled]:
    """One pooled answer per pair type across task settings (decisions of one question); Holm across the types."""
    kinds: dict[tuple[int, bool], list[PairDecision]] = {}
    for d in decisions:
        kinds.setdefault((d.pair.layers, d.pair.bidirectional), []).append(d)
    answers = []
    for _, group in sorted(kinds.items()):
        names = sorted({d.pair.name for d in group})
        a, b = (names[0].split(" vs ") if len(names) == 1 else (f"GRU ({group[0].pair.kind})", f"LSTM ({group[0].pair.kind})"))
        answers.append(pool([Study(d.label, d.decision) for d in group], a, b, group[0].question.name, group[0].pair.kind))
    return adjust_pooled(answers)
