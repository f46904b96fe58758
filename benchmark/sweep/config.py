"""A sweep's config: a suite's sections plus the study settings, the sampler and the pruner.

Samplers and pruners are registries of option schemas (``Choice``): each has its own fields, so
``{name: median, min_resource: 3}`` is an error. To add one, write a small class with
``name: Literal["..."]``, its options and ``build()``, and register it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import optuna
from pydantic import Field, SerializeAsAny

from benchmark.config import Choice, ConfigError, Seed, SuiteConfig, apply_overrides, load_yaml, validate
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

    def per_trial(self, seed: int) -> optuna.samplers.BaseSampler:
        """This sampler, seeded afresh for every trial from (``seed``, trial number): see ``PerTrialSeed``."""
        return PerTrialSeed(self.build, seed)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number``: the same on every machine and Python."""
    return int(hashlib.sha1(json.dumps([seed, number]).encode()).hexdigest()[:8], 16)


class PerTrialSeed(optuna.samplers.BaseSampler):
    """A sampler whose random numbers depend on the trial number, not on the worker drawing it.

    Trial numbers are handed out by the storage, once each: workers on any number of machines,
    started together, draw distinct params from the first trial on, and a study is reproducible
    trial by trial however many workers ran it. TPE and random keep no state but their RNG (the
    history is read from the storage), so a fresh sampler per trial loses nothing.
    """

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int):
        self._build, self._seed, self._by_trial = build, seed, {}

    def _of(self, trial) -> optuna.samplers.BaseSampler:
        if trial.number not in self._by_trial:
            self._by_trial[trial.number] = self._build(trial_seed(self._seed, trial.number))
        return self._by_trial[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._of(trial).after_trial(study, trial, state, values)
        del self._by_trial[trial.number]

    def reseed_rng(self) -> None:  # the seed is the trial's; nothing to reseed
        pass


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


@dataclass(frozen=True)
class PruneContext:
    """What a study's pruner is built from: the epoch budget and the task's main metric."""

    max_epochs: int
    higher_is_better: bool
    baseline: float | None  # the task's trivial-baseline value of the main metric, if it has one
    study: str = ""  # for error messages


class PrunerConfig(Choice):
    """When a trial stops early. Its resource is the epoch: step k is the (k+1)-th validation, reported
    every epoch; the last epoch is never pruned (it saves nothing)."""

    choices: ClassVar[Registry] = PRUNERS
    default_name: ClassVar[str] = "median"

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        raise NotImplementedError

    def check(self, ctx: PruneContext, key: str = "pruner") -> None:
        """ConfigError (one line) if this pruner cannot be built for the study."""


@PRUNERS.register("median")
class MedianPruner(PrunerConfig):
    name: Literal["median"] = "median"
    n_startup_trials: int = Field(5, ge=0, description="trials finished before any is pruned")
    n_warmup_steps: int = Field(0, ge=0, description="epochs a trial always gets")

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        return optuna.pruners.MedianPruner(self.n_startup_trials, self.n_warmup_steps)


@PRUNERS.register("percentile")
class PercentilePruner(PrunerConfig):
    name: Literal["percentile"] = "percentile"
    percentile: float = Field(25.0, gt=0, lt=100, description="keep a trial while it is in the best this % at the epoch")
    n_startup_trials: int = Field(5, ge=0, description="trials finished before any is pruned")
    n_warmup_steps: int = Field(0, ge=0, description="epochs a trial always gets")

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        return optuna.pruners.PercentilePruner(self.percentile, self.n_startup_trials, self.n_warmup_steps)


class HalvingConfig(PrunerConfig):
    """Successive halving's rungs: the resource is the epoch, up to ``train.max_epochs``."""

    min_resource: int = Field(1, gt=0, description="step of the first rung (0-based: after min_resource + 1 epochs)")
    reduction_factor: int = Field(3, ge=2, description="1 / the share of trials promoted at each rung")

    def check(self, ctx: PruneContext, key: str = "pruner") -> None:
        if self.min_resource >= ctx.max_epochs - 1:
            raise ConfigError(
                f"{key}.min_resource={self.min_resource}: the first rung must come before the last epoch "
                f"(train.max_epochs={ctx.max_epochs}); use at most {max(1, ctx.max_epochs - 2)}"
            )


@PRUNERS.register("successive_halving")
class SuccessiveHalvingPruner(HalvingConfig):
    name: Literal["successive_halving"] = "successive_halving"
    min_early_stopping_rate: int = Field(0, ge=0, description="rungs skipped: the first is at min_resource x factor^rate")

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        return optuna.pruners.SuccessiveHalvingPruner(self.min_resource, self.reduction_factor, self.min_early_stopping_rate)


@PRUNERS.register("hyperband")
class HyperbandPruner(HalvingConfig):
    """Successive halving in brackets of different first rungs; the maximum resource is ``train.max_epochs``."""

    name: Literal["hyperband"] = "hyperband"

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        return optuna.pruners.HyperbandPruner(self.min_resource, ctx.max_epochs, reduction_factor=self.reduction_factor)


@PRUNERS.register("threshold")
class ThresholdPruner(PrunerConfig):
    name: Literal["threshold"] = "threshold"
    lower: float | None = Field(None, description="prune a trial whose value falls below this")
    upper: float | None = Field(None, description="prune a trial whose value rises above this")
    n_warmup_steps: int = Field(0, ge=0, description="epochs a trial always gets")

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        return optuna.pruners.ThresholdPruner(self.lower, self.upper, self.n_warmup_steps)

    def check(self, ctx: PruneContext, key: str = "pruner") -> None:
        if self.lower is None and self.upper is None:
            raise ConfigError(f"{key}: threshold needs {key}.lower, {key}.upper or both")


class WrapperConfig(PrunerConfig):
    """A pruner around another one (``inner``), which decides when the wrapper lets it."""

    inner: SerializeAsAny[PrunerConfig] = Field(default_factory=lambda: PrunerConfig.model_validate({}))

    def check(self, ctx: PruneContext, key: str = "pruner") -> None:
        self.inner.check(ctx, f"{key}.inner")


@PRUNERS.register("patient")
class PatientPruner(WrapperConfig):
    name: Literal["patient"] = "patient"
    patience: int = Field(2, ge=0, description="epochs without improvement before the inner pruner is asked")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        with warnings.catch_warnings():  # "experimental" since Optuna 2.8, and unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(self.inner.build(ctx), self.patience, self.min_delta)


@PRUNERS.register("plateau")
class PlateauPruner(WrapperConfig):
    name: Literal["plateau"] = "plateau"
    tol: float = Field(0.1, ge=0, description="left the plateau: best value beats the task's baseline by this share of it")
    max_wait: int | None = Field(None, gt=0, description="epochs a trial on the plateau is spared (default: half of train.max_epochs)")

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        from benchmark.sweep.plateau import PlateauWarmup

        wait = self.max_wait or max(1, ctx.max_epochs // 2)
        return PlateauWarmup(self.inner.build(ctx), ctx.baseline, ctx.higher_is_better, self.tol, wait)

    def check(self, ctx: PruneContext, key: str = "pruner") -> None:
        if ctx.baseline is None:
            raise ConfigError(f"{key}: plateau needs a baseline, but the task of study '{ctx.study}' has none")
        super().check(ctx, key)


@PRUNERS.register("none")
class NoPruner(PrunerConfig):
    name: Literal["none"] = "none"

    def build(self, ctx: PruneContext) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()


class SweepConfig(SuiteConfig):
    """Studies for the suite's tasks x models; each trial is a run of the shared sections plus sampled values.

    The suite's ``seeds`` (default 1, 2, 3 here) are those of ``suite --from-sweep``, which reruns
    each study's best config; ``seed`` is the training seed of every trial.
    """

    seeds: list[Seed] = Field([1, 2, 3], min_length=1, description="suite --from-sweep: seeds for the best configs")
    seed: Seed = Field(0, description="training seed of every trial")
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

    def pruners_used(self) -> list[tuple[str, PrunerConfig]]:
        """(config key, pruner) of every pruner this config builds, for ``load_sweep_config``'s checks."""
        return [("pruner", self.pruner)]

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.storage_dir) / self.name}.db"

    def space(self) -> SearchSpace:
        return SearchSpace.parse(self.search_space)

    def as_suite(self, name: str, seeds: list[int]) -> SuiteConfig:
        """The same tasks, models and shared sections as an ordinary suite (train overrides merged there)."""
        shared = {k: getattr(self, k) for k in SuiteConfig.model_fields}
        return SuiteConfig(**(shared | {"name": name, "seeds": seeds}))


def load_sweep_config(path: str | Path, overrides: list[str] = (), schema: type[SweepConfig] = SweepConfig) -> SweepConfig:
    """Load, validate and check a sweep: every search-space bound must make a valid run of every study."""
    from benchmark.sweep.studies import plan_studies

    sweep = validate(schema, apply_overrides(load_yaml(path), list(overrides)))
    space = sweep.space()
    for plan in plan_studies(sweep):
        space.check(plan.base)
        for key, pruner in sweep.pruners_used():
            pruner.check(plan.prune_context(), key)
    return sweep
