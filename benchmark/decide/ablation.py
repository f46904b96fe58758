"""Each cell variant against its family's vanilla form, like for like: Greff et al. (2017)'s design.

A variant (``cifg``, ``mgu``, ``mingru-2l``, ...) is compared with the vanilla cell of its family
(``benchmark.models.cells.VANILLA``: the first vanilla form that ran, e.g. Greff's V ``lstm-peep``,
else torch's ``lstm``) of the same layers and direction, in one task setting, by seed, on the task's
main metric. Within a task setting the variants form one family for Holm's correction; across
settings each variant gets one pooled answer (random effects), Holm across the variants.

Reads the report's run table (``benchmark.report.collect.run_table``), as ``matched`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from benchmark.decide.design import FIXED, Design
from benchmark.decide.margins import MarginConfig
from benchmark.decide.matched import Question, decide_pairs, run_shapes
from benchmark.decide.meta import Pooled, Study, adjust_pooled, pool
from benchmark.decide.paired import Decision
from benchmark.models.cells import CELLS, VANILLA

VARIANT = Question("main metric against the family's vanilla cell", "value")


@dataclass(frozen=True)
class Ablation:
    variant: str  # model names
    vanilla: str
    family: str
    layers: int
    bidirectional: bool

    @property
    def kind(self) -> str:
        """The structure both share, e.g. ``lstm family, 1 layer, unidirectional``."""
        return (f"{self.family} family, {self.layers} layer{'s' if self.layers > 1 else ''}, "
                f"{'bidirectional' if self.bidirectional else 'unidirectional'}")  # fmt: skip

    @property
    def name(self) -> str:
        return f"{self.variant} vs {self.vanilla}"


def family_of(cell: str) -> str | None:
    """The cell's family, or None for a cell this installation does not know (a missing plugin)."""
    return CELLS.get(cell).family if cell in CELLS else None


def ablations(shapes: Mapping[str, tuple[str, int, bool]]) -> list[Ablation]:
    """Each variant among ``shapes`` (model -> cell, layers, bidirectional) with the vanilla model of its
    family and structure; variants whose vanilla did not run are left out."""
    groups: dict[tuple[str, int, bool], dict[str, str]] = {}  # (family, layers, bi) -> cell -> model
    for model, (cell, layers, bi) in sorted(shapes.items()):
        family = family_of(cell)
        if family is not None:
            groups.setdefault((family, int(layers), bool(bi)), {}).setdefault(cell, model)
    out = []
    for (family, layers, bi), cells in sorted(groups.items()):
        vanilla = next((cells[c] for c in VANILLA[family] if c in cells), None)
        if vanilla is None:
            continue
        out += [Ablation(m, vanilla, family, layers, bi) for m, (c, l, b) in sorted(shapes.items())
                if m != vanilla and family_of(c) == family and (int(l), bool(b)) == (layers, bi)]  # fmt: skip
    return out


@dataclass(frozen=True)
class AblationDecision:
    label: str  # task setting
    task: str
    pair: Ablation
    metric: str
    question: Question
    decision: Decision


def decide_setting(runs: pd.DataFrame, margins: MarginConfig, design: Design = FIXED) -> list[AblationDecision]:
    """Each variant of one task setting's finished runs against its vanilla; Holm over the setting's variants."""
    found = ablations(run_shapes(runs))
    if not found:
        return []
    metric, decisions = decide_pairs(runs, [(a.variant, a.vanilla) for a in found], VARIANT, margins, design)
    label, task = str(runs.task_label.iloc[0]), str(runs.task.iloc[0])
    return [AblationDecision(label, task, a, metric, VARIANT, d) for a, d in zip(found, decisions)]


def decide_all(settings: Iterable[pd.DataFrame], margins: MarginConfig, design: Design = FIXED) -> list[AblationDecision]:
    """``decide_setting`` for each task setting's runs, in order."""
    return [d for runs in settings for d in decide_setting(runs, margins, design)]


def overall(decisions: list[AblationDecision]) -> list[Pooled]:
    """One pooled answer per variant (and its vanilla and structure) across task settings; Holm across the variants."""
    groups: dict[Ablation, list[AblationDecision]] = {}
    for d in decisions:
        groups.setdefault(d.pair, []).append(d)
    return adjust_pooled([
        pool([Study(d.label, d.decision) for d in group], a.variant, a.vanilla, VARIANT.name, a.kind)
        for a, group in groups.items()
    ])  # fmt: skip
