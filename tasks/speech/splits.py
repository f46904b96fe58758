"""Train/validation/test splits: by speaker when every utterance's speaker is known, else random.

Both are drawn from a fixed ``split_seed``, so every model and training seed sees the same split.
"""

from __future__ import annotations

import warnings

import numpy as np


def split(
    speakers: list[str | None], val_fraction: float, test_fraction: float, seed: int, by_speaker: bool
) -> tuple[dict[str, np.ndarray], str]:
    """Returns indices per split and how they were split (``speaker`` or ``random``)."""
    n = len(speakers)
    rng = np.random.default_rng(seed)
    known = by_speaker and all(s is not None for s in speakers)
    if by_speaker and not known and any(s is not None for s in speakers):
        warnings.warn("some utterances have no speaker id: splitting at random, not by speaker", UserWarning, stacklevel=2)
    if known:
        groups = sorted(set(speakers))
        if len(groups) >= 3:
            return _by_speaker(speakers, groups, val_fraction, test_fraction, rng), "speaker"
        warnings.warn(f"only {len(groups)} speaker(s): splitting at random, not by speaker", UserWarning, stacklevel=2)
    order = rng.permutation(n)
    n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
    idx = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {k: np.sort(v) for k, v in idx.items()}, "random"


def _by_speaker(speakers, groups, val_fraction, test_fraction, rng) -> dict[str, np.ndarray]:
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
    stages = np.array([assign[s] for s in speakers])
    return {s: np.flatnonzero(stages == s) for s in ("train", "val", "test")}
