"""Where sequences come from: UCR/UEA ``.ts`` files (read by aeon), ``.npz`` arrays, long or wide tables.

Every reader returns ``RawSequences``: float64 arrays of shape (T_i, C), one raw target per
sequence (a label, a value, or a per-step array) and the split each sequence belongs to when the
file says so. Checks and cleaning happen afterwards, the same for every format.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmark.config import ConfigError
from tasks.sequences.options import SequenceOptions

AEON_PREFIX = "aeon:"
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
SUFFIX_FORMATS = {".ts": "ts", ".npz": "npz"}
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
STEP_TARGETS = ("step_classification", "step_regression")


@dataclass
class RawSequences:
    file: str
    sequences: list[np.ndarray]  # (T_i, C) float64; NaN = missing
    targets: list | None  # per sequence: a label or value (or vector), or a per-step array; None if absent
    names: list[str]  # how errors name each sequence
    splits: np.ndarray | None = None  # "train" / "val" / "test" per sequence, when the file says


@dataclass(frozen=True)
class DataFiles:
    name: str  # the data set's name, shown in run labels
    files: dict[str, Path]  # split ("train", and "val" / "test" when given) -> file
    bundled: bool = False  # inside aeon's package

    def shown(self, path: Path) -> str:
        """How messages name a file: bundled ones by aeon name, not by site-packages path."""
        return f"{AEON_PREFIX}{self.name}/{path.name}" if self.bundled and path.parent.name == self.name else str(path)


def aeon_data_root() -> Path:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("task.path 'aeon:...' needs the aeon package (pip install aeon)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def bundled_sets() -> list[str]:
    """UCR/UEA sets shipped inside aeon's wheel with a _TRAIN and a _TEST .ts file."""
    root = aeon_data_root()
    return sorted(d.name for d in root.iterdir() if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file())


def _existing(path: str, key: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{key} '{path}' does not exist" + (" (it is a folder: name a file)" if p.is_dir() else ""))
    return p


def resolve_files(o: SequenceOptions) -> DataFiles:
    """The train file (and test / validation files) named by the options, found on disk."""
    if o.path.startswith(AEON_PREFIX):
        name = o.path[len(AEON_PREFIX) :]
        available = bundled_sets()
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1)
            hint = f" Did you mean '{AEON_PREFIX}{close[0]}'?" if close else ""
            raise ConfigError(f"task.path '{o.path}' is not a data set bundled with aeon.{hint} Valid choices: {', '.join(available)}")
        folder = aeon_data_root() / name
        files = {"train": folder / f"{name}_TRAIN.ts", "test": folder / f"{name}_TEST.ts"}
        bundled = True
    else:
        bundled = False
        train = _existing(o.path, "task.path")
        name = train.stem.replace("_TRAIN", "")
        files = {"train": train}
        sibling = train.with_name(train.name.replace("_TRAIN", "_TEST")) if "_TRAIN" in train.name else None
        if sibling is not None and sibling.is_file():
            files["test"] = sibling
    if o.test_path is not None:
        files["test"] = _existing(o.test_path, "task.test_path")
    if o.val_path is not None:
        files["val"] = _existing(o.val_path, "task.val_path")
    return DataFiles(name, files, bundled)


def format_of(path: Path, o: SequenceOptions) -> str:
    """The reader for ``path``: the option, else by suffix (tables: long when they have step_column)."""
    if o.format != "auto":
        return o.format
    suffix = path.suffix.lower()
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if suffix in TABLE_SUFFIXES:
        return "long" if o.step_column in _table_columns(path, o) else "wide"
    known = ", ".join([*SUFFIX_FORMATS, *TABLE_SUFFIXES])
    raise ConfigError(f"'{path}': unknown format '{suffix or path.name}'. Valid suffixes: {known} (or set task.format=ts|npz|long|wide)")


def read(path: Path, o: SequenceOptions, shown: str | None = None) -> RawSequences:
    """The sequences of one file; ``shown`` names it in messages (default: the path)."""
    raw = READERS[format_of(path, o)](path, o)
    raw.file = shown or raw.file
    return raw


# ----------------------------------------------------------------------------- .ts (aeon)


def read_ts(path: Path, o: SequenceOptions) -> RawSequences:
    """A UCR/UEA ``.ts`` file through aeon's loader; aeon gives (C, T) per case."""
    if o.target in STEP_TARGETS:
        raise ConfigError(f"'{path}': .ts files hold one target per sequence; task.target={o.target} needs npz or a long table")
    from aeon.datasets import load_from_ts_file

    try:
        X, y = load_from_ts_file(str(path))
    except (OSError, ValueError, IndexError, TypeError) as e:
        raise ConfigError(f"'{path}' is not a readable .ts file: {' '.join(str(e).split())}") from None
    sequences = [np.asarray(x, dtype=np.float64).T for x in X]
    targets = None if y is None or len(y) == 0 else list(y)
    return RawSequences(str(path), sequences, targets, [f"case {i + 1}" for i in range(len(sequences))])


