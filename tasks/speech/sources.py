"""Where utterances come from: a folder per label, a CSV/JSON manifest, or a ``datasets`` set.

Each source lists ``Item``s (audio as a file path or as encoded bytes, a label name, a speaker
id when known) and decodes nothing: ``audio.py`` does that with soundfile. A user's mistake (a
missing folder, a manifest without a path column, an unknown column) raises ``ConfigError``.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark import hub
from benchmark.config import ConfigError
from benchmark.registry import did_you_mean

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au")

# File-name conventions that encode the speaker (matched against the name without suffix).
SPEAKER_PATTERNS = {
    "speech_commands": r"^(?P<speaker>[0-9a-f]{8})_nohash_\d+$",  # 0a7c2a8d_nohash_0.wav
    "free_spoken_digit": r"^\d+_(?P<speaker>[^_]+)_\d+$",  # 7_jackson_32.wav
}
# File-name conventions that encode the label, for flat folders (task.label_pattern).
LABEL_PATTERNS = {"free_spoken_digit": r"^(?P<label>\d+)_[^_]+_\d+$"}  # 7_jackson_32.wav is a 7


@dataclass
class Item:
    name: str  # shown in messages: a path, or the hub row's file name
    label: str
    speaker: str | None = None
    path: Path | None = None
    data: bytes | None = None
    split: str | None = None  # the data set's own split (a manifest column, the hub's split), as train/val/test
    key: str | None = None  # path relative to the data root, as split lists name it


def speaker_regexes(pattern: str) -> list[re.Pattern]:
    """``auto`` means the known conventions; anything else is a regex with a ``speaker`` group."""
    if pattern == "auto":
        return [re.compile(p) for p in SPEAKER_PATTERNS.values()]
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"task.speaker_pattern '{pattern}' is not a valid regex: {e}") from None
    if "speaker" not in regex.groupindex:
        raise ConfigError(f"task.speaker_pattern '{pattern}' needs a named group (?P<speaker>...)")
    return [regex]


def label_regex(pattern: str) -> re.Pattern:
    """A built-in rule's name or a regex with a ``label`` group."""
    try:
        regex = re.compile(LABEL_PATTERNS.get(pattern, pattern))
    except re.error as e:
        raise ConfigError(f"task.label_pattern '{pattern}' is not a valid regex: {e}") from None
    if "label" not in regex.groupindex:
        raise ConfigError(f"task.label_pattern '{pattern}' needs a named group (?P<label>...); built-in rules: {', '.join(LABEL_PATTERNS)}")
    return regex


def speaker_from_name(name: str, regexes: list[re.Pattern]) -> str | None:
    stem = Path(name).stem
    for regex in regexes:
        if m := regex.match(stem):
            return m.group("speaker")
    return None


def data_root(o) -> Path:
    """What split lists and the background-noise folder are relative to: the folder, the
    manifest's folder, or (hub) the working directory."""
    return {"folder": Path(o.path), "manifest": Path(o.path).parent}.get(o.source, Path("."))


def split_of(value, where: str) -> str:
    """A data set's split name (train, validation, test, dev, ...) as ours (train, val, test)."""
    from tasks.speech.splits import SPLIT_NAMES

    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ConfigError(f"{where}: split '{value}' is not one of {', '.join(SPLIT_NAMES)}")
    return name


def from_folder(o, regexes) -> list[Item]:
    """The audiofolder convention: ``root/<label>/<file>``; the label is the parent folder's name,
    or, with ``task.label_pattern``, part of the file name (then files may lie anywhere below root).
    The background-noise folder (``task.background_noise``) is not a label."""
    root = Path(o.path)
    if not root.is_dir():
        raise ConfigError(f"task.path '{root}' is not a folder (source=folder wants <path>/<label>/<audio files>)")
    noise = root / o.background_noise
    by_name = label_regex(o.label_pattern) if o.label_pattern else None
    files = sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES and (by_name or p.parent != root) and not p.is_relative_to(noise)
    )
    if not files:
        where = "" if by_name else " in label folders"
        raise ConfigError(f"task.path '{root}' holds no audio files ({', '.join(AUDIO_SUFFIXES)}){where}")
    items = []
    for p in files:
        label = p.parent.name
        if by_name:
            m = by_name.match(p.stem)
            if not m:
                raise ConfigError(f"task.label_pattern '{o.label_pattern}' does not match '{p}'")
            label = m.group("label")
        items.append(Item(str(p), label, speaker_from_name(p.name, regexes), path=p, key=p.relative_to(root).as_posix()))
    return items


def _manifest_rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    text = path.read_text()
    if path.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ConfigError(f"task.path '{path}' must hold a JSON list of {{path, label}} objects")
    return rows


def _column(rows: list[dict], key: str, wanted: str, where: str) -> None:
    if rows and wanted not in rows[0]:
        found = list(rows[0])
        raise ConfigError(f"task.{key} '{wanted}' is not a column of {where}.{did_you_mean(wanted, found)} Columns: {', '.join(found)}")


