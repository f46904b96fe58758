"""Length-bucketed batches of pre-tokenized sequences.

Training: each epoch a seeded permutation is cut into chunks of ``bucket_batches`` batches,
each chunk is sorted by length and cut into batches, and the batch order is shuffled, so a
batch holds sequences of similar length (little padding) while epochs still differ.
Evaluation: sorted by length once. Batches are padded with [PAD]=0 and carry their lengths;
the model packs them, so padding never enters a recurrent state.
"""

from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from benchmark.task import Batch
from tasks.text.processed import PAD_ID, EncodedSplit


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, bucket_batches: int = 50):
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.chunk = seed, batch_size * bucket_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self) -> list[np.ndarray]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + bs] for i in range(0, n, bs)]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        out = []
        for start in range(0, n, self.chunk):
            chunk = perm[start : start + self.chunk]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            out += [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self):
        for b in self.batches():
            yield b.tolist()


class EncodedDataset(Dataset):
    """Builds a whole padded batch per call (``__getitems__``) and counts what that costs."""

    def __init__(self, split: EncodedSplit):
        self.ids = torch.from_numpy(split.ids)  # int32 at rest; batches are widened to long
        self.offsets = torch.from_numpy(split.offsets)
        self.labels = torch.from_numpy(split.labels)
        self.sequences, self.seconds, self.padded_steps, self.valid_steps = 0, 0.0, 0, 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])

    def __getitems__(self, indices: list[int]) -> Batch:
        started = time.perf_counter()
        idx = torch.as_tensor(indices)
        starts, lengths = self.offsets[idx], self.offsets[idx + 1] - self.offsets[idx]
        steps = torch.arange(int(lengths.max()))
        valid = steps[None, :] < lengths[:, None]
        positions = (starts[:, None] + steps[None, :]).clamp(max=len(self.ids) - 1)
        inputs = torch.where(valid, self.ids[positions].long(), PAD_ID)
        batch = Batch(inputs, self.labels[idx], lengths)
        self.seconds += time.perf_counter() - started
        self.sequences += len(indices)
        self.padded_steps += inputs.numel()
        self.valid_steps += int(lengths.sum())
        return batch


def _identity(batch):
    return batch


class TextDataModule(L.LightningDataModule):
    def __init__(self, splits: dict[str, EncodedSplit], batch_size: int, seed: int, bucket_batches: int, stats: dict):
        super().__init__()
        self.datasets = {k: EncodedDataset(s) for k, s in splits.items()}
        self.lengths = {k: s.lengths for k, s in splits.items()}
        self.batch_size, self.seed, self.bucket_batches, self.stats = batch_size, seed, bucket_batches, stats

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = BucketBatchSampler(self.lengths[split], self.batch_size, shuffle, self.seed, self.bucket_batches)
        return DataLoader(self.datasets[split], batch_sampler=sampler, collate_fn=_identity)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def pipeline_metrics(self) -> dict[str, float]:
        """Data-pipeline cost, logged beside the model's ``throughput_seq_per_s``."""
        train = self.datasets["train"]
        out = dict(self.stats)
        out |= {f"data/{k}_size": float(len(d)) for k, d in self.datasets.items()}
        out["data/mean_length"] = float(self.lengths["train"].mean())
        if train.seconds > 0:
            out["data/batching_seq_per_s"] = train.sequences / train.seconds
            out["data/padding_fraction"] = 1 - train.valid_steps / train.padded_steps
        return out
