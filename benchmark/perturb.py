"""Input perturbations for evaluating a trained network under noise (a registry of kinds).

A kind changes the test inputs at a level (a noise std, an SNR in dB, a rate, a count) and
declares the level that leaves them unchanged (``clean``: std 0, +inf dB), where it returns the
data untouched, so the clean metric is reproduced exactly. Every random draw is per example,
from a generator seeded by (seed, kind, example index): every model sees the same perturbed test
set whatever its batch size, and a higher level perturbs the same draws more (common random
numbers, so a degradation curve is not jagged by resampling).

Kinds act at one of two stages: ``batch`` on the prepared ``Batch`` (inputs, targets, lengths),
``raw`` on what the task's test loader yields before its datamodule prepares it (speech:
waveforms before features). A task lists the kinds it supports in ``TaskSpec.perturbations``;
generic kinds live here (``gaussian``, ``substitute``, ``delete``), task-specific ones beside their
task (``distractor`` in ``tasks/synthetic.py``, ``snr`` in ``tasks/speech``), registered with
``@perturbation``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from benchmark.config import ConfigError
from benchmark.registry import Registry
from benchmark.task import Batch, TaskSpec

Generators = list[torch.Generator]  # one per example of the batch


@dataclass(frozen=True)
class Context:
    """What a kind may read besides the data: the task (e.g. its sample rate) and the command's options."""

    task: Any
    spec: TaskSpec
    noise_dir: Path | None = None
    cache: dict = field(default_factory=dict)  # per command: e.g. decoded background recordings


ApplyFn = Callable[[Any, float, Generators, Context], Any]


@dataclass(frozen=True)
class Perturbation:
    name: str
    stage: Literal["raw", "batch"]
    apply: ApplyFn  # (data, level, per-example generators, context) -> perturbed data, same kind
    unit: str  # what a level is: "std", "dB", "rate", "markers"
    clean: float  # the level that changes nothing
    summary: str
    integer: bool = False  # levels are counts
    maximum: float = math.inf  # rates stop at 1

    @property
    def noisier_when_lower(self) -> bool:
        """SNR: lower is noisier; every other kind: higher is."""
        return self.clean == math.inf


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation kind")


def perturbation(name: str, stage: str, unit: str, summary: str, clean: float = 0.0, **options):
    """Register the decorated function as perturbation kind ``name``."""

    def register(fn: ApplyFn) -> ApplyFn:
        PERTURBATIONS.register(name, Perturbation(name, stage, fn, unit, clean, summary, **options))
        return fn

    return register


def generators(seed: int, kind: str, first: int, n: int) -> Generators:
    """Per-example generators for examples ``first .. first + n - 1`` of the test split."""
    base = (seed * 1_000_003 + zlib.crc32(kind.encode())) % 2**31
    return [torch.Generator().manual_seed(base * 1_000_033 + first + i) for i in range(n)]


def check(kind: str, levels: list[float], spec: TaskSpec, where: str = "") -> Perturbation:
    """The kind if ``spec``'s task supports it and every level is valid; else a one-line ``ConfigError``."""
    supported = tuple(spec.perturbations)
    if kind not in supported:
        raise ConfigError(
            f"--kind '{kind}': task '{spec.name}'{where} does not support it; its kinds: {', '.join(supported) or 'none'} (pick runs with --task or --run-id)"
        )
    p = PERTURBATIONS.get(kind)
    if not levels:
        raise ConfigError("--levels: give at least one level")
    for level in levels:
        if math.isnan(level) or level < 0 or level > p.maximum:
            top = f"{p.maximum:g}" if p.maximum < math.inf else "inf"
            raise ConfigError(f"--levels: {level:g} is not a valid {kind} level ({p.unit}, from 0 to {top})")
        if p.integer and level != int(level):
            raise ConfigError(f"--levels: {kind} levels are whole numbers of {p.unit} (got {level:g})")
    return p


def hooks(p: Perturbation, level: float, seed: int, ctx: Context) -> dict[str, Callable]:
    """``raw``/``batch`` hooks for ``benchmark.checkpoint.evaluate``; none at the clean level."""
    if level == p.clean:
        return {}

    def hook(data, first: int):
        n = len(data) if isinstance(data, Batch) else len(data[-1])
        return p.apply(data, level, generators(seed, p.name, first, n), ctx)

    return {p.stage: hook}


def valid_steps(batch: Batch) -> torch.Tensor:
    """(B, T) bool mask of the steps inside each sequence: perturbations never touch padding."""
    steps = batch.inputs.shape[1]
    if batch.lengths is None:
        return torch.ones(batch.inputs.shape[:2], dtype=torch.bool)
    return torch.arange(steps)[None, :] < batch.lengths[:, None]


def _uniform(gens: Generators, shape) -> torch.Tensor:
    return torch.stack([torch.rand(shape, generator=g) for g in gens])


@perturbation("gaussian", "batch", "std", "Gaussian noise of this standard deviation added to every input feature of every valid step")
def gaussian(batch: Batch, level: float, gens: Generators, ctx: Context) -> Batch:
    noise = torch.stack([torch.randn(batch.inputs.shape[1:], generator=g) for g in gens])
    noise = noise * valid_steps(batch)[..., None]
    return Batch(batch.inputs + level * noise, batch.targets, batch.lengths)


def _random_tokens(batch: Batch, gens: Generators, ctx: Context) -> torch.Tensor:
    """A uniformly drawn replacement token per step, never the padding id."""
    vocab, pad = ctx.spec.input_size, ctx.spec.padding_idx
    choices = torch.tensor([t for t in range(vocab) if t != pad])
    picks = torch.stack([torch.randint(len(choices), batch.inputs.shape[1:], generator=g) for g in gens])
    return choices[picks]


@perturbation("substitute", "batch", "rate", "each valid token replaced, with this probability, by a uniformly drawn token", maximum=1.0)
def substitute(batch: Batch, level: float, gens: Generators, ctx: Context) -> Batch:
    hit = (_uniform(gens, batch.inputs.shape[1:]) < level) & valid_steps(batch)
    replacement = _random_tokens(batch, gens, ctx)
    return Batch(torch.where(hit, replacement, batch.inputs), batch.targets, batch.lengths)


@perturbation("delete", "batch", "rate", "each valid token deleted with this probability (at least one kept); one-label-per-sequence tasks only", maximum=1.0)
def delete(batch: Batch, level: float, gens: Generators, ctx: Context) -> Batch:
    valid = valid_steps(batch)
    keep = (_uniform(gens, batch.inputs.shape[1:]) >= level) & valid
    keep[:, 0] |= ~keep.any(1)  # an empty sequence has no last state: keep its first token
    lengths = keep.sum(1)
    pad = ctx.spec.padding_idx if ctx.spec.padding_idx is not None else 0
    out = torch.full_like(batch.inputs, pad)
    for i in range(len(batch.inputs)):
        out[i, : lengths[i]] = batch.inputs[i][keep[i]]
    return Batch(out, batch.targets, lengths)
