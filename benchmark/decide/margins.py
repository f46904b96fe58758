"""Equivalence margins: how close two models must be to count as equally good, per task and metric.

Defaults by scale (``benchmark.scales``): +-10 % for an error (ratio scale), +-1 point for an
accuracy (proportion), +-5 % for training throughput, none for a ``difference`` metric. A suite
overrides them under ``report.margins``, keyed by metric name, or by task name then metric name:

    report:
      margins: {mse: 0.2, throughput_seq_per_s: 0.1, copy_memory: {cross_entropy: 0.15}}

The suite records them on its MLflow experiment (tag ``record.ExperimentTag.MARGINS``), so
``rnnbench report`` uses them; ``rnnbench report --margin [TASK.]METRIC=VALUE`` overrides again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping

from mlflow.tracking import MlflowClient

from benchmark.config import ConfigError
from benchmark.record import ExperimentTag, RunMetric
from benchmark.scales import THROUGHPUT_MARGIN, Scale

THROUGHPUT = RunMetric.THROUGHPUT
MarginConfig = Mapping[str, "float | Mapping[str, float]"]


def default_margin(metric: str, scale: Scale) -> float | None:
    """The documented default: throughput +-5 %, else the scale's (errors +-10 %, accuracies +-1 point)."""
    return THROUGHPUT_MARGIN if metric == THROUGHPUT else scale.default_margin


def margin_for(margins: MarginConfig, task: str, metric: str, scale: Scale) -> float | None:
    """The margin of ``metric`` on ``task``: the task's own entry, else the metric's, else the default."""
    own = margins.get(task)
    if isinstance(own, Mapping) and metric in own:
        return float(own[metric])
    if metric in margins and not isinstance(margins[metric], Mapping):
        return float(margins[metric])
    return default_margin(metric, scale)


def check(margins: MarginConfig, metrics: Mapping[str, Iterable[str]], where: str = "report.margins") -> None:
    """ConfigError (one line) for a negative or non-numeric margin, an unknown task, or a metric the task lacks.

    ``metrics``: task name -> the metrics it has (throughput is every task's).
    """
    known = {task: set(names) | {THROUGHPUT} for task, names in metrics.items()}
    every = sorted(set().union(*known.values())) if known else [THROUGHPUT]
    name = (lambda path: f"{where} {path}") if where.startswith("--") else (lambda path: f"{where}.{path}")  # noqa: E731
    for key, value in margins.items():
        if isinstance(value, Mapping):
            if key not in known:
                raise ConfigError(f"{name(key)}: no task '{key}' here. Tasks: {', '.join(sorted(known)) or 'none'}")
            for metric, margin in value.items():
                if metric not in known[key]:
                    raise ConfigError(
                        f"{name(f'{key}.{metric}')}: task '{key}' has no metric '{metric}'. Its metrics: {', '.join(sorted(known[key]))}"
                    )
                _check_value(name(f"{key}.{metric}"), margin)
        else:
            if key not in every:
                raise ConfigError(f"{name(key)}: no task here has a metric '{key}'. Metrics: {', '.join(every)}")
            _check_value(name(key), value)


def _check_value(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{key}: a margin is a number >= 0 (got {value!r})")
    if value < 0:
        raise ConfigError(f"{key}: a margin cannot be negative (got {value}); use 0 to never call two models equivalent")


def parse(items: Iterable[str]) -> dict:
    """``["mse=0.2", "copy_memory.cross_entropy=0.15"]`` (``--margin`` flags) -> a margins mapping."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = None
        if not sep or not key or value is None:
            raise ConfigError(f"--margin '{item}': expected [TASK.]METRIC=NUMBER, e.g. mse=0.2 or copy_memory.cross_entropy=0.15")
        task, _, metric = key.rpartition(".")
        if task:
            out.setdefault(task, {})[metric] = value
        else:
            out[metric] = value
    return out


def merged(base: MarginConfig, override: MarginConfig) -> dict:
    """``override``'s entries on top of ``base``'s (task entries merged metric by metric)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def record_margins(mlflow: MlflowClient, experiment_id: str, margins: MarginConfig) -> None:
    """Keep a suite's margins on its experiment, where the report reads them (the latest suite's win)."""
    mlflow.set_experiment_tag(experiment_id, ExperimentTag.MARGINS, json.dumps(margins, sort_keys=True))


def recorded_margins(tags: Mapping[str, str]) -> dict:
    """The margins an experiment's tags hold (none recorded: the defaults)."""
    text = tags.get(ExperimentTag.MARGINS)
    return json.loads(text) if text else {}
