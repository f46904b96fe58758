"""Speech: keyword / spoken-digit classification from audio, features computed on the device.

    rnnbench run task=speech task.path=data/spoken_digits model=gru
    rnnbench suite configs/suites/speech.yaml

See ``tasks/speech/README.md`` for the sources (audio folder, CSV/JSON manifest, ``datasets``
hub sets), the audio path and why the features are built the way they are.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch.utils.data import TensorDataset

from benchmark import metrics
from benchmark.config import ConfigError
from benchmark.task import (
    Baseline, DataSplit, DatasetInfo, InputKind, Metric, OutputKind, Task, TaskOptions, TaskSpec, fingerprint, register_task,
)  # fmt: skip
from tasks.speech import noise  # noqa: F401  (registers the snr perturbation)
from tasks.speech.audio import DataWarning, decode_all
from tasks.speech.silence import SILENCE, UNKNOWN, background_recordings, cut_silence
from tasks.speech.sources import SOURCES, data_root, speaker_regexes
from tasks.speech.splits import STAGES, as_index, check_predefined, predefined_stages, random_split, speaker_split, split_regex


class SpeechOptions(TaskOptions):
    # where the audio is
    source: Literal["folder", "manifest", "hub"] = Field("folder", description="folder: <path>/<label>/*.wav; manifest: CSV/JSON of path,label; hub: datasets.load_dataset(path)")
    path: str = Field("data/spoken_digits", description="the folder, the manifest file, or the data set name / builder (e.g. 'parquet')")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(None, description="hub: data_files for load_dataset (e.g. local parquet files, or {split: files})")
    hub_config: str | None = Field(None, description="hub: configuration name (e.g. 'v0.02')")
    hub_revision: str | None = Field(None, description="hub: revision (e.g. 'refs/convert/parquet')")
    hub_splits: list[str] | None = Field(None, description="hub: splits to use (default: all); kept as given with split=predefined, else pooled and re-split")
    cache_dir: str | None = Field(None, description="hub: datasets cache folder")
    label_pattern: str | None = Field(None, description="folder: the label from file names, a regex with (?P<label>...) or a built-in rule: free_spoken_digit")
    audio_column: str = "audio"
    path_column: str = "path"
    label_column: str = "label"
    speaker_column: str | None = Field(None, description="default: a 'speaker' or 'speaker_id' column if present, else the file name")
    speaker_pattern: str = Field("auto", description="regex with (?P<speaker>...) on file names; auto: Speech Commands and free-spoken-digit names")
    # which utterances
    labels: list[str] | None = Field(None, description="the classes, in id order; default: every label found, sorted")
    unknown_labels: Literal["error", "skip", "sample"] = Field(
        "error", description="a label not in 'labels': stop, skip it (counted), or sample it into the class _unknown_ (unknown_share)"
    )
    unknown_share: float = Field(0.1, ge=0, description="unknown_labels=sample: _unknown_ utterances per split, as a share of its word utterances")
    silence_share: float = Field(0.0, ge=0, description="_silence_ clips cut from the background_noise recordings per split, as a share of its word utterances")
    background_noise: str = Field("_background_noise_", description="folder of long background recordings, relative to the data root; never a label")
    missing_labels: Literal["error", "drop"] = Field("error", description="a label in 'labels' without utterances: stop, or drop the class with a warning")
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
    split: Literal["speaker", "random", "predefined"] = Field(
        "speaker", description="speaker: whole speakers per split (the speakerless at random, counted); random; predefined: the data set's own"
    )
    split_lists: dict[Literal["validation", "test"], str] | None = Field(
        None, description="predefined: files listing each split's utterances, relative to the data root; default: validation_list.txt, testing_list.txt where present"
    )
    split_pattern: str | None = Field(
        None, description="predefined: regex on file names with a (?P<test>...), (?P<validation>...) or (?P<train>...) group, or a built-in rule: free_spoken_digit"
    )
    split_column: str | None = Field(None, description="manifest: the column naming each utterance's split (default: 'split' if present)")
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    split_seed: int = Field(1234, description="seed of the split and of max_per_label sampling")

    @field_validator("labels", mode="before")
    @classmethod
    def _quoted_words(cls, value):
        if isinstance(value, list) and any(isinstance(v, bool) for v in value):
            raise ValueError('YAML reads yes/no/on/off as true/false: quote the words, e.g. ["yes", "no", "on", "off"]')
        return value


@dataclass
class SpeechData:
    labels: list[str]
    splits: dict[str, TensorDataset]  # (int16 waves, sample lengths, label ids)
    split_by: str
    metrics: dict[str, float]
    names: dict[str, list[str]]  # each split's utterances, in row order (silence clips as _silence_)
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
        "label_pattern", "unknown_share", "silence_share", "background_noise", "missing_labels", "split", "split_lists",
        "split_pattern", "split_column",
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

    def __init__(self, **options):
        if "by_speaker" in options:  # renamed: an old config gets told what to write instead
            raise ConfigError("task.by_speaker was replaced by task.split: use task.split=speaker (was true) or task.split=random (was false)")
        super().__init__(**options)

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
        for key in ("split_lists", "split_pattern"):
            if getattr(o, key) is not None and o.split != "predefined":
                raise ConfigError(f"task.{key} needs task.split=predefined (got task.split={o.split})")
        if o.split_pattern is not None:
            split_regex(o.split_pattern)
        if o.unknown_labels == "sample" and o.labels is None:
            raise ConfigError("task.unknown_labels=sample needs task.labels (the words; every other label becomes _unknown_)")

    @property
    def win_length(self) -> int:
        return int(round(self.options.win_ms * self.options.sample_rate / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.options.hop_ms * self.options.sample_rate / 1000))

    def _classes(self, items) -> tuple[list[int], list[str], list[str], dict[str, float]]:
        """Which items stay and as which class: (kept indices, each one's class, the classes in id
        order, counts). Labels not in ``labels`` stop the run, are skipped, or become ``_unknown_``."""
        o = self.options
        found = Counter(it.label for it in items)
        generated = [c for c, on in ((SILENCE, o.silence_share > 0), (UNKNOWN, o.unknown_labels == "sample")) if on]
        if o.labels is None:
            classes = generated + sorted(found)
        else:  # the generated classes come first unless listed, as in TensorFlow's words list
            classes = [c for c in generated if c not in o.labels] + list(o.labels)
        words = [c for c in classes if c not in generated]
        counts = {"data/skipped_unknown_label": 0, "data/dropped_labels": 0}
        missing = [w for w in words if w not in found]
        if missing and o.missing_labels == "error":
            raise ConfigError(f"task.labels: no utterances of '{missing[0]}' in '{o.path}' (task.missing_labels=drop drops such classes)")
        if missing:
            warnings.warn(f"task.labels: no utterances of {', '.join(missing)} in '{o.path}': {len(missing)} class(es) dropped", DataWarning, stacklevel=3)
            classes = [c for c in classes if c not in missing]
            counts["data/dropped_labels"] = len(missing)
        wanted = set(words)
        unknown = [i for i, it in enumerate(items) if it.label not in wanted]
        if unknown and o.unknown_labels == "error":
            it = items[unknown[0]]
            raise ConfigError(
                f"label '{it.label}' of '{it.name}' is not in task.labels ({', '.join(o.labels)}); "
                f"set task.unknown_labels=skip to skip such utterances ({len(unknown)} of {len(items)})"
            )
        if unknown and o.unknown_labels == "skip":
            seen = Counter(items[i].label for i in unknown)
            warnings.warn(f"skipped {len(unknown)} utterance(s) with labels not in task.labels: {dict(seen.most_common(5))}", DataWarning, stacklevel=3)
            counts["data/skipped_unknown_label"] = len(unknown)
        keep = [i for i, it in enumerate(items) if it.label in wanted or o.unknown_labels == "sample"]
        as_class = [items[i].label if items[i].label in wanted else UNKNOWN for i in keep]
        return keep, as_class, classes, counts

    def _stages(self, items, predefined: tuple[np.ndarray | None, str]) -> tuple[np.ndarray, str, dict[str, float]]:
        """Each kept item's stage (train/val/test), how the split was made, and its counts."""
        o = self.options
        rng = np.random.default_rng(o.split_seed)
        stages, source = predefined
        if stages is not None:
            stages, how = check_predefined(stages, source, o.val_fraction, rng)
            return stages, how, {}
        if o.split == "random":
            return random_split(len(items), o.val_fraction, o.test_fraction, rng), "random", {}
        stages, how, speakerless = speaker_split([it.speaker for it in items], o.val_fraction, o.test_fraction, rng)
        if o.split == "predefined":
            how += " (no predefined split found)"
        return stages, how, {"data/speakerless_utterances": speakerless, "data/split_fallback": float(o.split == "predefined")}

    def _load(self) -> SpeechData:
        o = self.options
        self._check()
        items = SOURCES[o.source](o, speaker_regexes(o.speaker_pattern))
        root = data_root(o)
        predefined = predefined_stages(items, o, root) if o.split == "predefined" else (None, "")
        if o.split == "predefined" and predefined[0] is None:
            warnings.warn(
                f"task.split=predefined: '{o.path}' has no split lists, split column, hub splits or split_pattern; "
                "splitting by speaker instead",
                DataWarning,
                stacklevel=2,
            )
        keep, as_class, labels, counts = self._classes(items)
        if o.max_per_label is not None:
            rng = np.random.default_rng(o.split_seed)
            chosen = []
            for label in sorted({items[i].label for i in keep}):
                idx = [k for k, i in enumerate(keep) if items[i].label == label]
                chosen += rng.permutation(idx)[: o.max_per_label].tolist()
            chosen.sort()
            keep, as_class = [keep[k] for k in chosen], [as_class[k] for k in chosen]
        if len(labels) < 2:
            raise ConfigError(f"task.path '{o.path}' has {len(labels)} label(s) ({', '.join(labels)}); classification needs at least 2")
        if predefined[0] is not None:
            predefined = (predefined[0][keep], predefined[1])
        items = [items[i] for i in keep]
        stages, split_by, split_counts = self._stages(items, predefined)
        # _unknown_: per split, a share of its word utterances, drawn at random (TensorFlow's recipe)
        sampler = np.random.default_rng([o.split_seed, 1])
        is_word = np.array([it.label == c for it, c in zip(items, as_class)], dtype=bool)  # not relabelled _unknown_
        chosen = is_word.copy()
        for stage in STAGES:
            pool = np.flatnonzero((stages == stage) & ~is_word)
            words = int(((stages == stage) & is_word).sum())
            chosen[sampler.permutation(pool)[: math.ceil(words * o.unknown_share)]] = True
        counts["data/unknown_pool"] = int((~is_word).sum())
        items = [it for it, c in zip(items, chosen) if c]
        as_class = [c for c, k in zip(as_class, chosen) if k]
        stages, is_word = stages[chosen], is_word[chosen]

        decoded = decode_all(items, o.sample_rate, o.resample, o.duration_s, o.bad_files)
        index = {label: i for i, label in enumerate(labels)}
        targets = np.array([index[as_class[i]] for i in decoded.kept], dtype=np.int64)
        stages, is_word, kept = stages[decoded.kept], is_word[decoded.kept], [items[i] for i in decoded.kept]
        waves, lengths = decoded.waves, decoded.lengths
        silence = 0
        if o.silence_share > 0:  # _silence_: per split, a share of its word utterances
            samples = waves.shape[1]
            recordings = background_recordings(root / o.background_noise, o.sample_rate, o.resample, samples)
            cutter = np.random.default_rng([o.split_seed, 2])
            for stage in STAGES:
                n = math.ceil(int(((stages == stage) & is_word).sum()) * o.silence_share)
                waves = np.concatenate([waves, cut_silence(recordings, n, samples, cutter)])
                lengths = np.concatenate([lengths, np.full(n, samples, dtype=lengths.dtype)])
                targets = np.concatenate([targets, np.full(n, index[SILENCE], dtype=np.int64)])
                stages = np.concatenate([stages, np.array([stage] * n, dtype=object)])
                is_word = np.concatenate([is_word, np.zeros(n, dtype=bool)])
                kept += [None] * n
                silence += n
        idx = as_index(stages)
        empty = [s for s, v in idx.items() if len(v) == 0]
        if empty:
            raise ConfigError(f"the {empty[0]} split of '{o.path}' is empty: {len(kept)} utterance(s) are too few to split")
        waves_t, lengths_t, targets_t = torch.from_numpy(waves), torch.from_numpy(lengths), torch.from_numpy(targets)
        splits = {s: TensorDataset(waves_t[i], lengths_t[i], targets_t[i]) for s, i in ((k, torch.from_numpy(v)) for k, v in idx.items())}
        majority = Counter(targets_t[idx["train"]].tolist()).most_common(1)[0][0]
        speakers = {s: {kept[i].speaker for i in v if kept[i] is not None and kept[i].speaker is not None} for s, v in idx.items()}
        data_metrics = {
            "data/decode_utt_per_s": len(items) / decoded.seconds if decoded.seconds else float("nan"),
            "data/utterances": len(kept),
            "data/skipped_unreadable": len(decoded.bad),
            "data/resampled": decoded.resampled,
            "data/silence_clips": silence,
            **counts,
            **split_counts,
            **{f"data/{s}_utterances": len(v) for s, v in idx.items()},
        }
        if any(speakers.values()):
            data_metrics |= {f"data/{s}_speakers": len(v) for s, v in speakers.items()}
            data_metrics["data/shared_speakers"] = sum(
                len(speakers[a] & speakers[b]) for a, b in (("train", "val"), ("train", "test"), ("val", "test"))
            )
        names = {s: [kept[i].name if kept[i] is not None else SILENCE for i in v] for s, v in idx.items()}
        return SpeechData(labels, splits, split_by, data_metrics, names, float((targets_t[idx["test"]] == majority).float().mean()))

    @property
    def data_name(self) -> str:
        o = self.options
        if o.source == "hub" and o.data_files:  # a builder (parquet, audiofolder) reading local files
            first = o.data_files if isinstance(o.data_files, str) else o.data_files[0]
            return Path(first).parent.name or Path(first).stem
        return Path(o.path).name or o.path

    def dataset_info(self) -> DatasetInfo:
        """Digests of the decoded, resampled and trimmed waveforms with their labels, per split."""
        o, data = self.options, self.data
        if o.source == "hub":
            source = {"hub": o.path, "config": o.hub_config, "revision": o.hub_revision, "data_files": o.data_files}
        else:
            source = {"path": str(Path(o.path).resolve())}
        source |= {"sample_rate": o.sample_rate, "duration_s": o.duration_s, "split_by": data.split_by, "split_seed": o.split_seed}
        splits = {
            split: DataSplit(fingerprint(data.labels, *ds.tensors), len(ds)) for split, ds in data.splits.items()
        }
        return DatasetInfo(self.data_name, "hub" if o.source == "hub" else "local", source, splits)

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
            perturbations=("snr", "gaussian"),
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
