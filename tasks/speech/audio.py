"""Decode utterances with soundfile, resample with soxr, pad or trim to a fixed duration.

Waveforms are kept as int16 on the host (half the memory and host-to-device traffic of float32;
lossless for 16-bit sources) and turned into float features on the training device.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
import soxr

from benchmark.config import ConfigError
from tasks.speech.sources import Item


class DataWarning(UserWarning):
    """Input the task skipped (an unreadable file, an unknown label); counts are logged with the run."""


class WrongSampleRate(Exception):
    pass


@dataclass
class Decoded:
    waves: np.ndarray  # (N, samples) int16, zero-padded
    lengths: np.ndarray  # (N,) samples of real audio in each row
    kept: list[int]  # indices of the decoded items, in order
    bad: list[tuple[str, str]] = field(default_factory=list)  # (item name, reason) of skipped items
    resampled: int = 0
    seconds: float = 0.0


def read_mono(item: Item, sample_rate: int, resample: bool) -> tuple[np.ndarray, bool]:
    """One item, whole, as float32 mono at ``sample_rate``, and whether it was resampled."""
    source = io.BytesIO(item.data) if item.data is not None else item.path
    audio, rate = sf.read(source, dtype="float32", always_2d=True)
    if audio.size == 0:
        raise ValueError("no audio frames")
    audio = audio.mean(axis=1)  # downmix to mono
    changed = rate != sample_rate
    if changed:
        if not resample:
            raise WrongSampleRate(f"{rate} Hz, not {sample_rate} Hz")
        audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
    return audio, changed


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def decode_one(item: Item, sample_rate: int, resample: bool, samples: int) -> tuple[np.ndarray, int, bool]:
    """One item -> (int16 row of ``samples``, real length, whether it was resampled)."""
    audio, changed = read_mono(item, sample_rate, resample)
    n = min(len(audio), samples)
    row = np.zeros(samples, dtype=np.int16)
    row[:n] = to_int16(audio[:n])
    return row, n, changed


def decode_all(items: list[Item], sample_rate: int, resample: bool, duration_s: float, bad_files: str) -> Decoded:
    """Decode every item (threads: libsndfile and soxr release the GIL).

    Unreadable or empty files are skipped with one ``DataWarning`` naming the count and the first
    few, or raise ``ConfigError`` when ``bad_files="error"``. A sample rate other than
    ``sample_rate`` with ``resample=False`` is always an error: the features would be wrong.
    """
    samples = int(round(duration_s * sample_rate))

    def work(item):
        try:
            return decode_one(item, sample_rate, resample, samples)
        except WrongSampleRate as e:
            return e
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:  # corrupt, missing, empty
            return ValueError(f"{type(e).__name__}: {e}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(work, items))
    seconds = time.perf_counter() - started
    rows, lengths, kept, bad, resampled = [], [], [], [], 0
    for i, (item, r) in enumerate(zip(items, results)):
        if isinstance(r, WrongSampleRate):
            raise ConfigError(f"'{item.name}' is {r}; set task.resample=true to resample it, or task.sample_rate to its rate")
        if isinstance(r, Exception):
            if bad_files == "error":
                raise ConfigError(f"cannot decode '{item.name}' ({r}); set task.bad_files=skip to skip unreadable files")
            bad.append((item.name, str(r)))
            continue
        rows.append(r[0])
        lengths.append(r[1])
        kept.append(i)
        resampled += r[2]
    if bad:
        shown = "; ".join(f"{name}: {why}" for name, why in bad[:3])
        warnings.warn(f"skipped {len(bad)} unreadable audio file(s) of {len(items)}: {shown}", DataWarning, stacklevel=2)
    if not rows:
        raise ConfigError(f"none of the {len(items)} audio files could be decoded (first: {bad[0][0]}: {bad[0][1]})")
    return Decoded(np.stack(rows), np.asarray(lengths, dtype=np.int64), kept, bad, resampled, seconds)
