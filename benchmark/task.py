"""What a task is: a validated spec (inputs, outputs, loss, metrics, baselines, version) plus data.

A task is one class under ``tasks/`` (or in another distribution, registered through the
``rnnbench.tasks`` entry-point group), decorated with ``@register_task``. Nothing in
``benchmark/`` names a concrete task.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar

import lightning as L
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor

from benchmark.registry import Registry
from benchmark.scales import Scale, default_scale


class InputKind(str, Enum):
    CONTINUOUS = "continuous"  # float features per step, shape (B, T, input_size)
    TOKENS = "tokens"  # integer ids per step, shape (B, T), embedded by the model


class OutputKind(str, Enum):
    SEQUENCE_CLASSIFICATION = "sequence_classification"  # one label per sequence
    SEQUENCE_REGRESSION = "sequence_regression"  # one real vector per sequence
    STEP_CLASSIFICATION = "step_classification"  # one label per time step
    STEP_REGRESSION = "step_regression"  # one real vector per time step (NaN targets are not scored)

    @property
    def per_step(self) -> bool:
        return self in (OutputKind.STEP_CLASSIFICATION, OutputKind.STEP_REGRESSION)


@dataclass
class Batch:
    """One batch. ``lengths`` is None when every sequence fills the whole time axis."""

    inputs: Tensor
    targets: Tensor
    lengths: Tensor | None = None

    def __len__(self) -> int:
        return self.targets.shape[0]


# A metric maps (model output, batch) to one value per example; the runner averages them.
MetricFn = Callable[[Tensor, Batch], Tensor]
LossFn = Callable[[Tensor, Batch], Tensor]


@dataclass(frozen=True)
class Metric:
    """A named per-example metric; ``scale`` (see ``benchmark.scales``) defaults by kind: errors are
    ratios, accuracies proportions. Name one for anything else (``scales.DIFFERENCE``)."""

    name: str
    fn: MetricFn
    higher_is_better: bool
    scale: Scale | None = None

    def __post_init__(self):
        if self.scale is None:
            object.__setattr__(self, "scale", default_scale(self.higher_is_better))


@dataclass(frozen=True)
class Baseline:
    """A trivial strategy's score, reported beside every result on the task."""

    description: str
    values: dict[str, float]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    version: str
    input_kind: InputKind
    input_size: int  # features per step, or vocabulary size for tokens
    output_kind: OutputKind
    num_outputs: int  # classes, or regression dimensions
    loss: LossFn
    metrics: tuple[Metric, ...]
    main_metric: str
    baseline: Baseline | None = None
    padding_idx: int | None = None  # token id that is padding (tokens only)
    causal: bool = False  # per-step targets are later inputs (forecasting): a backward direction would read them
    extra: dict[str, Any] = field(default_factory=dict)  # task facts, logged as fact.<name> params
    length_fact: str | None = None  # the fact in ``extra`` that is the sequence length the report plots against
    perturbations: tuple[str, ...] = ()  # kinds of ``benchmark.perturb`` its test inputs can be evaluated under

    def __post_init__(self):
        names = [m.name for m in self.metrics]
        if self.main_metric not in names:
            raise ValueError(f"task '{self.name}': main_metric '{self.main_metric}' is not one of {names}")
        if self.length_fact is not None and self.length_fact not in self.extra:
            raise ValueError(f"task '{self.name}': length_fact '{self.length_fact}' is not one of its facts {list(self.extra)}")

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


@dataclass(frozen=True)
class DataSplit:
    digest: str  # ``fingerprint`` of the split's examples as the model receives them
    size: int  # examples (sequences, utterances, texts); for generated training data, per epoch


@dataclass(frozen=True)
class DatasetInfo:
    """A run's data as MLflow's Dataset column shows it: one entry per split, found by name and digest.

    ``source_type`` is ``local``, ``hub`` or ``generator``; ``source`` says where the data come from
    (a resolved path, a hub id and revision, or a generator with its options and seed).
    """

    name: str  # short: a folder's or hub set's name, e.g. spoken_digits; the task's name for generated data
    source_type: str
    source: dict[str, Any]
    splits: dict[str, DataSplit]


def fingerprint(*parts: Any) -> str:
    """12 hex digits identifying data: tensors and arrays by dtype, shape and bytes, anything else by its JSON.

    Equal data give equal fingerprints on any machine; any changed element changes it.
    """
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            if part.dtype == object:
                raise TypeError("fingerprint: object arrays have no stable bytes; pass their elements")
            part = np.ascontiguousarray(part)
            h.update(f"array {part.dtype.str} {part.shape}|".encode())
            h.update(part.data)
        else:
            h.update(f"json {json.dumps(part, sort_keys=True, default=str)}|".encode())
    return h.hexdigest()[:12]


class TaskOptions(BaseModel):
    """Base for a task's typed options. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Task:
    """Subclass, set the class attributes and implement ``spec`` and ``datamodule``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    label_options: ClassVar[tuple[str, ...] | None] = None
    # options naming where the data come from (paths, hub ids, columns, splits, labels): the tests
    # that run every shipped config drop them and train on ``smoke_options`` data instead
    data_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any):
        from benchmark.config import ConfigError, format_validation_error

        try:
            self.options = self.Options(**options)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, prefix="task.", model=self.Options)) from None

    @property
    def label(self) -> str:
        """Name plus the options naming the setting, e.g. ``adding[seq_len=100]``.

        ``label_options`` lists them (always shown); without it, every option off its default is.
        """
        if self.label_options is not None:
            shown = {k: getattr(self.options, k) for k in self.label_options}
        else:
            shown = self.options.model_dump(exclude_defaults=True)
        if not shown:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in shown.items())}]"

    @property
    def data_name(self) -> str | None:
        """A short name of the data (a folder's or hub set's name) for run names; None for generated data."""
        return None

    def dataset_info(self) -> DatasetInfo | None:
        """The data each split holds, logged to MLflow as the run's data sets; None logs none.

        Called after ``spec()``, so a task may read what it loaded there.
        """
        return None

    @classmethod
    def smoke_options(cls, workdir: Path) -> dict[str, Any]:
        """Options for a tiny instance that the registry-driven tests build; may write data under workdir."""
        return {}

    # __init__ must stay cheap (options only): listing and summaries create tasks freely.
    # Expensive preparation (downloads, tokenizing) belongs in spec() / datamodule().
    def spec(self) -> TaskSpec:
        raise NotImplementedError

    def datamodule(self, batch_size: int, seed: int) -> L.LightningDataModule:
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task", entry_point_group="rnnbench.tasks", packages=("tasks",))


def register_task(cls: type[Task]) -> type[Task]:
    TASKS.register(cls.name, cls)
    return cls


def create_task(name: str, **options: Any) -> Task:
    return TASKS.get(name)(**options)
