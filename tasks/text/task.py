"""The ``text`` task: sequence classification of real text, from the hub or local files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark import metrics
from benchmark.task import (
    Baseline, DataSplit, DatasetInfo, InputKind, Metric, OutputKind, Task, TaskSpec, fingerprint, register_task,
)  # fmt: skip
from tasks.text.batching import TextDataModule
from tasks.text.options import TextOptions
from tasks.text.processed import PAD_ID, ProcessedText, prepare
from tasks.text.source import local_files, source_name

# options that name a setting in run labels (beside the data set's name) when off their defaults
LABELLED = ("tokenizer", "vocab_size", "max_length", "max_train_examples")


@register_task
class TextClassification(Task):
    """Classify whole texts (one label per text); accuracy against the majority class of train."""

    name = "text"
    version = "1"
    description = "text classification on a hub data set or local CSV/TSV/JSON/parquet files (accuracy)"
    Options = TextOptions
    data_options = (
        "dataset", "dataset_config", "revision", "data_files", "text_column", "label_column", "label_names",
        "train_split", "val_split", "test_split", "max_train_examples", "max_eval_examples", "cache_dir",
        "column_names", "label_base",
    )  # fmt: skip

    _data: ProcessedText | None = None

    @classmethod
    def smoke_options(cls, workdir) -> dict:
        """Writes two tiny CSV splits: sentences about the weather or about cooking."""
        import csv

        topics = {
            "weather": ["rain falls on the hills", "a cold wind from the north", "sunny and warm by noon", "fog at dawn"],
            "cooking": ["stir the sauce slowly", "bake the bread for an hour", "salt the water well", "chop two onions"],
        }
        folder = workdir / "text-smoke"
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for split, repeat in (("train", 4), ("test", 1)):
            files[split] = str(folder / f"{split}.csv")
            with open(files[split], "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                writer.writerows((t, label) for _ in range(repeat) for label, ts in topics.items() for t in ts)
        return {"data_files": files, "label_names": list(topics), "min_frequency": 1, "cache_dir": str(workdir / "cache")}

    @property
    def data_name(self) -> str | None:
        o = self.options
        return source_name(o) if (o.dataset or o.data_files) else None

    @property
    def label(self) -> str:
        o = self.options
        shown = [self.data_name] if self.data_name else []
        defaults = TextOptions.model_fields
        shown += [f"{k}={getattr(o, k)}" for k in LABELLED if getattr(o, k) != defaults[k].default]
        return f"{self.name}[{','.join(shown)}]" if shown else self.name

    @property
    def data(self) -> ProcessedText:
        """Loaded, checked and tokenized once per instance (from the disk cache when possible)."""
        if self._data is None:
            self._data = prepare(self.options)
        return self._data

    def spec(self) -> TaskSpec:
        data = self.data  # bad data fails here: the runner calls spec() before it creates the MLflow run
        train, test = data.splits["train"], data.splits["test"]
        majority = int(np.bincount(train.labels).argmax())
        return TaskSpec(
            name=self.name,
            version=self.version,
            input_kind=InputKind.TOKENS,
            input_size=data.vocab_size,
            output_kind=OutputKind.SEQUENCE_CLASSIFICATION,
            num_outputs=len(data.label_names),
            loss=metrics.cross_entropy_loss,
            metrics=(Metric("accuracy", metrics.accuracy, higher_is_better=True),),
            main_metric="accuracy",
            baseline=Baseline(
                f"majority class of train ({data.label_names[majority]})",
                {"accuracy": float((test.labels == majority).mean())},
            ),
            padding_idx=PAD_ID,
            extra={"classes": data.label_names, "vocab_size": data.vocab_size, "train_size": len(train)},
            perturbations=("substitute", "delete"),
        )

    def dataset_info(self) -> DatasetInfo:
        """Digests of the token ids and labels per split (the vocabulary is trained on train only)."""
        o, data = self.options, self.data
        if o.dataset:
            source_type, source = "hub", {"hub": o.dataset, "config": o.dataset_config, "revision": o.revision}
        else:
            resolved = {split: [str(Path(p).resolve()) for p in paths] for split, paths in local_files(o.data_files).items()}
            source_type, source = "local", {"files": resolved}
        source |= {"tokenizer": o.tokenizer, "vocab_size": data.vocab_size, "max_length": o.max_length}
        splits = {
            split: DataSplit(fingerprint(data.label_names, e.ids, e.offsets, e.labels), len(e)) for split, e in data.splits.items()
        }
        return DatasetInfo(self.data_name, source_type, source, splits)

    def datamodule(self, batch_size: int, seed: int) -> TextDataModule:
        data = self.data
        return TextDataModule(data.splits, batch_size, seed, self.options.bucket_batches, data.stats)
