"""The ``_silence_`` class of Speech Commands: clips cut from the background-noise recordings.

As TensorFlow's reference pipeline (``tensorflow/examples/speech_commands/input_data.py``,
``AudioProcessor.get_data``) makes them: a random recording, a random window of the clip's
length, scaled by a volume drawn from U(0, 1). Drawn here once, from ``split_seed``, so every
model and seed sees the same clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.config import ConfigError
from tasks.speech.audio import WrongSampleRate, read_mono, to_int16
from tasks.speech.sources import AUDIO_SUFFIXES, Item

SILENCE, UNKNOWN = "_silence_", "_unknown_"


def background_recordings(folder: Path, sample_rate: int, resample: bool, samples: int) -> list[np.ndarray]:
    """Every recording in ``folder`` as float32 mono; each must be longer than one clip."""
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in AUDIO_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise ConfigError(f"task.silence_share needs background recordings: '{folder}' holds no audio (set task.background_noise)")
    out = []
    for path in files:
        try:
            audio, _ = read_mono(Item(str(path), SILENCE, path=path), sample_rate, resample)
        except WrongSampleRate as e:
            raise ConfigError(f"'{path}' is {e}; set task.resample=true to resample it") from None
        if len(audio) <= samples:
            raise ConfigError(f"background recording '{path}' is {len(audio)} samples, not longer than one clip ({samples})")
        out.append(audio)
    return out


def cut_silence(recordings: list[np.ndarray], n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` int16 clips of ``samples``: a random window of a random recording at volume U(0, 1)."""
    clips = np.zeros((n, samples), dtype=np.int16)
    for i in range(n):
        audio = recordings[rng.integers(len(recordings))]
        start = rng.integers(0, len(audio) - samples)
        clips[i] = to_int16(audio[start : start + samples] * rng.uniform(0, 1))
    return clips
