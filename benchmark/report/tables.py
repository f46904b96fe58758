"""Per task setting: one row per model variant, its typical value over seeds, and its comparison with the best."""

from __future__ import annotations

import math
import re

import pandas as pd

from benchmark.decide import FIXED, Design, Verdict, location
from benchmark.decide.margins import MarginConfig
from benchmark.decide.matched import ACCURACY, decide_pairs


def natural_key(label: str) -> list:
    """``adding[seq_len=6]`` before ``adding[seq_len=12]``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


def by_label(runs: pd.DataFrame):
    """(task_label, rows) in natural order of the labels."""
    for label in sorted(runs.task_label.unique(), key=natural_key):
        yield label, runs[runs.task_label == label]


def model_table(finished: pd.DataFrame, margins: MarginConfig, interval: str = "t", design: Design = FIXED) -> pd.DataFrame:
    """Rows (task_label, model) from the finished runs; the best marked, each other compared with it.

    The center is the geometric mean (ratio scale) or mean over seeds, its interval from
    ``benchmark.decide.location`` (``interval``: t, or bootstrap where n >= 5). Each variant is
    compared with the best by seed (``compare_paired`` under the experiment's ``design``, the
    task's margin); the comparisons within one task setting form one family for Holm's correction. Picking the best
    from the same data makes these comparisons descriptive: they say which variants the data
    cannot separate from the best, not a pre-planned test.
    """
    rows = []
    for label, task in by_label(finished):
        metric, scale, higher = ACCURACY.metric(task)
        models = {m: g for m, g in task.groupby("model", sort=False)}
        spots = {m: location(g.value, scale, interval) for m, g in models.items()}
        ranked = sorted((m for m in models if not math.isnan(spots[m].center)), key=lambda m: spots[m].center, reverse=higher)
        best = ranked[0] if ranked else None
        others = ranked[1:]
        decisions = dict(zip(others, decide_pairs(task, [(m, best) for m in others], ACCURACY, margins, design)[1]))
        for m in ranked + [m for m in models if m not in ranked]:
            g, spot, d = models[m], spots[m], decisions.get(m)
            rows.append(
                {
                    "task_label": label,
                    "task": g.task.iloc[0],
                    "model": m,
                    "metric": metric,
                    "higher_is_better": higher,
                    "scale": scale.name,
                    "center": spot.center,
                    "ci_low": spot.low,
                    "ci_high": spot.high,
                    "interval": spot.method,
                    "min": g.value.min(),
                    "max": g.value.max(),
                    "n": int(g.value.notna().sum()),
                    "seeds": " ".join(map(str, sorted(g.seed))),
                    "baseline": g.baseline.iloc[0],
                    "param_count": int(g.param_count.median()) if g.param_count.notna().any() else None,
                    "hidden": g.hidden.iloc[0],
                    "throughput_seq_per_s": g.throughput.mean(),
                    "train_time_s": g.train_time_s.mean(),
                    "wall_time_s": g.wall_time_s.mean(),
                    "peak_memory_mb": g.peak_memory_mb.mean(),
                    "rank": ranked.index(m) + 1 if m in ranked else None,
                    "vs_best": d.verdict.value if d else "",
                    "vs_best_estimate": d.estimate if d else math.nan,
                    "vs_best_ci_low": d.ci_low if d else math.nan,
                    "vs_best_ci_high": d.ci_high if d else math.nan,
                    "vs_best_p": d.p_difference if d else math.nan,
                    "vs_best_p_equivalence": d.p_equivalence if d else math.nan,
                    "vs_best_reason": d.reason if d else "",
                    "seeds_needed": d.seeds_needed if d else None,
                    "status": _status(m == best, d),
                }
            )
    return pd.DataFrame(rows)


def _status(is_best: bool, d) -> str:
    if is_best:
        return "best"
    if d is None:
        return "not ranked"
    if d.verdict is Verdict.EQUIVALENT:
        return f"equivalent to the best ({d.margin_text()})"
    if d.verdict is Verdict.B_BETTER:
        return "worse"
    if d.verdict is Verdict.A_BETTER:
        return "better on the shared seeds"
    if d.n < 2:
        return "not tested (fewer than 2 shared seeds)"
    if d.seeds_needed is None:
        return "undecided"
    more = f"more than {d.seeds_needed - 1}" if d.seeds_needed > 1000 else f"≈ {d.seeds_needed}"
    return f"undecided (needs {more} seeds)"
