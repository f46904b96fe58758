"""Data modules shared by tasks.

``SyntheticDataModule`` draws every training batch on the training device itself from a
seeded generator: the loader only hands out step numbers, so no DataLoader worker, host
tensor or host-to-device copy sits on the training path. Validation and test sets are
drawn once from a fixed ``data_seed``, so every model and seed is scored on the same data.
"""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.task import Batch

# sample(n, generator, device) -> Batch of n sequences drawn with that generator on that device
Sampler = Callable[[int, torch.Generator, torch.device], Batch]


class BatchChunks(Dataset):
    """A precomputed ``Batch`` served as consecutive chunks of ``batch_size`` examples."""

    def __init__(self, batch: Batch, batch_size: int):
        self.batch, self.batch_size = batch, batch_size

    def __len__(self) -> int:
        return -(-len(self.batch) // self.batch_size)

    def __getitem__(self, i: int) -> Batch:
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        b = self.batch
        return Batch(b.inputs[s], b.targets[s], None if b.lengths is None else b.lengths[s])


def _identity(item):
    return item


class SyntheticDataModule(L.LightningDataModule):
    def __init__(
        self,
        sample: Sampler,
        batch_size: int,
        train_size: int,
        val_size: int,
        test_size: int,
        seed: int,
        data_seed: int,
    ):
        super().__init__()
        self.sample, self.batch_size, self.seed, self.data_seed = sample, batch_size, seed, data_seed
        self.steps_per_epoch = max(1, train_size // batch_size)
        self.sizes = {"val": val_size, "test": test_size}
        self._fixed: dict[str, Batch] = {}
        self._generator: torch.Generator | None = None

    def _fixed_set(self, stage: str) -> Batch:
        if stage not in self._fixed:  # same data for every model and seed: drawn from data_seed on CPU
            offset = {"val": 1, "test": 2}[stage]
            g = torch.Generator().manual_seed(self.data_seed * 10 + offset)
            self._fixed[stage] = self.sample(self.sizes[stage], g, torch.device("cpu"))
        return self._fixed[stage]

    def train_dataloader(self):
        return DataLoader(range(self.steps_per_epoch), batch_size=None)

    def val_dataloader(self):
        return DataLoader(BatchChunks(self._fixed_set("val"), self.batch_size), batch_size=None, collate_fn=_identity)

    def test_dataloader(self):
        return DataLoader(BatchChunks(self._fixed_set("test"), self.batch_size), batch_size=None, collate_fn=_identity)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, Batch):
            return batch
        device = self.trainer.lightning_module.device if self.trainer else torch.device("cpu")
        if self._generator is None or self._generator.device != device:
            rank = self.trainer.global_rank if self.trainer else 0
            self._generator = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + rank)
        return self.sample(self.batch_size, self._generator, device)
