"""Losses and per-example metrics that task specs compose.

A metric returns one value per example so that averages over batches of any size are exact.
Per-step targets equal to ``IGNORE_INDEX`` are not scored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.task import Batch

IGNORE_INDEX = -100


def mse_loss(output: Tensor, batch: Batch) -> Tensor:
    return F.mse_loss(output.float(), batch.targets.float())


def cross_entropy_loss(output: Tensor, batch: Batch) -> Tensor:
    """Sequence labels (B,) against logits (B, C), or step labels (B, T) against (B, T, C)."""
    return F.cross_entropy(output.float().flatten(0, -2), batch.targets.flatten(), ignore_index=IGNORE_INDEX)


def squared_error(output: Tensor, batch: Batch) -> Tensor:
    return (output.float() - batch.targets.float()).pow(2).flatten(1).mean(1)


def accuracy(output: Tensor, batch: Batch) -> Tensor:
    return (output.argmax(-1) == batch.targets).float()


def step_cross_entropy(output: Tensor, batch: Batch) -> Tensor:
    """Mean cross-entropy over each sequence's scored steps."""
    ce = F.cross_entropy(output.float().transpose(1, 2), batch.targets, ignore_index=IGNORE_INDEX, reduction="none")
    scored = (batch.targets != IGNORE_INDEX).float()
    return (ce * scored).sum(1) / scored.sum(1).clamp(min=1)


def last_steps_accuracy(steps: int):
    """Accuracy over each sequence's last ``steps`` positions (e.g. the recalled symbols)."""

    def fn(output: Tensor, batch: Batch) -> Tensor:
        return (output[:, -steps:].argmax(-1) == batch.targets[:, -steps:]).float().mean(1)

    return fn


def nonfinite(value: Tensor) -> bool:
    return not bool(torch.isfinite(value).all())