# ----------------------------------------------------------------------------- .npz


def read_npz(path: Path, o: SequenceOptions) -> RawSequences:
    """``inputs_array``: an object array of (T_i, C) or (T_i,) arrays, or a padded (N, T[, C]) array
    with an optional ``lengths_array``; ``label_column`` and ``split_column`` name optional arrays."""
    if isinstance(o.label_column, list):
        raise ConfigError("task.label_column: a list of columns is for tables; in an npz file, store (N, K) targets in one array")
    try:
        # object arrays need pickle: this reads the user's own file, never a download
        archive = np.load(path, allow_pickle=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"'{path}' is not a readable .npz file: {e}") from None
    with archive:
        arrays = {k: archive[k] for k in archive.files}
    if o.inputs_array not in arrays:
        raise ConfigError(f"'{path}' has no array '{o.inputs_array}' (task.inputs_array). Arrays: {', '.join(arrays) or 'none'}")
    x = arrays[o.inputs_array]
    if x.dtype == object:
        sequences = [_as_steps(np.asarray(s, dtype=np.float64)) for s in x]
        lengths = [len(s) for s in sequences]
    elif x.ndim in (2, 3):
        n, t = x.shape[:2]
        lengths = arrays[o.lengths_array].astype(int).tolist() if o.lengths_array in arrays else [t] * n
        if len(lengths) != n or min(lengths, default=1) < 1 or max(lengths, default=0) > t:
            raise ConfigError(f"'{path}': array '{o.lengths_array}' must hold {n} lengths between 1 and {t}")
        sequences = [_as_steps(np.asarray(x[i, : lengths[i]], dtype=np.float64)) for i in range(n)]
    else:
        raise ConfigError(f"'{path}': array '{o.inputs_array}' must be an object array of sequences or a padded (N, T) or (N, T, C) array, not shape {x.shape}")
    targets = None
    if o.label_column in arrays:
        y = arrays[o.label_column]
        if len(y) != len(sequences):
            raise ConfigError(f"'{path}': array '{o.label_column}' has {len(y)} entries for {len(sequences)} sequences")
        if o.target in STEP_TARGETS and y.dtype != object:
            if y.ndim < 2:
                raise ConfigError(f"'{path}': array '{o.label_column}' holds one value per sequence; task.target={o.target} needs one per step")
            targets = [y[i, : lengths[i]] for i in range(len(sequences))]  # padded per-step targets
        else:
            targets = list(y)
    splits = np.asarray(arrays[o.split_column]).astype(str) if o.split_column in arrays else None
    return RawSequences(str(path), sequences, targets, [f"sequence {i}" for i in range(len(sequences))], splits)


def _as_steps(a: np.ndarray) -> np.ndarray:
    return a[:, None] if a.ndim == 1 else a


# ----------------------------------------------------------------------------- tables


def _read_table(path: Path, o: SequenceOptions, nrows: int | None = None):
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if TABLE_SUFFIXES.get(suffix) is None:
            return pd.read_parquet(path)
        frame = pd.read_csv(path, sep=TABLE_SUFFIXES[suffix], header=0 if o.header else None, nrows=nrows)
    except (OSError, ValueError) as e:
        raise ConfigError(f"'{path}' is not a readable table: {' '.join(str(e).split())}") from None
    if not o.header:  # the UCR .tsv layout: the label, then one column per step
        label = o.label_column if isinstance(o.label_column, str) else o.label_column[0]
        frame.columns = [label, *(f"t{i}" for i in range(frame.shape[1] - 1))]
    return frame


def _table_columns(path: Path, o: SequenceOptions) -> list[str]:
    if TABLE_SUFFIXES.get(path.suffix.lower()) is None:
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError) as e:
            raise ConfigError(f"'{path}' is not a readable parquet file: {' '.join(str(e).split())}") from None
    return [str(c) for c in _read_table(path, o, nrows=5).columns]


def _require(frame, path: Path, column: str, key: str) -> None:
    if column not in frame.columns:
        columns = [str(c) for c in frame.columns]
        close = difflib.get_close_matches(column, columns, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"'{path}' has no column '{column}' ({key}).{hint} Columns: {', '.join(columns)}")


def _label_columns(o: SequenceOptions) -> list[str]:
    return [o.label_column] if isinstance(o.label_column, str) else list(o.label_column)


