"""Load a text-classification data set through ``datasets`` and check it: one ConfigError line per mistake.

Hub data sets and local files go through the same ``datasets.load_dataset`` call; what comes
back is plain lists (texts, integer labels) per split: train, val, test.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark import hub
from benchmark.config import ConfigError
from tasks.text.options import TextOptions

# file extension -> (datasets builder, its extra arguments)
FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
SPLITS = ("train", "val", "test")


@dataclass
class TextSplits:
    texts: dict[str, list[str]]  # keyed by SPLITS
    labels: dict[str, np.ndarray]
    label_names: list[str]
    val_carved: bool


def source_name(o: TextOptions) -> str:
    """Short name of the data: the hub name, or the first local file's stem."""
    if o.dataset:
        return o.dataset + (f"/{o.dataset_config}" if o.dataset_config else "")
    files = local_files(o.data_files, check=False)
    first = next(iter(files.values()))[0] if files else "?"
    return Path(first).parent.name or Path(first).stem


def text_columns(o: TextOptions) -> list[str]:
    return [o.text_column] if isinstance(o.text_column, str) else list(o.text_column)


def check_source(o: TextOptions) -> None:
    if bool(o.dataset) == bool(o.data_files):
        raise ConfigError(
            "task 'text' needs exactly one data source: task.dataset=<hub name> (e.g. stanfordnlp/imdb, needs "
            "network) or task.data_files=<local CSV/TSV/JSON/parquet path or {split: path}>; presets: configs/tasks/"
        )
    if not text_columns(o):
        raise ConfigError("task.text_column names no column")
    if o.column_names is None:
        return
    if o.dataset:
        raise ConfigError("task.column_names names the columns of header-less local CSV/TSV files (task.data_files), not of a hub data set")
    suffixes = {Path(p).suffix.lower() for paths in local_files(o.data_files, check=False).values() for p in paths}
    if suffixes - {".csv", ".tsv"}:
        raise ConfigError(f"task.column_names is for CSV/TSV files without a header (got {', '.join(sorted(suffixes))})")
    if len(set(o.column_names)) != len(o.column_names):
        raise ConfigError(f"task.column_names has a name twice: {', '.join(o.column_names)}")
    for key, column in [("text_column", c) for c in text_columns(o)] + [("label_column", o.label_column)]:
        if column not in o.column_names:
            raise ConfigError(f"task.{key} '{column}' is not in task.column_names ({', '.join(o.column_names)})")


def local_files(data_files, check: bool = True) -> dict[str, list[str]]:
    """``data_files`` as {split: [paths]} with globs expanded; a bare path or list is the train split."""
    if data_files is None:
        return {}
    mapping = data_files if isinstance(data_files, dict) else {"train": data_files}
    out = {}
    for split, paths in mapping.items():
        paths = [paths] if isinstance(paths, str) else list(paths)
        expanded = []
        for p in paths:
            matches = sorted(glob.glob(p)) if glob.has_magic(p) else [p]
            if check and (not matches or not all(os.path.isfile(m) for m in matches)):
                raise ConfigError(f"task.data_files: '{p}' (split '{split}') does not exist")
            expanded += matches
        out[split] = expanded
    return out


