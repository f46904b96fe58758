"""One LightningModule for any (task, model): loss and metrics come from the task's spec."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from benchmark import record
from benchmark.config import TrainConfig
from benchmark.metrics import nonfinite
from benchmark.task import Batch, TaskSpec

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


class RecurrentTaskModule(L.LightningModule):
    def __init__(self, network: nn.Module, spec: TaskSpec, train: TrainConfig):
        super().__init__()
        self.network, self.spec, self.train_cfg = network, spec, train
        # Averages accumulate on the device and sync once per epoch: no per-step host round trip.
        # nan_strategy="disable": the default checks every update on the host (a sync) and drops
        # NaNs, which would hide a diverged epoch from the check in on_train_epoch_end.
        names = [(stage, m.name) for stage in (record.TRAIN, record.VAL, record.TEST) for m in spec.metrics]
        names.append((record.TRAIN, "loss"))
        self.meters = nn.ModuleDict({f"{stage}_{name}": MeanMetric(nan_strategy="disable") for stage, name in names})
        self.logged_as = {f"{stage}_{name}": record.on_split(stage, name) for stage, name in names}

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.network(batch.inputs, batch.lengths)

    def _score(self, stage: str, output: torch.Tensor, batch: Batch) -> None:
        with torch.no_grad():
            for m in self.spec.metrics:
                self.meters[f"{stage}_{m.name}"].update(m.fn(output.detach(), batch))

    def _log_epoch(self, stage: str) -> None:
        # Logged once per epoch, not per step: each self.log call costs Lightning bookkeeping.
        for key, meter in self.meters.items():
            if key.startswith(f"{stage}_"):
                self.log(self.logged_as[key], meter.compute(), on_step=False, on_epoch=True)
                meter.reset()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        output = self(batch)
        loss = self.spec.loss(output, batch)
        if batch_idx % self.train_cfg.nan_check_every == 0 and nonfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, step {batch_idx}")
        self.meters["train_loss"].update(loss.detach())
        self._score("train", output, batch)
        return loss

    def on_train_epoch_end(self) -> None:
        # The sampled check above can miss a divergence; the epoch mean cannot.
        if nonfinite(self.meters["train_loss"].compute()):
            raise NonFiniteLossError(f"non-finite training loss in epoch {self.current_epoch}")
        self._log_epoch("train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._score("val", self(batch), batch)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._score("test", self(batch), batch)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        cfg = self.train_cfg
        optimizer = OPTIMIZERS[cfg.optimizer](self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.lr_schedule == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
