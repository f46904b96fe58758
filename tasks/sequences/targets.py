"""What a sequence is scored on: one registered class per ``task.target``.

Each target turns the raw targets of every split into tensors (fitting whatever it needs on
train only), and gives the spec its output kind, loss, metrics and exact trivial baseline:

| target | output | main metric | baseline |
|---|---|---|---|
| classification | one class per sequence | accuracy | the majority class of train |
| regression | one real vector per sequence | MSE (also MAE), original units | predict the train mean |
| step_classification | one class per step | per-step accuracy | the majority step label of train |
| step_regression | one real vector per step | per-step MSE (also MAE), original units | predict the train mean |
| forecast | the next step's inputs | per-step MSE (also MAE), normalised input units | repeat the current step |

Real targets are standardised with the train mean and std for training; their metrics are
rescaled to the original units. Per-step scores average over each sequence's steps, then over
sequences; the baselines are computed the same way, in float64.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from benchmark import metrics
from benchmark.config import ConfigError
from benchmark.metrics import IGNORE_INDEX
from benchmark.task import Baseline, Metric, OutputKind
from tasks.sequences.options import SequenceOptions


@dataclass
class Split:
    """One split's sequences: (T_i, C) float arrays, raw targets, and names for errors."""

    sequences: list[np.ndarray]
    targets: list | None
    names: list[str]  # e.g. "case 3 of 'data/x_TRAIN.ts'"

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences])

    def where(self, i: int, split: str) -> str:
        return f"{self.names[i]} ({split} split)"


@dataclass
class Encoded:
    targets: dict[str, Tensor]
    num_outputs: int
    baseline: Baseline
    facts: dict[str, object] = field(default_factory=dict)  # logged with the run


def label_text(value) -> str:
    """A label as text: 3, 3.0 and '3' are the same class."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _natural(labels) -> list[str]:
    """Numeric labels in numeric order ('2' before '10'), others alphabetically."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _missing_label(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))


