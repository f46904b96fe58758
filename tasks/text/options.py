"""Typed options of the text-classification task (unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from benchmark.task import TaskOptions


class TextOptions(TaskOptions):
    # where the data comes from: a hub data set, or local files (exactly one)
    dataset: str | None = Field(None, description="Hugging Face hub data set, e.g. stanfordnlp/imdb")
    dataset_config: str | None = Field(None, description="the hub data set's config name, if it has several")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="local CSV/TSV/JSON(L)/parquet files: one path (the train split), a list, or {split: path}"
    )
    # what the columns and splits are called
    column_names: list[str] | None = Field(
        None, min_length=1, description="CSV/TSV without a header row: the columns' names, in order (e.g. [label, title, description])"
    )
    text_column: str | list[str] = Field("text", description="the text column, or several joined with a space (e.g. [title, description])")
    label_column: str = "label"
    label_names: list[str] | None = Field(
        None, min_length=2, description="class names; string labels are mapped to their index in this list"
    )
    label_base: int = Field(0, description="the integer label of the first class: 1 for CSVs that count classes from 1 (AG News)")
    train_split: str = "train"
    val_split: str | None = Field(None, description="default: 'validation' if present (and not the test split), else carved from train")
    test_split: str = "test"
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train carved off when there is no val split")
    split_seed: int = Field(1234, description="seed of the carved validation split and of the caps")
    max_train_examples: int | None = Field(None, gt=0, description="seeded random cap on training examples")
    max_eval_examples: int | None = Field(None, gt=0, description="seeded random cap on validation and test examples")
    # tokenization (trained on the training split only)
    tokenizer: Literal["word", "bpe"] = "word"
    vocab_size: int = Field(10_000, ge=3, description="including [PAD]=0 and [UNK]=1")
    min_frequency: int = Field(2, ge=1, description="rarer words (or merges) are left out of the vocabulary")
    lowercase: bool = True
    max_length: int = Field(256, ge=1, description="tokens kept from the start of each text")
    # batching and caching
    bucket_batches: int = Field(20, ge=1, description="batches per chunk sorted by length (bigger: less padding, less shuffling)")
    cache_dir: str = Field(".cache/rnnbench", description="processed (tokenized) data is cached here")
