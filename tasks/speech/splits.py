"""Train/validation/test splits: predefined by the data set, by speaker, or at random.

``task.split``:

* ``predefined``: the data set's own split, from (first that applies) a file-name rule
  (``split_pattern``), a split column or the hub's splits (``Item.split``), or Speech Commands
  style lists (``validation_list.txt``/``testing_list.txt``, paths relative to the data root).
  Without any of them it falls back to ``speaker`` and says so. A missing validation split is
  carved from train at random.
* ``speaker``: whole speakers go to test, then validation; utterances without a speaker are
  split at random beside them, warned about once and counted (``data/speakerless_utterances``).
* ``random``: a seeded random split.

Every split is drawn from ``split_seed``, so every model and training seed sees the same one.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.config import ConfigError

STAGES = ("train", "val", "test")
# what a data set calls its splits -> ours
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "val", "valid": "val", "val": "val", "dev": "val", "test": "test", "testing": "test"}
# Speech Commands' lists, relative to the data root
DEFAULT_LISTS = {"val": "validation_list.txt", "test": "testing_list.txt"}
# built-in file-name rules: a named group per split; the group that takes part in the match decides
SPLIT_PATTERNS = {
    "free_spoken_digit": r"^\d+_[^_]+_(?:(?P<test>[0-4])|(?P<train>\d+))$",  # recordings 0-4 of each are the test set
}


@dataclass
class Assignment:
    """Indices per stage, how they were drawn, and the facts worth logging."""

    index: dict[str, np.ndarray]
    split_by: str
    metrics: dict[str, float] = field(default_factory=dict)


def split_regex(pattern: str) -> re.Pattern:
    """A built-in rule's name or a regex with at least one group named train, validation or test."""
    source = SPLIT_PATTERNS.get(pattern, pattern)
    try:
        regex = re.compile(source)
    except re.error as e:
        raise ConfigError(f"task.split_pattern '{pattern}' is not a valid regex: {e}") from None
    if not {"train", "validation", "test"} & set(regex.groupindex):
        raise ConfigError(
            f"task.split_pattern '{pattern}' needs a named group (?P<test>...), (?P<validation>...) or (?P<train>...); "
            f"built-in rules: {', '.join(SPLIT_PATTERNS)}"
        )
    return regex


def stages_from_pattern(names: list[str], regex: re.Pattern) -> list[str]:
    """The split of each file name (without its suffix): the named group that matched."""
    out = []
    for name in names:
        m = regex.match(Path(name).stem)
        hit = [g for g, v in (m.groupdict() if m else {}).items() if v is not None and g in ("train", "validation", "test")]
        if not hit:
            raise ConfigError(f"task.split_pattern '{regex.pattern}' does not assign '{name}' to train, validation or test")
        out.append(SPLIT_NAMES[hit[0]])
    return out


def stages_from_lists(relative: list[str | None], root: Path, lists: dict[str, str]) -> list[str]:
    """Files named in a list go to its split, the rest to train. A listed file that is not among
    the utterances, or one listed twice, is an error: the split would not be the published one."""
    known = {r: i for i, r in enumerate(relative) if r is not None}
    out = ["train"] * len(relative)
    for stage, name in lists.items():
        path = root / name
        if not path.is_file():
            raise ConfigError(f"task.split_lists: '{path}' does not exist")
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            entry = line.strip()
            if not entry:
                continue
            if entry not in known:
                raise ConfigError(f"'{path}' line {n} names '{entry}', which is not an utterance under '{root}'")
            if out[known[entry]] != "train":
                raise ConfigError(f"'{path}' line {n}: '{entry}' is already in the {out[known[entry]]} split")
            out[known[entry]] = stage
    return out


