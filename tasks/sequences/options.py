"""Typed options of the ``sequences`` task (unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from benchmark.task import TaskOptions

FORMATS = ("ts", "npz", "long", "wide")
TARGETS = ("classification", "regression", "step_classification", "step_regression", "forecast")


class SequenceOptions(TaskOptions):
    # where the sequences are
    path: str = Field(
        "aeon:JapaneseVowels",
        description="a .ts, .npz, .csv, .tsv or .parquet file (a *_TRAIN file finds its *_TEST sibling), "
        "or aeon:<Name> for a UCR/UEA set bundled with aeon (offline)",
    )
    test_path: str | None = Field(None, description="the test file; default: the _TEST sibling of a _TRAIN path, if any")
    val_path: str | None = Field(None, description="the validation file; default: a split column, else carved from train")
    format: Literal["auto", "ts", "npz", "long", "wide"] = Field(
        "auto", description="auto: by suffix; a table is 'long' when it has step_column, else 'wide'"
    )
    # what is predicted
    target: Literal["classification", "regression", "step_classification", "step_regression", "forecast"] = Field(
        "classification",
        description="one label / real value per sequence, one label / real value per step, or the next step's inputs",
    )
    labels: list[str] | None = Field(None, min_length=2, description="class names in id order; default: the train labels, sorted")
    # names inside the files
    inputs_array: str = Field("x", description="npz: the sequences, an object array of (T, C) arrays or a padded (N, T, C) array")
    lengths_array: str = Field("lengths", description="npz: valid steps of a padded inputs array (optional)")
    label_column: str | list[str] = Field("label", description="the target: a column (tables) or array (npz); a list: several real targets")
    id_column: str = Field("id", description="long tables: the sequence id")
    step_column: str = Field("step", description="long tables: orders the rows of a sequence")
    feature_columns: list[str] | None = Field(None, description="tables: the input columns; default: every other column")
    split_column: str = Field("split", description="a column / npz array of train, val or test per sequence, used when present")
    header: bool = Field(True, description="CSV/TSV: false reads headerless rows, label first (the UCR .tsv layout)")
    # cleaning
    missing: Literal["error", "ffill", "zero", "mean"] = Field(
        "error", description="NaN inputs: stop, carry the last value forward (back-fill a leading gap), 0, or the train channel mean"
    )
    normalize: Literal["channel", "sequence", "none"] = Field(
        "channel", description="channel: mean/std per channel over the training steps; sequence: each sequence by its own"
    )
    # splits (carved from train with split_seed when the data do not give them)
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of train carved off when no validation split is given")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of train carved off when no test split is given")
    split_seed: int = Field(1234, description="seed of the carved splits (stratified by class for classification)")
