"""Decisions between two models over seeds, with the statistics a reviewer can check.

Public API (reused by the report, ``suite --until-decided`` and any later verdict):

- ``compare_paired(a, b, scale, margin, higher_is_better=..., design=...) -> Decision``: estimate,
  95 % interval, difference and TOST equivalence p-values, verdict (a better / b better /
  equivalent / undecided), its one-line reason and, if undecided, the seeds likely to decide it;
  ``adjust(decisions)``: Holm's correction over a family;
- ``location(values, scale)``: a model's geometric mean or mean over seeds with an interval that
  stays in the metric's range;
- ``default_margin(metric, scale)``, ``margin_for(margins, task, metric, scale)``: equivalence margins;
- ``meta_analysis(estimates, variances)``: DerSimonian-Laird random effects; ``pool(studies, ...)``:
  one answer across task settings;
- ``Design``: a fixed sample or the group-sequential looks of ``--until-decided``;
- ``matched``: the GRU-vs-LSTM pairs of a run table and their decisions; ``ablation``: each cell
  variant against its family's vanilla (Greff et al. 2017).
"""

from benchmark.decide.design import FIXED, Design
from benchmark.decide.margins import default_margin, margin_for
from benchmark.decide.meta import Meta, Pooled, Study, meta_analysis, pool
from benchmark.decide.paired import ALPHA, LEVEL, Decision, Location, Verdict, adjust, compare_paired, holm, location

__all__ = [
    "ALPHA", "LEVEL", "FIXED", "Decision", "Design", "Location", "Meta", "Pooled", "Study", "Verdict",
    "adjust", "compare_paired", "default_margin", "holm", "location", "margin_for", "meta_analysis", "pool",
]  # fmt: skip