def random_split(n: int, val_fraction: float, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A stage per item, at random: ``test_fraction`` and ``val_fraction`` of n (at least one each)."""
    order = rng.permutation(n)
    n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
    stages = np.full(n, "train", dtype=object)
    stages[order[:n_test]], stages[order[n_test : n_test + n_val]] = "test", "val"
    return stages


def speaker_split(speakers: list[str | None], val_fraction: float, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, str, int]:
    """Known speakers split by speaker, the rest at random beside them (warned once).

    Returns a stage per item, how it was split (``speaker`` or ``random``) and the number of
    utterances without a speaker.
    """
    known = [i for i, s in enumerate(speakers) if s is not None]
    speakerless = len(speakers) - len(known)
    groups = sorted({speakers[i] for i in known})
    if len(groups) < 3:
        why = "no utterance names its speaker" if not groups else f"only {len(groups)} speaker(s)"
        warnings.warn(f"{why}: splitting at random, not by speaker", UserWarning, stacklevel=3)
        return random_split(len(speakers), val_fraction, test_fraction, rng), "random", speakerless
    stages = np.full(len(speakers), "train", dtype=object)
    stages[known] = _by_speaker([speakers[i] for i in known], groups, val_fraction, test_fraction, rng)
    if speakerless:
        warnings.warn(
            f"{speakerless} of {len(speakers)} utterances name no speaker: they are split at random, "
            "the others by speaker (logged as data/speakerless_utterances)",
            UserWarning,
            stacklevel=3,
        )
        rest = [i for i, s in enumerate(speakers) if s is None]
        stages[rest] = random_split(len(rest), val_fraction, test_fraction, rng) if len(rest) >= 3 else "train"
    return stages, "speaker", speakerless


def _by_speaker(speakers, groups, val_fraction, test_fraction, rng) -> np.ndarray:
    """Whole speakers go to test, then validation, until each holds its share of utterances;
    every split keeps at least one speaker."""
    speakers = np.asarray(speakers, dtype=object)
    counts = {g: int((speakers == g).sum()) for g in groups}
    order = [groups[i] for i in rng.permutation(len(groups))]
    assign, i = {}, 0
    for stage, fraction, leave in (("test", test_fraction, 2), ("val", val_fraction, 1)):
        filled = 0
        while i < len(order) - leave and (filled == 0 or filled < fraction * len(speakers)):
            assign[order[i]], filled, i = stage, filled + counts[order[i]], i + 1
    assign.update((g, "train") for g in order[i:])
    return np.array([assign[s] for s in speakers], dtype=object)


def carve_validation(stages: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A predefined split without validation: ``val_fraction`` of train, at random."""
    train = np.flatnonzero(stages == "train")
    n_val = max(1, round(len(train) * val_fraction))
    stages = stages.copy()
    stages[rng.permutation(train)[:n_val]] = "val"
    return stages


def as_index(stages: np.ndarray) -> dict[str, np.ndarray]:
    return {s: np.flatnonzero(stages == s) for s in STAGES}


def predefined_stages(items, o, root: Path) -> tuple[np.ndarray | None, str]:
    """The data set's own split per item and where it came from; (None, "") when it defines none."""
    if o.split_pattern is not None:
        regex = split_regex(o.split_pattern)
        return np.array(stages_from_pattern([it.name for it in items], regex), dtype=object), "file-name rule"
    if items and all(it.split is not None for it in items):
        return np.array([it.split for it in items], dtype=object), "the data set's splits"
    lists = o.split_lists
    if lists is None:
        lists = {k: name for k, name in DEFAULT_LISTS.items() if (root / name).is_file()}
    else:
        lists = {SPLIT_NAMES[k]: name for k, name in lists.items()}
    if lists:
        return np.array(stages_from_lists([it.key for it in items], root, lists), dtype=object), "split lists"
    return None, ""


def check_predefined(stages: np.ndarray, source: str, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Needs train and test; carves validation from train when the data set has none."""
    for stage in ("train", "test"):
        if not (stages == stage).any():
            raise ConfigError(
                f"task.split=predefined: {source} define no {stage} utterances; use task.split=speaker or task.split=random"
            )
    if (stages == "val").any():
        return stages, f"predefined ({source})"
    return carve_validation(stages, val_fraction, rng), f"predefined ({source}; validation carved at random from train)"