def identity(o: TextOptions) -> str:
    """What the processed data depends on: the source's identity plus every option that shapes it."""
    if o.dataset:
        source = {"hub": o.dataset, "config": o.dataset_config, "revision": o.revision}
    else:  # a changed file (size or modification time) must not reuse a stale cache
        source = {
            split: [(str(Path(p).resolve()), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
            for split, paths in local_files(o.data_files).items()
        }
    shaping = o.model_dump(exclude={"dataset", "dataset_config", "revision", "data_files", "bucket_batches", "cache_dir"})
    payload = json.dumps({"source": source, "options": shaping, "format": 1}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _load(o: TextOptions):
    datasets = hub.datasets()
    datasets.logging.set_verbosity_error()
    if o.dataset:
        try:
            return datasets.load_dataset(o.dataset, o.dataset_config, revision=o.revision)
        except ConnectionError as e:
            raise ConfigError(
                f"task.dataset: the Hugging Face hub is unreachable, so '{o.dataset}' cannot be loaded ({e}). Without "
                "network, point task.data_files at local CSV/TSV/JSON/parquet files instead (unset task.dataset)"
            ) from None
        except datasets.exceptions.DatasetNotFoundError:
            raise ConfigError(f"task.dataset: '{o.dataset}' was not found on the Hugging Face hub (or is gated)") from None
        except ValueError as e:  # e.g. an unknown config name; datasets lists the valid ones
            raise ConfigError(f"task.dataset '{o.dataset}': {str(e).splitlines()[0]}") from None
    files = local_files(o.data_files)
    suffixes = {Path(p).suffix.lower() for paths in files.values() for p in paths}
    unknown = suffixes - FORMATS.keys()
    if unknown or len({FORMATS[s][0] + str(FORMATS[s][1]) for s in suffixes}) != 1:
        raise ConfigError(
            f"task.data_files: files must share one format of {', '.join(FORMATS)} (got {', '.join(sorted(suffixes))})"
        )
    builder, kwargs = FORMATS[suffixes.pop()]
    if o.column_names is not None:  # no header row: every row is data
        kwargs = {**kwargs, "column_names": list(o.column_names)}
    data = {}
    for split, paths in files.items():  # one split at a time: each may have its own columns and types
        try:
            data[split] = datasets.load_dataset(
                builder, data_files={split: paths}, split=split, cache_dir=str(Path(o.cache_dir) / "datasets"), **kwargs
            )
        except Exception as e:  # malformed files: datasets raises several kinds; the first line says what
            cause = e.__cause__ or e
            if "corresponds to no data" in str(cause):  # a file with a header and no rows
                raise ConfigError(f"split '{split}' is empty ({', '.join(paths)})") from None
            reason = str(cause).splitlines()[0][:300]
            raise ConfigError(f"task.data_files: could not read split '{split}' ({', '.join(paths)}): {reason}") from None
    return data


def _csv_files(o: TextOptions) -> bool:
    files = local_files(o.data_files, check=False)
    return bool(files) and all(Path(p).suffix.lower() in (".csv", ".tsv") for paths in files.values() for p in paths)


def _looks_like_data(names: list[str]) -> bool:
    """A header row names columns; a number or a phrase in it says it is a row of data."""
    def data_like(name: str) -> bool:
        try:
            float(name)
            return True
        except ValueError:
            return len(name.split()) > 2
    return any(data_like(str(n)) for n in names)


def _column(ds, split: str, column: str, option: str, headerless_hint: bool = False) -> list:
    if column not in ds.column_names:
        if headerless_hint and _looks_like_data(ds.column_names):
            shown = ", ".join(repr(n[:40]) for n in map(str, ds.column_names))
            raise ConfigError(
                f"split '{split}' has no column '{column}': its first row ({shown}) looks like data, not a header; "
                f"name the columns with task.column_names, e.g. task.column_names=[label, text]"
            )
        raise ConfigError(
            f"split '{split}' has no column '{column}' (set task.{option}); its columns: {', '.join(ds.column_names)}"
        )
    return list(ds[column])


def _joined_texts(ds, split: str, o: TextOptions, headerless_hint: bool) -> list:
    """The text column, or several joined with a space (a missing part counts as empty)."""
    columns = [_column(ds, split, c, "text_column", headerless_hint) for c in text_columns(o)]
    if len(columns) == 1:
        return columns[0]
    return [" ".join(str(p).strip() for p in parts if p not in (None, "")) for parts in zip(*columns)]


def _texts(values: list, split: str, column: str) -> list[str]:
    for row, t in enumerate(values):
        if not isinstance(t, str) or not t.strip():
            raise ConfigError(f"column '{column}' of split '{split}' has an empty or missing text at row {row} ({t!r})")
    return values


def _labels(values: list, split: str, column: str, names: list[str] | None, base: int = 0) -> np.ndarray:
    """Integer labels as they are; string labels through ``names``; anything else is an error."""
    out = np.empty(len(values), dtype=np.int64)
    index = {n: i for i, n in enumerate(names or [])}
    for row, v in enumerate(values):
        if isinstance(v, str):
            if not names:
                raise ConfigError(
                    f"column '{column}' of split '{split}' holds non-integer labels (row {row}: {v!r}); "
                    "list the classes in task.label_names to map them to integers"
                )
            if v not in index:
                raise ConfigError(
                    f"label {v!r} in column '{column}' of split '{split}' (row {row}) is not one of task.label_names: "
                    f"{', '.join(names)}"
                )
            out[row] = index[v]
        elif isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer()):
            out[row] = int(v) - base
        else:
            raise ConfigError(f"column '{column}' of split '{split}' holds a non-integer label at row {row}: {v!r}")
    return out


def _choose(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray | None:
    return None if cap is None or cap >= n else np.sort(rng.permutation(n)[:cap])


def load_splits(o: TextOptions) -> TextSplits:
    """Load, check, carve the validation split if needed and apply the caps."""
    check_source(o)
    data = _load(o)
    available = list(data.keys())
    # a "validation" split serves as val unless it is the test split (sst2: its test labels are hidden)
    val_name = o.val_split or ("validation" if "validation" in data and o.test_split != "validation" else None)
    wanted = {"train": (o.train_split, "train_split"), "test": (o.test_split, "test_split")}
    if val_name is not None:
        wanted["val"] = (val_name, "val_split")
    texts, labels = {}, {}
    names = list(o.label_names) if o.label_names else None
    feature = data[o.train_split].features.get(o.label_column) if o.train_split in data else None
    if names is None and feature is not None and hasattr(feature, "names"):  # a ClassLabel column names its classes
        names = list(feature.names)
    for key, (split, option) in wanted.items():
        if split not in data:
            raise ConfigError(f"split '{split}' not found (task.{option}); the data has: {', '.join(available)}")
        ds = data[split]
        if len(ds) == 0:
            raise ConfigError(f"split '{split}' is empty")
        headerless_hint = o.column_names is None and _csv_files(o)
        texts[key] = _texts(_joined_texts(ds, split, o, headerless_hint), split, "+".join(text_columns(o)))
        labels[key] = _labels(_column(ds, split, o.label_column, "label_column", headerless_hint), split, o.label_column, names, o.label_base)

    rng = np.random.default_rng(o.split_seed)
    if "val" not in texts:
        n = len(texts["train"])
        n_val = max(1, round(n * o.val_fraction))
        if n - n_val < 1:
            raise ConfigError(f"split '{o.train_split}' has {n} example(s): too few to carve a validation split from")
        perm = rng.permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        texts["val"], labels["val"] = [texts["train"][i] for i in val_idx], labels["train"][val_idx]
        texts["train"], labels["train"] = [texts["train"][i] for i in train_idx], labels["train"][train_idx]
    for key, cap in (("train", o.max_train_examples), ("val", o.max_eval_examples), ("test", o.max_eval_examples)):
        keep = _choose(len(texts[key]), cap, rng)
        if keep is not None:
            texts[key], labels[key] = [texts[key][i] for i in keep], labels[key][keep]

    seen = Counter(labels["train"].tolist())
    num_classes = len(names) if names else max(seen) + 1
    absent = sorted(set(range(num_classes)) - set(seen)) if not names else []
    if absent:  # an output class no example teaches: most often labels counted from 1
        hint = " (classes counted from 1? set task.label_base=1)" if absent == [0] and o.label_base == 0 else ""
        raise ConfigError(
            f"class {absent[0] + o.label_base} never occurs in column '{o.label_column}' of split '{o.train_split}' "
            f"(its labels run {min(seen) + o.label_base}..{max(seen) + o.label_base}){hint}; or list the classes in task.label_names"
        )
    split_of = {"train": o.train_split, "val": val_name or f"{o.train_split} (carved validation)", "test": o.test_split}
    for key in SPLITS:
        y = labels[key]
        bad = np.flatnonzero((y < 0) | (y >= num_classes) | ~np.isin(y, list(seen)))
        if bad.size:
            row, v = int(bad[0]), int(y[bad[0]])
            where = f"label {v + o.label_base} in column '{o.label_column}' of split '{split_of[key]}' (row {row})"
            if not 0 <= v < num_classes:
                hint = "" if o.label_base or v != num_classes else " (classes counted from 1? set task.label_base=1)"
                raise ConfigError(f"{where} is outside the classes {o.label_base}..{num_classes - 1 + o.label_base}{hint}")
            raise ConfigError(f"{where} never occurs in the training split")
    if len(seen) < 2:
        raise ConfigError(f"split '{o.train_split}' has a single class ({next(iter(seen))}); classification needs two")
    label_names = names or [str(i) for i in range(num_classes)]
    return TextSplits(texts, labels, label_names, val_carved="val" not in wanted)
