"""Sequences: your own numeric sequences (T, C), from UCR/UEA .ts files, .npz arrays or tables.

    rnnbench run configs/tasks/japanese_vowels.yaml model=gru          # bundled with aeon: offline
    rnnbench run task=sequences task.path=recordings.npz task.target=regression model=lstm

See ``tasks/sequences/README.md`` for the formats, targets, splits and rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.task import InputKind, Task, TaskSpec, register_task
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
    def label(self) -> str:
        o = self.options
        name = o.path[len(AEON_PREFIX) :] if o.path.startswith(AEON_PREFIX) else Path(o.path).stem.replace("_TRAIN", "")
        defaults = SequenceOptions.model_fields
        shown = [name] + [f"{k}={getattr(o, k)}" for k in LABELLED if getattr(o, k) != defaults[k].default]
        return f"{self.name}[{','.join(shown)}]"

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
        )

    def datamodule(self, batch_size: int, seed: int):
        from tasks.sequences.datamodule import SequenceDataModule

        data = self.data
        return SequenceDataModule(data.splits, data.target.output_kind.per_step, batch_size, seed, data.metrics)
