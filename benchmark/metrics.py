"""Losses and per-example metrics that task specs compose.

A metric returns one value per example so that averages over batches of any size are exact.
Per-step class targets equal to ``IGNORE_INDEX`` are not scored, nor are NaN per-step real targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.task import Batch, MetricFn

IGNORE_INDEX = -100


def mse_loss(output: Tensor, batch: Batch) -> Tensor:
    return F.mse_loss(output.float(), batch.targets.float())


def step_mse_loss(output: Tensor, batch: Batch) -> Tensor:
    """Mean squared error over the finite entries of per-step real targets (B, T, K); NaN marks padding."""
    scored = torch.isfinite(batch.targets)
    diff = (output.float() - batch.targets.float().nan_to_num()) * scored
    return diff.pow(2).sum() / scored.sum().clamp(min=1)


def cross_entropy_loss(output: Tensor, batch: Batch) -> Tensor:
    """Sequence labels (B,) against logits (B, C), or step labels (B, T) against (B, T, C)."""
    return F.cross_entropy(output.float().flatten(0, -2), batch.targets.flatten(), ignore_index=IGNORE_INDEX)


def squared_error(output: Tensor, batch: Batch) -> Tensor:
    return (output.float() - batch.targets.float()).pow(2).flatten(1).mean(1)


def absolute_error(output: Tensor, batch: Batch) -> Tensor:
    return (output.float() - batch.targets.float()).abs().flatten(1).mean(1)


def _per_sequence_mean(values: Tensor, scored: Tensor) -> Tensor:
    """Mean of ``values`` over each sequence's scored entries (all dims after the first)."""
    scored = scored.float()
    return (values * scored).flatten(1).sum(1) / scored.flatten(1).sum(1).clamp(min=1)


def step_squared_error(output: Tensor, batch: Batch) -> Tensor:
    """Per sequence: mean squared error over its finite per-step targets."""
    scored = torch.isfinite(batch.targets)
    return _per_sequence_mean((output.float() - batch.targets.float().nan_to_num()).pow(2), scored)


def step_absolute_error(output: Tensor, batch: Batch) -> Tensor:
    """Per sequence: mean absolute error over its finite per-step targets."""
    scored = torch.isfinite(batch.targets)
    return _per_sequence_mean((output.float() - batch.targets.float().nan_to_num()).abs(), scored)


def step_accuracy(output: Tensor, batch: Batch) -> Tensor:
    """Per sequence: accuracy over its scored steps (targets not ``IGNORE_INDEX``)."""
    return _per_sequence_mean((output.argmax(-1) == batch.targets).float(), batch.targets != IGNORE_INDEX)


def rescaled(fn: MetricFn, scale: Tensor) -> MetricFn:
    """``fn`` on outputs and targets both multiplied by ``scale`` (per output dimension).

    A task that trains on standardised targets reports its errors in the original units this way
    (a shift cancels in the error; the scale does not).
    """

    def scaled(output: Tensor, batch: Batch) -> Tensor:
        s = scale.to(output.device)
        return fn(output * s, Batch(batch.inputs, batch.targets * s, batch.lengths))

    return scaled


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
