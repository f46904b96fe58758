"""Synthetic long-dependency tasks: the adding problem and copy memory.

Both draw their data on the training device (see ``benchmark.data.SyntheticDataModule``).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from benchmark import metrics
from benchmark.data import SyntheticDataModule
from benchmark.perturb import perturbation
from benchmark.task import (
    Baseline, Batch, DataSplit, DatasetInfo, InputKind, Metric, OutputKind, Task, TaskOptions, TaskSpec, fingerprint,
    register_task,
)  # fmt: skip


class SyntheticOptions(TaskOptions):
    train_size: int = Field(12800, gt=0, description="training sequences per epoch (fresh every epoch)")
    val_size: int = Field(1000, gt=0)
    test_size: int = Field(2000, gt=0)
    data_seed: int = Field(1234, description="seed of the fixed validation and test sets")


class SyntheticTask(Task):
    @classmethod
    def smoke_options(cls, workdir) -> dict:
        return {"train_size": 64, "val_size": 16, "test_size": 16}

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> Batch:
        raise NotImplementedError

    def datamodule(self, batch_size: int, seed: int) -> SyntheticDataModule:
        o = self.options
        return SyntheticDataModule(self.sample, batch_size, o.train_size, o.val_size, o.test_size, seed, o.data_seed)

    def dataset_info(self) -> DatasetInfo:
        """Generated data: the data set is the generator, its options and data_seed (the digest covers all three)."""
        o = self.options
        generator = {"generator": f"{type(self).__module__}.{type(self).__qualname__}", "version": self.version,
                     "options": o.model_dump()}  # fmt: skip
        how = {"train": "drawn afresh each epoch from the run's seed", "val": "drawn once from data_seed",
               "test": "drawn once from data_seed"}  # fmt: skip
        sizes = {"train": o.train_size, "val": o.val_size, "test": o.test_size}
        splits = {split: DataSplit(fingerprint(generator, split), n) for split, n in sizes.items()}
        return DatasetInfo(self.name, "generator", generator | {"splits": how}, splits)


class AddingOptions(SyntheticOptions):
    seq_len: int = Field(50, ge=2, description="T, the sequence length")


@register_task
class Adding(SyntheticTask):
    """Hochreiter & Schmidhuber (1997), as set by Arjovsky et al. (2016): each step carries a value
    in U(0, 1) and a marker; exactly two steps are marked, one in each half; the target is the sum
    of the two marked values. Predicting 1 always scores MSE = Var(sum) = 1/6."""

    name = "adding"
    version = "1"
    description = "adding problem: sum the two marked values of a length-T sequence (MSE)"
    Options = AddingOptions
    label_options = ("seq_len",)

    def spec(self) -> TaskSpec:
        return TaskSpec(
            name=self.name,
            version=self.version,
            input_kind=InputKind.CONTINUOUS,
            input_size=2,
            output_kind=OutputKind.SEQUENCE_REGRESSION,
            num_outputs=1,
            loss=metrics.mse_loss,
            metrics=(Metric("mse", metrics.squared_error, higher_is_better=False),),
            main_metric="mse",
            baseline=Baseline("always predict 1", {"mse": 1 / 6}),
            extra={"seq_len": self.options.seq_len},
            length_fact="seq_len",
            perturbations=("gaussian", "distractor"),
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> Batch:
        T = self.options.seq_len
        values = torch.rand(n, T, generator=generator, device=device)
        first = torch.randint(0, T // 2, (n,), generator=generator, device=device)
        second = torch.randint(T // 2, T, (n,), generator=generator, device=device)
        markers = torch.zeros(n, T, device=device)
        rows = torch.arange(n, device=device)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        return Batch(torch.stack([values, markers], dim=-1), (values * markers).sum(1, keepdim=True))


class CopyMemoryOptions(SyntheticOptions):
    delay: int = Field(50, ge=1, description="T, the blank steps between the symbols and the recall")
    symbols: int = Field(8, ge=2, description="alphabet size of the copied symbols")
    copy_length: int = Field(10, ge=1, description="symbols to remember")


@register_task
class CopyMemory(SyntheticTask):
    """Arjovsky et al. (2016): read ``copy_length`` symbols, wait through T-1 blanks, see the
    delimiter, then output the symbols in order (blank before). Sequences have T + 2*copy_length
    steps. A memoryless strategy (blanks, then a uniform guess) scores
    copy_length * ln(symbols) / (T + 2*copy_length) cross-entropy per step."""

    name = "copy_memory"
    version = "1"
    description = "copy memory: recall 10 symbols after a delay of T blank steps (cross-entropy)"
    Options = CopyMemoryOptions
    label_options = ("delay",)

    # token ids: 0 blank, 1..symbols the symbols, symbols+1 the delimiter
    def spec(self) -> TaskSpec:
        o = self.options
        steps = o.delay + 2 * o.copy_length
        return TaskSpec(
            name=self.name,
            version=self.version,
            input_kind=InputKind.TOKENS,
            input_size=o.symbols + 2,
            output_kind=OutputKind.STEP_CLASSIFICATION,
            num_outputs=o.symbols + 1,
            loss=metrics.cross_entropy_loss,
            metrics=(
                Metric("cross_entropy", metrics.step_cross_entropy, higher_is_better=False),
                Metric("recall_accuracy", metrics.last_steps_accuracy(o.copy_length), higher_is_better=True),
            ),
            main_metric="cross_entropy",
            baseline=Baseline(
                "blanks, then a uniform guess of the symbols",
                {"cross_entropy": o.copy_length * math.log(o.symbols) / steps, "recall_accuracy": 1 / o.symbols},
            ),
            extra={"delay": o.delay, "seq_len": steps},
            length_fact="delay",  # the dependency the cell must bridge; seq_len adds the fixed 2 x copy_length
            perturbations=("substitute",),  # deleting a step would shift the per-step targets
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> Batch:
        o = self.options
        symbols = torch.randint(1, o.symbols + 1, (n, o.copy_length), generator=generator, device=device)
        blank = torch.zeros(n, o.delay - 1, dtype=torch.long, device=device)
        delimiter = torch.full((n, 1), o.symbols + 1, dtype=torch.long, device=device)
        recall = torch.zeros(n, o.copy_length, dtype=torch.long, device=device)
        inputs = torch.cat([symbols, blank, delimiter, recall], dim=1)
        targets = torch.cat([torch.zeros(n, o.delay + o.copy_length, dtype=torch.long, device=device), symbols], 1)
        return Batch(inputs, targets)


@perturbation("distractor", "batch", "markers", "adding: this many extra steps marked (never the two true ones); the target stays "
              "the sum of the two true marked values", integer=True)  # fmt: skip
def distractor(batch: Batch, level: float, gens, ctx) -> Batch:
    markers = batch.inputs[..., 1].clone()
    for i, g in enumerate(gens):
        free = (markers[i] == 0).nonzero().squeeze(1)
        markers[i, free[torch.randperm(len(free), generator=g)[: int(level)]]] = 1.0
    return Batch(torch.stack([batch.inputs[..., 0], markers], dim=-1), batch.targets, batch.lengths)
