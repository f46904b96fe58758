"""From files to padded tensors: splits, checks, missing values, normalisation, targets.

Order matters and is fixed: read -> assign splits (given, else carved from train with
``split_seed``) -> check -> fill missing values -> normalise (statistics from train only) ->
encode targets (fitted on train only) -> pad. Every input error raises ``ConfigError`` here,
before the runner creates an MLflow run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from benchmark.config import ConfigError
from tasks.sequences.options import SequenceOptions
from tasks.sequences.sources import SPLIT_NAMES, RawSequences, format_of, read, resolve_files
from tasks.sequences.targets import TARGETS, Encoded, Split, Target, label_text

STAGES = ("train", "val", "test")


@dataclass
class PaddedSplit:
    inputs: Tensor  # (N, max T, C) float32, zero past each length
    lengths: Tensor  # (N,) int64
    targets: Tensor  # (N,), (N, K), (N, T) or (N, T, K)


@dataclass
class SequenceData:
    name: str
    channels: int
    splits: dict[str, PaddedSplit]
    target: Target
    encoded: Encoded
    metrics: dict[str, float]  # numeric facts, logged as data/... metrics
    facts: dict[str, object]  # everything, for TaskSpec.extra


def assign_splits(raws: dict[str, RawSequences]) -> tuple[dict[str, Split], dict[str, str]]:
    """Sequences per split as the data give them: extra files, else the train file's split column."""
    parts: dict[str, Split] = {s: Split([], [], []) for s in STAGES}
    origin: dict[str, str] = {}
    for which, raw in raws.items():
        if which == "train" and raw.splits is not None:
            unknown = sorted({str(v) for v in raw.splits} - set(SPLIT_NAMES))
            if unknown:
                raise ConfigError(f"'{raw.file}': split value '{unknown[0]}' is not one of {', '.join(SPLIT_NAMES)}")
            stages = [SPLIT_NAMES[str(v)] for v in raw.splits]
            origin.update((stage, f"'{raw.file}' split column") for stage in stages)
        else:
            stages = [which] * len(raw.sequences)
            origin[which] = f"'{raw.file}'"
        for i, stage in enumerate(stages):
            parts[stage].sequences.append(raw.sequences[i])
            parts[stage].targets.append(None if raw.targets is None else raw.targets[i])
            parts[stage].names.append(f"{raw.names[i]} of '{raw.file}'")
    return parts, origin


def carve(split: Split, fraction: float, rng: np.random.Generator, stratify: bool) -> tuple[Split, Split]:
    """(kept, carved): ``fraction`` of the sequences drawn at random (within each class when stratified)."""
    n = len(split.sequences)
    if stratify:
        strata: dict[str, list[int]] = {}
        for i, y in enumerate(split.targets):
            strata.setdefault(label_text(y), []).append(i)
        chosen = [i for key in sorted(strata) for i in rng.permutation(strata[key])[: round(fraction * len(strata[key]))]]
    else:
        chosen = rng.permutation(n)[: round(fraction * n)].tolist()
    if not chosen and n >= 2:
        chosen = [int(rng.integers(n))]
    carved = set(int(i) for i in chosen)

    def pick(keep: bool) -> Split:
        idx = [i for i in range(n) if (i in carved) != keep]
        return Split([split.sequences[i] for i in idx], [split.targets[i] for i in idx], [split.names[i] for i in idx])

    return pick(True), pick(False)


def check_shapes(splits: dict[str, Split]) -> int:
    """Every split non-empty, every sequence at least one step, one channel count; returns it."""
    for stage, split in splits.items():
        if not split.sequences:
            raise ConfigError(f"the {stage} split is empty: give it sequences (a file or split column), or more training sequences to carve it from")
    channels = splits["train"].sequences[0].shape[1]
    first = splits["train"].names[0]
    for stage, split in splits.items():
        for i, x in enumerate(split.sequences):
            if x.ndim != 2 or len(x) == 0:
                raise ConfigError(f"{split.where(i, stage)} has no steps")
            if x.shape[1] != channels:
                raise ConfigError(f"{split.where(i, stage)} has {x.shape[1]} channel(s); {first} has {channels}: every sequence needs the same channels")
    return channels


def _forward_fill(x: np.ndarray) -> np.ndarray:
    """Each NaN takes the last earlier value in its channel (NaN where there is none)."""
    steps = np.where(np.isnan(x), 0, np.arange(len(x))[:, None])
    np.maximum.accumulate(steps, axis=0, out=steps)
    out = x[steps, np.arange(x.shape[1])]
    return out