def _speaker_column(o, columns) -> str | None:
    if o.speaker_column is not None:
        return o.speaker_column
    return next((c for c in ("speaker", "speaker_id") if c in columns), None)


def _split_column(o, columns) -> str | None:
    if o.split_column is not None:
        return o.split_column
    return "split" if "split" in columns else None


def from_manifest(o, regexes) -> list[Item]:
    """CSV or JSON(L) rows of path,label[,speaker]; relative paths are resolved against the file's folder."""
    path = Path(o.path)
    if not path.is_file():
        raise ConfigError(f"task.path '{path}' is not a file (source=manifest wants a .csv, .json or .jsonl)")
    if path.suffix.lower() not in (".csv", ".json", ".jsonl"):
        raise ConfigError(f"task.path '{path}': a manifest must be .csv, .json or .jsonl")
    try:
        rows = _manifest_rows(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"task.path '{path}' could not be parsed: {e}") from None
    if not rows:
        raise ConfigError(f"task.path '{path}' lists no utterances")
    _column(rows, "path_column", o.path_column, f"'{path}'")
    _column(rows, "label_column", o.label_column, f"'{path}'")
    speaker_col, split_col = _speaker_column(o, rows[0]), _split_column(o, rows[0])
    for key, col in (("speaker_column", speaker_col), ("split_column", split_col)):
        if col is not None:
            _column(rows, key, col, f"'{path}'")
    items = []
    for n, row in enumerate(rows, start=1):
        for col in (o.path_column, o.label_column, *([split_col] if split_col else [])):
            if row.get(col) in (None, ""):
                raise ConfigError(f"row {n} of '{path}' has no '{col}'")
        audio = path.parent / str(row[o.path_column])
        speaker = str(row[speaker_col]) if speaker_col and row.get(speaker_col) not in (None, "") else None
        split = split_of(row[split_col], f"row {n} of '{path}'") if split_col else None
        items.append(
            Item(str(audio), str(row[o.label_column]), speaker or speaker_from_name(audio.name, regexes), path=audio,
                 split=split, key=Path(str(row[o.path_column])).as_posix())
        )
    return items


def from_hub(o, regexes) -> list[Item]:
    """Any set ``datasets.load_dataset`` reads (a hub name, or a builder such as ``parquet`` with
    ``data_files``). The audio column is cast to ``Audio(decode=False)``: rows keep their encoded
    bytes (or a path) and ``datasets`` never needs torchcodec."""
    datasets = hub.datasets()
    kwargs = {"name": o.hub_config, "revision": o.hub_revision, "data_files": o.data_files, "cache_dir": o.cache_dir}
    try:
        loaded = datasets.load_dataset(o.path, **{k: v for k, v in kwargs.items() if v is not None})
    except (FileNotFoundError, ConnectionError) as e:  # also: the hub unreachable
        raise ConfigError(f"task.path '{o.path}': cannot load the data set ({str(e).splitlines()[0]})") from None
    except RuntimeError as e:
        if "scripts are no longer supported" not in str(e):
            raise
        raise ConfigError(
            f"task.path '{o.path}' is a script data set, which datasets>=4 cannot run; "
            "try its Parquet conversion: task.hub_revision=refs/convert/parquet"
        ) from None
    splits = o.hub_splits or list(loaded)
    unknown = [s for s in splits if s not in loaded]
    if unknown:
        raise ConfigError(f"task.hub_splits: '{unknown[0]}' is not a split of '{o.path}'. Splits: {', '.join(loaded)}")
    items = []
    for split in splits:
        ours = split_of(split, f"task.path '{o.path}'") if o.split == "predefined" else None
        ds = loaded[split]
        for key, col in (("audio_column", o.audio_column), ("label_column", o.label_column)):
            if col not in ds.column_names:
                raise ConfigError(
                    f"task.{key} '{col}' is not a column of '{o.path}'.{did_you_mean(col, ds.column_names)} "
                    f"Columns: {', '.join(ds.column_names)}"
                )
        ds = ds.cast_column(o.audio_column, datasets.Audio(decode=False))
        label_feature = ds.features[o.label_column]
        to_name: Callable = label_feature.int2str if isinstance(label_feature, datasets.ClassLabel) else str
        speaker_col = _speaker_column(o, ds.column_names)
        if speaker_col is not None and speaker_col not in ds.column_names:
            raise ConfigError(f"task.speaker_column '{speaker_col}' is not a column of '{o.path}'. Columns: {', '.join(ds.column_names)}")
        speakers = ds[speaker_col] if speaker_col else [None] * len(ds)
        for i, (audio, label, speaker) in enumerate(zip(ds[o.audio_column], ds[o.label_column], speakers)):
            name = audio.get("path") or f"{o.path}[{split}][{i}]"
            path = Path(audio["path"]) if audio.get("bytes") is None and audio.get("path") else None
            speaker = str(speaker) if speaker not in (None, "") else speaker_from_name(name, regexes)
            items.append(Item(name, to_name(label), speaker, path, audio.get("bytes"), split=ours, key=audio.get("path")))
    return items


SOURCES: dict[str, Callable] = {"folder": from_folder, "manifest": from_manifest, "hub": from_hub}