def _features(frame, path: Path, o: SequenceOptions, reserved: list[str]) -> list[str]:
    import pandas as pd

    if o.feature_columns is not None:
        for c in o.feature_columns:
            _require(frame, path, c, "task.feature_columns")
        features = list(o.feature_columns)
    else:
        features = [c for c in frame.columns if c not in reserved]
    if not features:
        raise ConfigError(f"'{path}' has no input columns besides {', '.join(map(str, reserved))}")
    for c in features:
        if not pd.api.types.is_numeric_dtype(frame[c]):
            raise ConfigError(f"'{path}': input column '{c}' is not numeric (name the inputs with task.feature_columns)")
    return features


def _labels_present(frame, path: Path, o: SequenceOptions) -> list[str]:
    """The label columns; absent is fine only when the target needs none (forecast)."""
    columns = _label_columns(o)
    if o.target == "forecast" and not all(c in frame.columns for c in columns):
        return []
    for c in columns:
        _require(frame, path, c, "task.label_column")
    return columns


def read_long(path: Path, o: SequenceOptions) -> RawSequences:
    """One row per (sequence, step): ``id_column``, ``step_column``, inputs, label(s), optional split.

    Sequences keep the order in which their ids first appear; rows are ordered by ``step_column``.
    """
    import pandas as pd

    frame = _read_table(path, o)
    for column, key in ((o.id_column, "task.id_column"), (o.step_column, "task.step_column")):
        _require(frame, path, column, key)
    labels = _labels_present(frame, path, o)
    has_split = o.split_column in frame.columns
    reserved = [o.id_column, o.step_column, *labels, *([o.split_column] if has_split else [])]
    features = _features(frame, path, o, reserved)
    if frame.empty:
        return RawSequences(str(path), [], [] if labels else None, [], np.array([]) if has_split else None)
    order = "__rnnbench_order"
    frame = frame.assign(**{order: pd.factorize(frame[o.id_column])[0]}).sort_values([order, o.step_column], kind="stable")
    repeated = frame.duplicated([order, o.step_column])
    if repeated.any():
        raise ConfigError(f"'{path}': id '{frame[o.id_column][repeated].iloc[0]}' has the same {o.step_column} twice")
    per_sequence = [*([] if o.target in STEP_TARGETS else labels), *([o.split_column] if has_split else [])]
    if per_sequence:
        varying = frame.groupby(order)[per_sequence].nunique(dropna=False) > 1
        if varying.to_numpy().any():
            seq, column = np.argwhere(varying.to_numpy())[0]
            seq_id = frame[o.id_column][frame[order] == seq].iloc[0]
            raise ConfigError(f"'{path}': id '{seq_id}' has several values of '{per_sequence[column]}' across its steps; it must be constant per sequence")
    cuts = np.flatnonzero(np.diff(frame[order].to_numpy())) + 1
    firsts = np.r_[0, cuts]
    names = [f"id '{v}'" for v in frame[o.id_column].to_numpy()[firsts]]
    sequences = np.split(frame[features].to_numpy(dtype=np.float64), cuts)
    targets = None
    if labels:
        values = frame[labels].to_numpy()
        values = values[:, 0] if len(labels) == 1 else values
        targets = np.split(values, cuts) if o.target in STEP_TARGETS else list(values[firsts])
    splits = frame[o.split_column].astype(str).to_numpy()[firsts] if has_split else None
    return RawSequences(str(path), sequences, targets, names, splits)


def read_wide(path: Path, o: SequenceOptions) -> RawSequences:
    """One row per univariate sequence, one column per step; trailing empty cells end a shorter sequence."""
    if o.target in STEP_TARGETS:
        raise ConfigError(f"'{path}': a wide table holds one target per sequence; task.target={o.target} needs npz or a long table")
    frame = _read_table(path, o)
    labels = _labels_present(frame, path, o)
    has_split = o.split_column in frame.columns
    reserved = [*labels, *([o.split_column] if has_split else []), *([o.id_column] if o.id_column in frame.columns else [])]
    steps = frame[_features(frame, path, o, reserved)].to_numpy(dtype=np.float64)
    sequences, names = [], []
    for i, row in enumerate(steps):
        observed = np.flatnonzero(~np.isnan(row))
        sequences.append(row[: observed[-1] + 1 if len(observed) else 0, None])
        names.append(f"row {i + 1}" if o.id_column not in frame.columns else f"id '{frame[o.id_column].iloc[i]}'")
    targets = None
    if labels:
        values = frame[labels].to_numpy()
        targets = list(values[:, 0]) if len(labels) == 1 else list(values)
    splits = frame[o.split_column].astype(str).to_numpy() if has_split else None
    return RawSequences(str(path), sequences, targets, names, splits)


READERS: dict[str, Callable[[Path, SequenceOptions], RawSequences]] = {
    "ts": read_ts,
    "npz": read_npz,
    "long": read_long,
    "wide": read_wide,
}
