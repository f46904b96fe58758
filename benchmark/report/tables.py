"""Per task setting: one row per model variant, with its CI over seeds and its test against the best."""

from __future__ import annotations

import math
import re

import pandas as pd

from benchmark.report.stats import Comparison, compare, holm, mean_ci


def natural_key(label: str) -> list:
    """``adding[seq_len=6]`` before ``adding[seq_len=12]``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


def by_label(runs: pd.DataFrame):
    """(task_label, rows) in natural order of the labels."""
    for label in sorted(runs.task_label.unique(), key=natural_key):
        yield label, runs[runs.task_label == label]


def seed_values(runs: pd.DataFrame, column: str = "value") -> dict[int, float]:
    return dict(zip(runs.seed.astype(int), runs[column].astype(float)))


def model_table(finished: pd.DataFrame) -> pd.DataFrame:
    """Rows (task_label, model) from the finished runs; best marked, the rest tested against it.

    The comparisons within one task setting form one family for Holm's correction.
    """
    rows = []
    for label, task in by_label(finished):
        higher = bool(task.higher_is_better.iloc[0])
        models = {m: g for m, g in task.groupby("model", sort=False)}
        means = {m: mean_ci(g.value)[0] for m, g in models.items()}
        ranked = sorted((m for m in models if not math.isnan(means[m])), key=means.get, reverse=higher)
        best = ranked[0] if ranked else None
        tests: dict[str, Comparison] = {
            m: compare(seed_values(models[m]), seed_values(models[best])) for m in ranked[1:]
        }
        holm(list(tests.values()))
        for m in ranked + [m for m in models if m not in ranked]:
            g = models[m]
            mean, lo, hi = mean_ci(g.value)
            c = tests.get(m)
            rows.append(
                {
                    "task_label": label,
                    "task": g.task.iloc[0],
                    "model": m,
                    "metric": g.main_metric.iloc[0],
                    "higher_is_better": higher,
                    "mean": mean,
                    "ci_low": lo,
                    "ci_high": hi,
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
                    "vs_best_test": c.test if c else "",
                    "vs_best_diff": c.diff if c else math.nan,
                    "vs_best_p": c.p if c else math.nan,
                    "vs_best_p_holm": c.p_holm if c else math.nan,
                    "status": _status(m == best, c),
                }
            )
    return pd.DataFrame(rows)


def _status(is_best: bool, c: Comparison | None) -> str:
    if is_best:
        return "best"
    if c is None or math.isnan(c.p):
        return "not tested"
    return "worse" if c.significant else "not significantly worse"
