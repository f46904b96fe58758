"""Batches of padded sequences with their lengths; each batch is cut to its own longest sequence.

Training batches come in a seeded random order (``seed``); validation and test in file order.
``lengths`` is None for a batch whose sequences all fill it (no packing needed); otherwise the
models pack, so padding never enters a recurrent state.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.task import Batch
from tasks.sequences.data import PaddedSplit


class PaddedSequences(Dataset):
    """Builds a whole batch per call (``__getitems__``) and counts what that costs."""

    def __init__(self, split: PaddedSplit, per_step: bool):
        self.split, self.per_step = split, per_step
        self.sequences, self.seconds, self.padded_steps, self.valid_steps = 0, 0.0, 0, 0

    def __len__(self) -> int:
        return len(self.split.lengths)

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> Batch:
        started = time.perf_counter()
        idx = torch.as_tensor(indices)
        lengths = self.split.lengths[idx]
        steps = int(lengths.max())
        targets = self.split.targets[idx]
        if self.per_step:
            targets = targets[:, :steps]
        batch = Batch(self.split.inputs[idx, :steps], targets, None if bool((lengths == steps).all()) else lengths)
        self.seconds += time.perf_counter() - started
        self.sequences += len(indices)
        self.padded_steps += len(indices) * steps
        self.valid_steps += int(lengths.sum())
        return batch


def _identity(batch):
    return batch


class SequenceDataModule(L.LightningDataModule):
    def __init__(self, splits: dict[str, PaddedSplit], per_step: bool, batch_size: int, seed: int, data_metrics: dict[str, float]):
        super().__init__()
        self.datasets = {k: PaddedSequences(s, per_step) for k, s in splits.items()}
        self.batch_size, self.seed, self.data_metrics = batch_size, seed, dict(data_metrics)

    def _loader(self, stage: str, shuffle: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.datasets[stage], batch_size=self.batch_size, shuffle=shuffle, generator=generator, collate_fn=_identity)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def pipeline_metrics(self) -> dict[str, float]:
        """The data set's facts (sequences per split, channels, lengths, classes) and the batching cost."""
        out = dict(self.data_metrics)
        train = self.datasets["train"]
        if train.seconds > 0:
            out["data/batching_seq_per_s"] = train.sequences / train.seconds
            out["data/padding_fraction"] = 1 - train.valid_steps / train.padded_steps
        return out