def fill_missing(splits: dict[str, Split], rule: str) -> int:
    """Apply ``task.missing`` in place; returns how many values were filled."""
    holes = [(s, i) for s, split in splits.items() for i, x in enumerate(split.sequences) if np.isnan(x).any()]
    if not holes:
        return 0
    if rule == "error":
        stage, i = holes[0]
        step, channel = np.argwhere(np.isnan(splits[stage].sequences[i]))[0]
        raise ConfigError(
            f"{splits[stage].where(i, stage)} has a missing value (NaN) at step {step}, channel {channel} "
            f"({len(holes)} sequence(s) have some); set task.missing to ffill, zero or mean"
        )
    train = np.concatenate(splits["train"].sequences)
    observed = ~np.isnan(train).all(0)
    if rule != "zero" and not observed.all():
        raise ConfigError(f"channel {int(np.flatnonzero(~observed)[0])} has no value in the train split: task.missing={rule} cannot fill it")
    means = np.nanmean(train, 0) if rule != "zero" else None
    filled = 0
    for stage, i in holes:
        x = splits[stage].sequences[i]
        missing = np.isnan(x)
        filled += int(missing.sum())
        if rule == "ffill":
            x = _forward_fill(x)
            x = _forward_fill(x[::-1])[::-1]  # a leading gap takes the first value after it
        x = np.where(np.isnan(x), 0.0 if rule == "zero" else means, x)
        splits[stage].sequences[i] = x
    return filled


def normalize(splits: dict[str, Split], how: str) -> None:
    """Per-channel z-scores in place: statistics over every train step, or each sequence's own."""
    if how == "none":
        return
    if how == "channel":
        train = np.concatenate(splits["train"].sequences)
        mean, std = train.mean(0), train.std(0)
        std = np.where(std > 1e-12, std, 1.0)  # a constant channel is centred, not blown up
    for split in splits.values():
        for i, x in enumerate(split.sequences):
            if how == "sequence":
                mean, std = x.mean(0), x.std(0)
                std = np.where(std > 1e-12, std, 1.0)
            split.sequences[i] = (x - mean) / std


def pad_inputs(sequences: list[np.ndarray]) -> tuple[Tensor, Tensor]:
    lengths = np.array([len(x) for x in sequences])
    out = np.zeros((len(sequences), lengths.max(), sequences[0].shape[1]), dtype=np.float32)
    for i, x in enumerate(sequences):
        out[i, : len(x)] = x
    return torch.from_numpy(out), torch.from_numpy(lengths).long()


def prepare(o: SequenceOptions) -> SequenceData:
    """Read, split, check, clean, normalise and encode the data the options name."""
    started = time.perf_counter()
    files = resolve_files(o)
    raws = {which: read(path, o, files.shown(path)) for which, path in files.files.items()}
    target = TARGETS[o.target](o)
    for raw in raws.values():
        if target.needs_labels and raw.targets is None:
            raise ConfigError(f"'{raw.file}' has no targets (task.label_column '{o.label_column}'); task.target={o.target} needs them")
    splits, origin = assign_splits(raws)
    rng = np.random.default_rng(o.split_seed)
    stratify = o.target == "classification"
    carved = 0.0  # share of the original train split already carved off
    for stage, fraction in (("test", o.test_fraction), ("val", o.val_fraction)):
        if stage not in origin:  # not given by a file or split column (a given, empty one is an error)
            if carved + fraction >= 1:
                raise ConfigError(f"task.test_fraction + task.val_fraction must be below 1 to leave training sequences (got {carved + fraction:g})")
            splits["train"], splits[stage] = carve(splits["train"], fraction / (1 - carved), rng, stratify)
            carved += fraction
            origin[stage] = f"{fraction:g} of train carved with split_seed={o.split_seed}" + (", by class" if stratify else "")
    channels = check_shapes(splits)
    filled = fill_missing(splits, o.missing)
    normalize(splits, o.normalize)
    encoded = target.encode(splits)
    padded = {}
    for stage, split in splits.items():
        inputs, lengths = pad_inputs(split.sequences)
        padded[stage] = PaddedSplit(inputs, lengths, encoded.targets[stage])
    lengths = np.concatenate([s.lengths for s in splits.values()])
    counts = {f"{s}_sequences": len(split.sequences) for s, split in splits.items()}
    metrics = {
        **counts,
        "channels": channels,
        "length_min": int(lengths.min()),
        "length_median": float(np.median(lengths)),
        "length_max": int(lengths.max()),
        "missing_filled": filled,
        **{k: v for k, v in encoded.facts.items() if isinstance(v, (int, float))},
        "load_s": time.perf_counter() - started,
    }
    facts = {
        "source": o.path,
        "format": ",".join(sorted({format_of(p, o) for p in files.files.values()})),
        "target": o.target,
        **{f"{s}_from": origin[s] for s in STAGES},
        **{k: v for k, v in metrics.items() if k != "load_s"},
        **encoded.facts,
    }
    return SequenceData(files.name, channels, padded, target, encoded, {f"data/{k}": float(v) for k, v in metrics.items()}, facts)
