"""The scale a metric is compared on: what a difference between two models means, and the metric's range.

- ``ratio``: a positive quantity (MSE, MAE, cross-entropy, an error rate, throughput). Two models
  are compared by the ratio of their geometric means, computed on log values; an equivalence
  margin is relative (0.10: within 10 %). Range (0, inf).
- ``proportion``: an accuracy or other share in [0, 1]. Compared by the difference in percentage
  points; a margin is absolute (0.01: one point). Range [0, 1].
- ``difference``: any other real quantity. Compared by the difference; a margin is absolute and
  has no default. Range (-inf, inf).

A task's ``Metric`` takes its scale from its kind unless it names one: a lower-is-better metric is
an error (``ratio``), a higher-is-better one an accuracy (``proportion``). Runs record each
metric's scale and range as tags, so the report knows them from MLflow alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scale:
    name: str
    low: float  # the metric's range
    high: float
    log: bool  # compared on log values (ratio) or as they are (difference)
    default_margin: float | None  # equivalence margin when none is configured: relative (log scales) or absolute

    def transform(self, values):
        """Values on the comparison scale: logs for a ratio scale, the values otherwise."""
        x = np.asarray(values, dtype=float)
        return np.log(x) if self.log else x

    def inverse(self, values):
        x = np.asarray(values, dtype=float)
        return np.exp(x) if self.log else x

    def bound(self, margin: float | None) -> float:
        """The equivalence margin on the comparison scale (log(1 + margin) for ratios); 0 for none."""
        if not margin:
            return 0.0
        return math.log1p(margin) if self.log else margin

    def in_range(self, value: float) -> bool:
        return (self.low < value if self.log else self.low <= value) and value <= self.high

    @property
    def range_text(self) -> str:
        """``(0, inf)``, ``[0, 1]``: the range as recorded in a run's ``range.<metric>`` tag."""
        left = "(" if self.log or math.isinf(self.low) else "["
        right = ")" if math.isinf(self.high) else "]"
        return f"{left}{_num(self.low)}, {_num(self.high)}{right}"


def _num(x: float) -> str:
    return ("-inf" if x < 0 else "inf") if math.isinf(x) else f"{x:g}"


RATIO = Scale("ratio", 0.0, math.inf, log=True, default_margin=0.10)
PROPORTION = Scale("proportion", 0.0, 1.0, log=False, default_margin=0.01)
DIFFERENCE = Scale("difference", -math.inf, math.inf, log=False, default_margin=None)
SCALES = {s.name: s for s in (RATIO, PROPORTION, DIFFERENCE)}

THROUGHPUT_MARGIN = 0.05  # speed: within 5 % counts as equally fast


def default_scale(higher_is_better: bool) -> Scale:
    """The scale of a metric that names none: errors (lower is better) are ratios, accuracies proportions."""
    return PROPORTION if higher_is_better else RATIO


def scale_named(name: str | None, higher_is_better: bool) -> Scale:
    """A recorded scale by name; runs recorded before scales were tagged get the default of their kind."""
    return SCALES.get(name or "", default_scale(higher_is_better))
