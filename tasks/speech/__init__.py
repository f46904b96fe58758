"""Speech: keyword / spoken-digit classification from audio, features computed on the device.

    rnnbench run task=speech task.path=data/spoken_digits model=gru
    rnnbench suite configs/suites/speech.yaml

See ``tasks/speech/README.md`` for the sources (audio folder, CSV/JSON manifest, ``datasets``
hub sets), the audio path and why the features are built the way they are.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from benchmark import metrics
from benchmark.config import ConfigError
from benchmark.task import Baseline, InputKind, Metric, OutputKind, Task, TaskOptions, TaskSpec, register_task
from tasks.speech.audio import DataWarning, decode_all
from tasks.speech.sources import SOURCES, speaker_regexes
from tasks.speech.splits import split


class SpeechOptions(TaskOptions):
    # where the audio is
    source: Literal["folder", "manifest", "hub"] = Field("folder", description="folder: <path>/<label>/*.wav; manifest: CSV/JSON of path,label; hub: datasets.load_dataset(path)")
    path: str = Field("data/spoken_digits", description="the folder, the manifest file, or the data set name / builder (e.g. 'parquet')")
    data_files: str | list[str] | None = Field(None, description="hub: data_files for load_dataset (e.g. local parquet files)")
    hub_config: str | None = Field(None, description="hub: configuration name (e.g. 'v0.02')")
    hub_revision: str | None = Field(None, description="hub: revision (e.g. 'refs/convert/parquet')")
    hub_splits: list[str] | None = Field(None, description="hub: splits to pool before re-splitting (default: all)")
    cache_dir: str | None = Field(None, description="hub: datasets cache folder")
    audio_column: str = "audio"
    path_column: str = "path"
    label_column: str = "label"
    speaker_column: str | None = Field(None, description="default: a 'speaker' or 'speaker_id' column if present, else the file name")
    speaker_pattern: str = Field("auto", description="regex with (?P<speaker>...) on file names; auto: Speech Commands and free-spoken-digit names")
    # which utterances
    labels: list[str] | None = Field(None, description="the classes, in id order; default: every label found, sorted")
    unknown_labels: Literal["error", "skip"] = Field("error", description="a label not in 'labels': stop, or skip it (counted)")
    bad_files: Literal["error", "skip"] = Field("skip", description="an unreadable file: stop, or skip it with a warning (counted)")
    max_per_label: int | None = Field(None, gt=0, description="keep at most this many utterances per label (seeded)")
    # audio
    sample_rate: int = Field(16000, gt=0)
    resample: bool = Field(True, description="resample other rates with soxr; false: another rate is an error")
    duration_s: float = Field(1.0, gt=0, description="pad or trim every utterance to this length")
    # features (computed on the training device)
    features: Literal["mfcc", "logmel"] = "mfcc"
    win_ms: float = Field(25.0, gt=0)
    hop_ms: float = Field(10.0, gt=0)
    n_mels: int = Field(40, gt=0)
    n_mfcc: int = Field(13, gt=0)
    fmin: float = Field(20.0, ge=0)
    fmax: float | None = Field(None, gt=0, description="default: sample_rate / 2")
    normalize: Literal["utterance", "dataset", "none"] = Field("utterance", description="per-feature mean/std over an utterance, or over the training set")
    use_lengths: bool = Field(True, description="pass frame lengths, so the models never read padding")
    time_masks: int = Field(0, ge=0, description="SpecAugment time masks per utterance (training only)")
    time_mask_frames: int = Field(10, ge=0)
    freq_masks: int = Field(0, ge=0, description="SpecAugment frequency masks per utterance (training only)")
    freq_mask_bins: int = Field(4, ge=0)
    # splits
    by_speaker: bool = Field(True, description="speaker-independent splits where every speaker is known")
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    split_seed: int = Field(1234, description="seed of the split and of max_per_label sampling")


@dataclass
class SpeechData:
    labels: list[str]
    splits: dict[str, TensorDataset]  # (int16 waves, sample lengths, label ids)
    split_by: str
    metrics: dict[str, float]
    majority_accuracy: float


@register_task
class Speech(Task):
    name = "speech"
    version = "1"
    description = "keyword / spoken-digit classification from audio; log-mel or MFCC on the device (accuracy)"
    Options = SpeechOptions
    data_options = (
        "source", "path", "data_files", "hub_config", "hub_revision", "hub_splits", "cache_dir", "audio_column",
        "path_column", "label_column", "speaker_column", "speaker_pattern", "labels", "unknown_labels", "max_per_label",
    )  # fmt: skip

    _data: SpeechData | None = None

    @classmethod
    def smoke_options(cls, workdir) -> dict:
        """Writes a tiny audio folder: 3 tones x 3 speakers (pitch) x 2 takes, 0.25 s at 8 kHz."""
        import soundfile as sf

        root = workdir / "speech-smoke"
        t = np.arange(2000) / 8000
        for c, label in enumerate(("low", "mid", "high")):
            (root / label).mkdir(parents=True, exist_ok=True)
            for s in range(3):
                for k in range(2):
                    tone = 0.3 * np.sin(2 * np.pi * 300 * (c + 1) * (1 + 0.05 * s) * t) * (1 - 0.3 * k)
                    sf.write(root / label / f"{c}_spk{s}_{k}.wav", tone.astype(np.float32), 8000)
        return {"path": str(root), "sample_rate": 8000, "duration_s": 0.25, "n_mels": 20, "n_mfcc": 10, "hop_ms": 16, "win_ms": 32}

    def _check(self) -> None:
        o = self.options
        nyquist = o.sample_rate / 2
        if o.features == "mfcc" and o.n_mfcc > o.n_mels:
            raise ConfigError(f"task.n_mfcc ({o.n_mfcc}) must not exceed task.n_mels ({o.n_mels})")
        if o.fmax is not None and o.fmax > nyquist:
            raise ConfigError(f"task.fmax ({o.fmax}) is above the Nyquist frequency {nyquist} of task.sample_rate")
        if o.val_fraction + o.test_fraction >= 1:
            raise ConfigError("task.val_fraction + task.test_fraction must be below 1")
        if self.hop_length < 1 or self.win_length < 2:
            raise ConfigError("task.win_ms and task.hop_ms are too short for task.sample_rate")

    @property
    def win_length(self) -> int:
        return int(round(self.options.win_ms * self.options.sample_rate / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.options.hop_ms * self.options.sample_rate / 1000))

    def _filter_labels(self, items):
        o = self.options
        if o.labels is None:
            return items, sorted({it.label for it in items}), 0
        wanted = set(o.labels)
        unknown = [it for it in items if it.label not in wanted]
        if unknown and o.unknown_labels == "error":
            it = unknown[0]
            raise ConfigError(
                f"label '{it.label}' of '{it.name}' is not in task.labels ({', '.join(o.labels)}); "
                f"set task.unknown_labels=skip to skip such utterances ({len(unknown)} of {len(items)})"
            )
        if unknown:
            seen = Counter(it.label for it in unknown)
            warnings.warn(f"skipped {len(unknown)} utterance(s) with labels not in task.labels: {dict(seen.most_common(5))}", DataWarning, stacklevel=3)
        return [it for it in items if it.label in wanted], list(o.labels), len(unknown)

    def _load(self) -> SpeechData:
        o = self.options
        self._check()
        items = SOURCES[o.source](o, speaker_regexes(o.speaker_pattern))
        items, labels, n_unknown = self._filter_labels(items)
        if len(labels) < 2:
            raise ConfigError(f"task.path '{o.path}' has {len(labels)} label(s) ({', '.join(labels)}); classification needs at least 2")
        if o.max_per_label is not None:
            rng = np.random.default_rng(o.split_seed)
            keep = []
            for label in labels:
                idx = [i for i, it in enumerate(items) if it.label == label]
                keep += sorted(rng.permutation(idx)[: o.max_per_label].tolist()) if idx else []
            items = [items[i] for i in sorted(keep)]
        missing = [label for label in labels if not any(it.label == label for it in items)]
        if missing:
            raise ConfigError(f"task.labels: no utterances of '{missing[0]}' in '{o.path}'")
        decoded = decode_all(items, o.sample_rate, o.resample, o.duration_s, o.bad_files)
        kept = [items[i] for i in decoded.kept]
        index = {label: i for i, label in enumerate(labels)}
        targets = torch.tensor([index[it.label] for it in kept])
        idx, split_by = split([it.speaker for it in kept], o.val_fraction, o.test_fraction, o.split_seed, o.by_speaker)
        empty = [s for s, v in idx.items() if len(v) == 0]
        if empty:
            raise ConfigError(f"the {empty[0]} split of '{o.path}' is empty: {len(kept)} utterance(s) are too few to split")
        waves, lengths = torch.from_numpy(decoded.waves), torch.from_numpy(decoded.lengths)
        splits = {s: TensorDataset(waves[i], lengths[i], targets[i]) for s, i in ((k, torch.from_numpy(v)) for k, v in idx.items())}
        majority = Counter(targets[idx["train"]].tolist()).most_common(1)[0][0]
        speakers = {s: len({kept[i].speaker for i in v}) if split_by == "speaker" else 0 for s, v in idx.items()}
        data_metrics = {
            "data/decode_utt_per_s": len(items) / decoded.seconds if decoded.seconds else float("nan"),
            "data/utterances": len(kept),
            "data/skipped_unreadable": len(decoded.bad),
            "data/skipped_unknown_label": n_unknown,
            "data/resampled": decoded.resampled,
            **{f"data/{s}_utterances": len(v) for s, v in idx.items()},
            **{f"data/{s}_speakers": n for s, n in speakers.items() if split_by == "speaker"},
        }
        return SpeechData(labels, splits, split_by, data_metrics, float((targets[idx["test"]] == majority).float().mean()))

    @property
    def data(self) -> SpeechData:
        """Listed, decoded and split once per instance: every input error surfaces in ``spec()``."""
        if self._data is None:
            self._data = self._load()
        return self._data

    def spec(self) -> TaskSpec:
        o, data = self.options, self.data
        return TaskSpec(
            name=self.name,
            version=self.version,
            input_kind=InputKind.CONTINUOUS,
            input_size=o.n_mfcc if o.features == "mfcc" else o.n_mels,
            output_kind=OutputKind.SEQUENCE_CLASSIFICATION,
            num_outputs=len(data.labels),
            loss=metrics.cross_entropy_loss,
            metrics=(Metric("accuracy", metrics.accuracy, higher_is_better=True),),
            main_metric="accuracy",
            baseline=Baseline("most frequent training label", {"accuracy": data.majority_accuracy}),
            extra={
                "labels": len(data.labels),
                "split_by": data.split_by,
                "frames": 1 + int(round(o.duration_s * o.sample_rate)) // self.hop_length,
            },
        )

    def extractor(self):
        from tasks.speech.features import FeatureExtractor

        o = self.options
        return FeatureExtractor(
            o.sample_rate, self.win_length, self.hop_length, o.n_mels,
            o.n_mfcc if o.features == "mfcc" else None, o.fmin, o.fmax,
        )

    def datamodule(self, batch_size: int, seed: int):
        from tasks.speech.datamodule import SpeechDataModule

        o, data = self.options, self.data
        augment = None
        if o.time_masks or o.freq_masks:
            augment = dict(time_masks=o.time_masks, time_width=o.time_mask_frames, freq_masks=o.freq_masks, freq_width=o.freq_mask_bins)
        return SpeechDataModule(
            data.splits, self.extractor(), batch_size, seed,
            normalize=o.normalize, use_lengths=o.use_lengths, augment=augment, data_metrics=data.metrics,
        )
