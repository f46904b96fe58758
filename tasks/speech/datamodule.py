"""Waveform batches on the host, features on the training device.

The loaders hand out ``(int16 waveforms, sample lengths, labels)``; Lightning moves them to the
device and ``on_after_batch_transfer`` turns them into normalised (and, in training only,
SpecAugment-masked) features there, batched: ``Batch(inputs (B, frames, features), targets,
lengths (B,) frames or None)``.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmark.devices import synchronize
from benchmark.task import Batch
from tasks.speech.features import FeatureExtractor, masked_moments, spec_augment, valid_frames


class SpeechDataModule(L.LightningDataModule):
    def __init__(
        self,
        splits: dict[str, TensorDataset],
        extractor: FeatureExtractor,
        batch_size: int,
        seed: int,
        normalize: str = "utterance",
        use_lengths: bool = True,
        augment: dict | None = None,
        data_metrics: dict[str, float] | None = None,
    ):
        super().__init__()
        self.splits, self.extractor, self.batch_size, self.seed = splits, extractor, batch_size, seed
        self.normalize, self.use_lengths, self.augment = normalize, use_lengths, augment
        self.data_metrics = dict(data_metrics or {})
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generator: torch.Generator | None = None
        self.featurized, self.feature_seconds = 0, 0.0

    def _loader(self, stage: str, shuffle: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(self.splits[stage], batch_size=self.batch_size, shuffle=shuffle, generator=generator)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def features(self, waves: torch.Tensor, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int16 waveforms (B, S) on any device -> features (B, frames, F) and frame lengths (B,)."""
        if self.extractor.mel_fb.device != waves.device:
            self.extractor.to(waves.device)
        feats = self.extractor(waves.float() / 32768.0)
        lengths = self.extractor.frames(samples).clamp(max=feats.shape[1])
        return feats, lengths

    def _dataset_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and std over every valid training frame, computed once on ``device``."""
        waves, samples, _ = self.splits["train"].tensors
        total, total_sq, count = 0.0, 0.0, 0
        with torch.no_grad():
            for s in range(0, len(waves), 256):
                feats, lengths = self.features(waves[s : s + 256].to(device), samples[s : s + 256].to(device))
                m = valid_frames(lengths, feats.shape[1])[..., None].to(feats.dtype)
                f = feats.double() * m
                total, total_sq, count = total + f.sum((0, 1)), total_sq + (f * feats.double()).sum((0, 1)), count + m.sum()
        mean = total / count
        std = (total_sq / count - mean.square()).clamp(min=1e-10).sqrt()
        return mean.float(), std.float()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        waves, samples, targets = batch
        if self.normalize == "dataset" and (self._stats is None or self._stats[0].device != waves.device):
            self._stats = self._dataset_stats(waves.device)  # once, outside the timed per-batch work
        synchronize(waves.device)  # time this batch's feature work, not what was queued before it
        started = time.perf_counter()
        with torch.no_grad():
            feats, lengths = self.features(waves, samples)
            mask = valid_frames(lengths, feats.shape[1])
            if self.normalize == "utterance":
                mean, std = masked_moments(feats, mask, dims=(1,))
                feats = (feats - mean) / std
            elif self.normalize == "dataset":
                feats = (feats - self._stats[0]) / self._stats[1]
            feats = feats.masked_fill(~mask[..., None], 0.0)  # padding frames carry nothing
            training = self.trainer is not None and self.trainer.training
            if training and self.augment:
                if self._generator is None or self._generator.device != feats.device:
                    self._generator = torch.Generator(device=feats.device).manual_seed(self.seed)
                feats = spec_augment(feats, lengths, self._generator, **self.augment)
        synchronize(waves.device)
        self.feature_seconds += time.perf_counter() - started
        self.featurized += len(waves)
        return Batch(feats, targets, lengths if self.use_lengths else None)

    def pipeline_metrics(self) -> dict[str, float]:
        """Decode and feature-extraction throughput (utterances/s) and the data set's counts."""
        out = dict(self.data_metrics)
        if self.feature_seconds > 0:
            out["data/feature_utt_per_s"] = self.featurized / self.feature_seconds
        return out
