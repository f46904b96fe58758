"""Confidence intervals and significance tests over seeds (scipy.stats), with Holm's correction.

Two variants are compared by seed when they ran the same seeds (paired t-test: a seed fixes the
initialisation and the training data order, so its noise is shared), by Welch's t-test otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 0.05
PAIRED, WELCH = "paired t-test", "Welch t-test"


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and the two-sided t-distribution confidence interval; NaN bounds below two values."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return mean, mean - half, mean + half


@dataclass
class Comparison:
    test: str  # PAIRED, WELCH, or why no test ran
    n: int  # seeds used (pairs for the paired test; the smaller group for Welch)
    diff: float  # mean(a) - mean(b)
    p: float
    p_holm: float = math.nan

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_holm) and self.p_holm < ALPHA


def compare(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """Two-sided test of mean(a) == mean(b); ``a`` and ``b`` map seed -> metric."""
    a = {s: v for s, v in a.items() if not math.isnan(v)}
    b = {s: v for s, v in b.items() if not math.isnan(v)}
    diff = (np.mean(list(a.values())) - np.mean(list(b.values()))) if a and b else math.nan
    if a.keys() == b.keys() and len(a) >= 2:
        seeds = sorted(a)
        x, y = [a[s] for s in seeds], [b[s] for s in seeds]
        if x == y:  # identical runs: scipy's t would be 0/0
            return Comparison(PAIRED, len(seeds), 0.0, 1.0)
        return Comparison(PAIRED, len(seeds), float(diff), float(stats.ttest_rel(x, y).pvalue))
    if min(len(a), len(b)) >= 2:
        res = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
        return Comparison(WELCH, min(len(a), len(b)), float(diff), float(res.pvalue))
    return Comparison("no test (fewer than 2 seeds)", min(len(a), len(b)), float(diff), math.nan)


def holm(comparisons: Sequence[Comparison]) -> None:
    """Holm-Bonferroni step-down adjustment over one family of comparisons, in place (``p_holm``)."""
    tested = sorted((c for c in comparisons if not math.isnan(c.p)), key=lambda c: c.p)
    m, running = len(tested), 0.0
    for i, c in enumerate(tested):
        running = max(running, min(1.0, (m - i) * c.p))  # adjusted p-values never decrease
        c.p_holm = running


def ratio_ci(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> tuple[float, float, float, str]:
    """Ratio of means a/b as a geometric mean of per-seed ratios, with a t interval on the log scale.

    Paired by seed where both ran the same seeds, Welch otherwise; returns (ratio, lo, hi, test).
    """
    la = {s: math.log(v) for s, v in a.items() if v > 0}
    lb = {s: math.log(v) for s, v in b.items() if v > 0}
    if not la or not lb:
        return math.nan, math.nan, math.nan, "no data"
    if la.keys() == lb.keys() and len(la) >= 2:
        d = [la[s] - lb[s] for s in sorted(la)]
        mean, lo, hi = mean_ci(d, level)
        return math.exp(mean), math.exp(lo), math.exp(hi), PAIRED
    mean = np.mean(list(la.values())) - np.mean(list(lb.values()))
    if min(len(la), len(lb)) < 2:
        return math.exp(mean), math.nan, math.nan, "no interval (fewer than 2 seeds)"
    ci = stats.ttest_ind(list(la.values()), list(lb.values()), equal_var=False).confidence_interval(level)
    return math.exp(mean), math.exp(ci.low), math.exp(ci.high), WELCH
