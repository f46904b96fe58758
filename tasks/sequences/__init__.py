"""Sequences: your own numeric sequences (T, C), from UCR/UEA .ts files, .npz arrays or tables.

    rnnbench run configs/tasks/japanese_vowels.yaml model=gru          # bundled with aeon: offline
    rnnbench run task=sequences task.path=recordings.npz task.target=regression model=lstm

See ``tasks/sequences/README.md`` for the formats, targets, splits and rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.task import DataSplit, DatasetInfo, InputKind, Task, TaskSpec, fingerprint, register_task
from tasks.sequences.options import SequenceOptions
from tasks.sequences.sources import AEON_PREFIX

# options that name a setting in run labels (beside the data set's name) when off their defaults
LABELLED = ("target", "normalize", "missing")


@register_task
class Sequences(Task):
    name = "sequences"
    version = "1"
    description = "your numeric sequences (.ts, .npz, long/wide tables): class, value, per-step or next-step targets"
    Options = SequenceOptions
    data_options = (
        "path", "test_path", "val_path", "format", "target", "labels", "inputs_array", "lengths_array", "label_column",
        "id_column", "step_column", "feature_columns", "split_column", "header",
    )  # fmt: skip

    _data = None

    @classmethod
    def smoke_options(cls, workdir: Path) -> dict:
        """Writes a tiny variable-length npz: 24 two-channel sequences, sines against square waves."""
        rng = np.random.default_rng(0)
        sequences, labels = [], []
        for i in range(24):
            t = np.arange(rng.integers(5, 13))
            wave = np.sin(t * 0.8 + rng.uniform(0, 3))
            x = np.stack([wave if i % 2 else np.sign(wave), rng.normal(0, 0.1, len(t))], axis=1)
            sequences.append(x)
            labels.append("square" if i % 2 == 0 else "sine")
        path = workdir / "sequences-smoke.npz"
        workdir.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=np.array(sequences, dtype=object), label=np.array(labels))
        return {"path": str(path)}

    @property
    def data_name(self) -> str:
        o = self.options
        return o.path[len(AEON_PREFIX) :] if o.path.startswith(AEON_PREFIX) else Path(o.path).stem.replace("_TRAIN", "")

    @property
    def label(self) -> str:
        o = self.options
        defaults = SequenceOptions.model_fields
        shown = [self.data_name] + [f"{k}={getattr(o, k)}" for k in LABELLED if getattr(o, k) != defaults[k].default]
        return f"{self.name}[{','.join(shown)}]"

    def dataset_info(self) -> DatasetInfo:
        """Digests of the padded, normalised inputs, lengths and encoded targets per split."""
        o, data = self.options, self.data
        bundled = o.path.startswith(AEON_PREFIX)
        paths = {k: getattr(o, k) for k in ("path", "test_path", "val_path") if getattr(o, k)}
        source = {k: v if bundled and k == "path" else str(Path(v).resolve()) for k, v in paths.items()}
        source |= {f"{s}_from": data.facts[f"{s}_from"] for s in data.splits} | {"target": o.target, "normalize": o.normalize}
        splits = {s: DataSplit(fingerprint(p.inputs, p.lengths, p.targets), len(p.lengths)) for s, p in data.splits.items()}
        return DatasetInfo(self.data_name, "local", source, splits)

    @property
    def data(self):
        """Read, split, checked and encoded once per instance: every input error surfaces in ``spec()``."""
        if self._data is None:
            from tasks.sequences.data import prepare

            self._data = prepare(self.options)
        return self._data

    def spec(self) -> TaskSpec:
        data = self.data
        loss, metrics, main = data.target.scoring()
        return TaskSpec(
            name=self.name,
            version=self.version,
            input_kind=InputKind.CONTINUOUS,
            input_size=data.channels,
            output_kind=data.target.output_kind,
            num_outputs=data.encoded.num_outputs,
            loss=loss,
            metrics=metrics,
            main_metric=main,
            baseline=data.encoded.baseline,
            causal=data.target.causal,
            extra=data.facts,
            perturbations=("gaussian",),
        )

    def datamodule(self, batch_size: int, seed: int):
        from tasks.sequences.datamodule import SequenceDataModule

        data = self.data
        return SequenceDataModule(data.splits, data.target.output_kind.per_step, batch_size, seed, data.metrics)
