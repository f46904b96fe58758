"""A sweep's config: a suite's sections plus the study settings, the sampler and the pruner.

Samplers and pruners are registries of option schemas (``Choice``): each has its own fields, so
``{name: median, min_resource: 3}`` is an error. To add one, write a small class with
``name: Literal["..."]``, its options and ``build()``, and register it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import optuna
from pydantic import Field, SerializeAsAny, field_validator

from benchmark.config import Choice, SuiteConfig, apply_overrides, load_yaml, validate
from benchmark.registry import Registry
from benchmark.search_space import SearchSpace

SAMPLERS: Registry[type["SamplerConfig"]] = Registry("sampler")
PRUNERS: Registry[type["PrunerConfig"]] = Registry("pruner")


class SamplerConfig(Choice):
    """How a study proposes trials; every study of a sweep gets the same one (and the same seed)."""

    choices: ClassVar[Registry] = SAMPLERS
    default_name: ClassVar[str] = "tpe"

    def build(self, seed: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError


@SAMPLERS.register("tpe")
class TPESampler(SamplerConfig):
    name: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(10, ge=0, description="random trials before the model kicks in")

    def build(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)


@SAMPLERS.register("random")
class RandomSampler(SamplerConfig):
    name: Literal["random"] = "random"

    def build(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)


class PrunerConfig(Choice):
    """When a trial stops early; its resource is the epoch (one report per validation)."""

    choices: ClassVar[Registry] = PRUNERS
    default_name: ClassVar[str] = "median"

    def build(self, max_epochs: int) -> optuna.pruners.BasePruner:
        raise NotImplementedError


@PRUNERS.register("median")
class MedianPruner(PrunerConfig):
    name: Literal["median"] = "median"
    n_startup_trials: int = Field(5, ge=0, description="trials finished before any is pruned")
    n_warmup_steps: int = Field(0, ge=0, description="epochs a trial always gets")

    def build(self, max_epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.MedianPruner(self.n_startup_trials, self.n_warmup_steps)


@PRUNERS.register("hyperband")
class HyperbandPruner(PrunerConfig):
    name: Literal["hyperband"] = "hyperband"
    min_resource: int = Field(1, gt=0, description="epochs every trial gets")
    reduction_factor: int = Field(3, ge=2)

    def build(self, max_epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.HyperbandPruner(self.min_resource, max_epochs, reduction_factor=self.reduction_factor)


@PRUNERS.register("none")
class NoPruner(PrunerConfig):
    name: Literal["none"] = "none"

    def build(self, max_epochs: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()


class SweepConfig(SuiteConfig):
    """Studies for the suite's tasks x models; each trial is a run of the shared sections plus sampled values.

    The suite's ``seeds`` (default 1, 2, 3 here) are those of ``suite --from-sweep``, which reruns
    each study's best config; ``seed`` is the training seed of every trial.
    """

    seeds: list[int] = Field([1, 2, 3], min_length=1, description="suite --from-sweep: seeds for the best configs")
    seed: int = Field(0, description="training seed of every trial")
    n_trials: int = Field(20, gt=0, description="finished (complete or pruned) trials per study")
    max_failures: int | None = Field(None, gt=0, description="give a study up after this many failed trials")
    sampler: SerializeAsAny[SamplerConfig] = Field(default_factory=lambda: SamplerConfig.model_validate({}))
    sampler_seed: int = 0
    pruner: SerializeAsAny[PrunerConfig] = Field(default_factory=lambda: PrunerConfig.model_validate({}))
    storage: str | None = Field(None, description="an SQLAlchemy URL; default sqlite:///<storage_dir>/<name>.db")
    storage_dir: str = "optuna"
    heartbeat_interval: int = Field(10, gt=0, description="seconds between a running trial's heartbeats")
    grace_period: int | None = Field(None, gt=0, description="silence after which a trial is stale (2 x interval)")
    max_retry: int = Field(2, ge=0, description="re-runs of a trial whose worker died")
    search_space: dict[str, Any]

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or v.strip() != v:
            raise ValueError("must be non-empty, without '/' or surrounding spaces")
        return v

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.storage_dir) / self.name}.db"

    def space(self) -> SearchSpace:
        return SearchSpace.parse(self.search_space)

    def as_suite(self, name: str, seeds: list[int]) -> SuiteConfig:
        """The same tasks, models and shared sections as an ordinary suite (train overrides merged there)."""
        shared = {k: getattr(self, k) for k in SuiteConfig.model_fields}
        return SuiteConfig(**(shared | {"name": name, "seeds": seeds}))


def load_sweep_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Load, validate and check a sweep: every search-space bound must make a valid run of every study."""
    from benchmark.sweep.studies import plan_studies

    sweep = validate(SweepConfig, apply_overrides(load_yaml(path), list(overrides)))
    space = sweep.space()
    for plan in plan_studies(sweep):
        space.check(plan.base)
    return sweep