class Target:
    """Base: ``encode`` fits on train and returns every split's target tensor."""

    output_kind: OutputKind
    needs_labels = True
    causal = False

    def __init__(self, options: SequenceOptions):
        self.options = options

    def encode(self, splits: dict[str, Split]) -> Encoded:
        raise NotImplementedError

    def scoring(self) -> tuple:
        """(loss, metrics, main metric name); called after ``encode``."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- classes


class _Classes(Target):
    """Shared by per-sequence and per-step classification: classes from task.labels or train."""

    def classes(self, train_labels: list[str]) -> list[str]:
        if self.options.labels is not None:
            return list(self.options.labels)
        classes = _natural(set(train_labels))
        if len(classes) < 2:
            raise ConfigError(f"the train split has {len(classes)} class(es) ({', '.join(classes)}); classification needs at least 2")
        return classes

    def index(self, label, classes: dict[str, int], where: str) -> int:
        if _missing_label(label):
            raise ConfigError(f"{where} has no label (NaN or empty)")
        text = label_text(label)
        if text not in classes:
            source = "task.labels" if self.options.labels is not None else "the train labels"
            raise ConfigError(f"label '{text}' of {where} is not one of {source}: {', '.join(classes)}")
        return classes[text]


def _class_facts(classes: list[str], counts: dict[str, Counter]) -> dict[str, object]:
    train = counts["train"]
    total = sum(train.values())
    facts: dict[str, object] = {"classes": len(classes)}
    facts |= {f"{s}_class_counts": ",".join(f"{c}:{counts[s][i]}" for i, c in enumerate(classes)) for s in counts}
    facts["train_majority_fraction"] = max(train.values()) / total
    facts["train_minority_fraction"] = min(train[i] for i in range(len(classes))) / total
    return facts


class Classification(_Classes):
    output_kind = OutputKind.SEQUENCE_CLASSIFICATION

    def encode(self, splits: dict[str, Split]) -> Encoded:
        train = splits["train"]
        train_labels = []
        for i, label in enumerate(train.targets):
            if _missing_label(label):
                raise ConfigError(f"{train.where(i, 'train')} has no label (NaN or empty)")
            train_labels.append(label_text(label))
        classes = self.classes(train_labels)
        index = {c: i for i, c in enumerate(classes)}
        ids = {s: np.array([self.index(y, index, split.where(i, s)) for i, y in enumerate(split.targets)], dtype=np.int64) for s, split in splits.items()}
        counts = {s: Counter(v.tolist()) for s, v in ids.items()}
        majority = int(np.bincount(ids["train"], minlength=len(classes)).argmax())
        accuracy = float((ids["test"] == majority).mean())
        return Encoded(
            {s: torch.from_numpy(v) for s, v in ids.items()},
            len(classes),
            Baseline(f"majority class of train ({classes[majority]})", {"accuracy": accuracy}),
            _class_facts(classes, counts),
        )

    def scoring(self) -> tuple:
        return metrics.cross_entropy_loss, (Metric("accuracy", metrics.accuracy, higher_is_better=True),), "accuracy"


class StepClassification(_Classes):
    output_kind = OutputKind.STEP_CLASSIFICATION

    def encode(self, splits: dict[str, Split]) -> Encoded:
        train = splits["train"]
        train_labels = set()
        for i, steps in enumerate(train.targets):
            _check_steps(steps, train.sequences[i], train.where(i, "train"))
            train_labels |= {label_text(v) for v in np.asarray(steps).ravel() if not _missing_label(v)}
        classes = self.classes(sorted(train_labels))
        index = {c: i for i, c in enumerate(classes)}
        ids: dict[str, list[np.ndarray]] = {}
        for s, split in splits.items():
            ids[s] = []
            for i, steps in enumerate(split.targets):
                where = split.where(i, s)
                _check_steps(steps, split.sequences[i], where)
                ids[s].append(np.array([self.index(v, index, f"a step of {where}") for v in np.asarray(steps).ravel()], dtype=np.int64))
        counts = {s: Counter(np.concatenate(v).tolist()) for s, v in ids.items()}
        majority = int(np.bincount(np.concatenate(ids["train"]), minlength=len(classes)).argmax())
        accuracy = float(np.mean([(v == majority).mean() for v in ids["test"]]))  # per sequence, then over sequences
        return Encoded(
            {s: _pad(v, IGNORE_INDEX, torch.long) for s, v in ids.items()},
            len(classes),
            Baseline(f"majority step label of train ({classes[majority]})", {"accuracy": accuracy}),
            _class_facts(classes, counts),
        )

    def scoring(self) -> tuple:
        return metrics.cross_entropy_loss, (Metric("accuracy", metrics.step_accuracy, higher_is_better=True),), "accuracy"


# ----------------------------------------------------------------------------- real values


def _real(value, where: str) -> np.ndarray:
    try:
        out = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"{where} has target {value!r}, not a number (task.target=regression needs real values)") from None
    if not np.isfinite(out).all():
        raise ConfigError(f"{where} has a missing (NaN) or infinite target")
    return out


def _check_steps(steps, sequence: np.ndarray, where: str) -> None:
    if len(np.asarray(steps)) != len(sequence):
        raise ConfigError(f"{where} has {len(np.asarray(steps))} per-step targets for {len(sequence)} steps")


def _pad(arrays: list[np.ndarray], value, dtype) -> Tensor:
    """(T_i, ...) arrays -> one (N, max T, ...) tensor filled with ``value`` past each length."""
    longest = max(len(a) for a in arrays)
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return torch.from_numpy(out).to(dtype)


def _errors(predict, truth: list[np.ndarray]) -> dict[str, float]:
    """Per-sequence mean squared and absolute errors over finite entries, averaged over sequences."""
    se, ae = [], []
    for p, t in zip(predict, truth):
        ok = np.isfinite(t)
        se.append(((p - t)[ok] ** 2).mean())
        ae.append(np.abs(p - t)[ok].mean())
    return {"mse": float(np.mean(se)), "mae": float(np.mean(ae))}


def _error_metrics(squared, absolute, scale: Tensor | None) -> tuple[Metric, ...]:
    if scale is not None:
        squared, absolute = metrics.rescaled(squared, scale), metrics.rescaled(absolute, scale)
    return (Metric("mse", squared, higher_is_better=False), Metric("mae", absolute, higher_is_better=False))


class Regression(Target):
    output_kind = OutputKind.SEQUENCE_REGRESSION

    def encode(self, splits: dict[str, Split]) -> Encoded:
        values = {s: [_real(y, split.where(i, s)) for i, y in enumerate(split.targets)] for s, split in splits.items()}
        dims = {len(v) for vs in values.values() for v in vs}
        if len(dims) > 1:
            raise ConfigError(f"regression targets have different sizes ({sorted(dims)}); every sequence needs the same number")
        y = {s: np.stack(v) for s, v in values.items()}
        mean, std = y["train"].mean(0), y["train"].std(0)
        std = np.where(std > 1e-12, std, 1.0)
        self.scale = torch.from_numpy(std).float()
        baseline = _errors([mean] * len(y["test"]), list(y["test"]))
        return Encoded(
            {s: torch.from_numpy((v - mean) / std).float() for s, v in y.items()},
            y["train"].shape[1],
            Baseline("predict the train mean", baseline),
            {"target_mean_train": float(mean.mean()), "target_std_train": float(std.mean())},
        )

    def scoring(self) -> tuple:
        return metrics.mse_loss, _error_metrics(metrics.squared_error, metrics.absolute_error, self.scale), "mse"


class StepRegression(Target):
    output_kind = OutputKind.STEP_REGRESSION

    def encode(self, splits: dict[str, Split]) -> Encoded:
        values: dict[str, list[np.ndarray]] = {}
        for s, split in splits.items():
            values[s] = []
            for i, steps in enumerate(split.targets):
                where = split.where(i, s)
                _check_steps(steps, split.sequences[i], where)
                try:
                    v = np.asarray(steps, dtype=np.float64)
                except (TypeError, ValueError):
                    raise ConfigError(f"{where} has per-step targets that are not numbers") from None
                values[s].append(v[:, None] if v.ndim == 1 else v)
        dims = {v.shape[1] for vs in values.values() for v in vs}
        if len(dims) > 1:
            raise ConfigError(f"per-step targets have different sizes ({sorted(dims)}); every step needs the same number")
        train = np.concatenate(values["train"])
        mean, std = np.nanmean(train, 0), np.nanstd(train, 0)  # NaN steps are not scored
        std = np.where(std > 1e-12, std, 1.0)
        self.scale = torch.from_numpy(std).float()
        baseline = _errors([mean] * len(values["test"]), values["test"])
        return Encoded(
            {s: _pad([(a - mean) / std for a in v], np.nan, torch.float32) for s, v in values.items()},
            train.shape[1],
            Baseline("predict the train mean", baseline),
        )

    def scoring(self) -> tuple:
        return metrics.step_mse_loss, _error_metrics(metrics.step_squared_error, metrics.step_absolute_error, self.scale), "mse"


class Forecast(Target):
    """Predict step t+1's (normalised) inputs at step t; the last step is not scored."""

    output_kind = OutputKind.STEP_REGRESSION
    needs_labels = False
    causal = True

    def encode(self, splits: dict[str, Split]) -> Encoded:
        for s, split in splits.items():
            short = np.flatnonzero(split.lengths < 2)
            if len(short):
                raise ConfigError(f"{split.where(int(short[0]), s)} has 1 step; task.target=forecast needs at least 2")
        nexts = {s: [np.vstack([x[1:], np.full((1, x.shape[1]), np.nan)]) for x in split.sequences] for s, split in splits.items()}
        test = splits["test"].sequences
        baseline = _errors(test, nexts["test"])  # persistence: step t's inputs predict step t+1's
        return Encoded(
            {s: _pad(v, np.nan, torch.float32) for s, v in nexts.items()},
            test[0].shape[1],
            Baseline("repeat the current step (persistence)", baseline),
        )

    def scoring(self) -> tuple:
        return metrics.step_mse_loss, _error_metrics(metrics.step_squared_error, metrics.step_absolute_error, None), "mse"


TARGETS: dict[str, type[Target]] = {
    "classification": Classification,
    "regression": Regression,
    "step_classification": StepClassification,
    "step_regression": StepRegression,
    "forecast": Forecast,
}
