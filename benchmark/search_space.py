"""Search spaces for sweeps: typed parameter specs read from YAML, sampled through an Optuna trial.

Keys are run-config keys (``train.lr``, ``model.dropout``, ...); a sampled value is applied to the
run config as a ``key=value`` override. A parameter with ``when:`` is sampled only when every
condition holds; conditions name a fact of the study's variant (``cell``, ``layers``,
``bidirectional``), an earlier parameter, or any config key::

    search_space:
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      model.dropout: {type: float, low: 0.0, high: 0.3, step: 0.1}
      model.param_budget: {type: categorical, choices: [10000, 20000]}
      model.forget_bias: {type: float, low: 0.0, high: 3.0, when: {cell: lstm}}
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal, Union

from pydantic import Field, ValidationError, model_validator

from benchmark.config import (
    ConfigError,
    ModelConfig,
    RunConfig,
    Section,
    TrainConfig,
    apply_overrides,
    flatten,
    valid_keys,
    validate,
)
from benchmark.registry import did_you_mean

# model.name is what a study compares, so it is fixed per study, never searched.
TUNABLE_KEYS = [k for k in valid_keys(ModelConfig, "model.") if k != "model.name"] + valid_keys(TrainConfig, "train.")
VARIANT_FACTS = ["cell", "layers", "bidirectional"]  # what conditions may name besides config keys

Scalar = Union[bool, int, float, str, None]


class _Param(Section):
    when: dict[str, Scalar | list[Scalar]] = {}

    def applies(self, context: dict[str, Any]) -> bool:
        return all(
            context.get(key) in (want if isinstance(want, list) else [want]) for key, want in self.when.items()
        )


class _RangeParam(_Param):
    """A numeric range; subclasses fix the number type and the step that means "no step"."""

    no_step: ClassVar[Any] = None

    @model_validator(mode="after")
    def _check(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0 (got {self.low})")
        if self.log and self.step != self.no_step:
            raise ValueError("log and step cannot be combined")
        return self

    def extremes(self) -> list[Any]:
        return [self.low, self.high]


class FloatParam(_RangeParam):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


class IntParam(_RangeParam):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, gt=0)
    no_step: ClassVar[Any] = 1

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)

    def extremes(self) -> list[Any]:
        return list(self.choices)


Param = Union[FloatParam, IntParam, CategoricalParam]
PARAM_TYPES: dict[str, type[Param]] = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


class SearchSpace:
    """Ordered parameters; conditions may refer to parameters declared before them."""

    def __init__(self, params: dict[str, Param]):
        self.params = params

    @classmethod
    def parse(cls, raw: Any, where: str = "search_space") -> SearchSpace:
        """Validate a YAML mapping; every mistake is one ``ConfigError`` line naming the key."""
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"'{where}' must be a non-empty mapping of config keys to parameter specs")
        params = {}
        for key, spec in raw.items():
            loc = f"{where}.{key}"
            if key not in TUNABLE_KEYS:
                raise ConfigError(
                    f"'{loc}': '{key}' is not a tunable key.{did_you_mean(key, TUNABLE_KEYS)} "
                    f"Tunable keys: {', '.join(TUNABLE_KEYS)}"
                )
            if not isinstance(spec, dict) or spec.get("type") not in PARAM_TYPES:
                got = spec.get("type") if isinstance(spec, dict) else spec
                raise ConfigError(f"'{loc}' needs a 'type', one of: {', '.join(PARAM_TYPES)} (got {got!r})")
            try:
                param = PARAM_TYPES[spec["type"]].model_validate(spec)
            except ValidationError as e:
                errors = e.errors()  # a misspelt field also shows up as a missing one: name the typo
                err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
                field = ".".join(str(p) for p in err["loc"])
                if err["type"] == "extra_forbidden":
                    fields = list(PARAM_TYPES[spec["type"]].model_fields)
                    raise ConfigError(
                        f"'{loc}': unknown field '{field}'.{did_you_mean(field, fields)} Valid fields: {', '.join(fields)}"
                    ) from None
                if err["type"] == "missing":
                    raise ConfigError(f"'{loc}': missing required field '{field}'") from None
                what = f"'{loc}.{field}'" if field else f"'{loc}'"
                got = f" (got {err['input']!r})" if field else ""
                raise ConfigError(f"invalid {what}: {err['msg'].removeprefix('Value error, ')}{got}") from None
            known = [*VARIANT_FACTS, *params, *TUNABLE_KEYS]
            for cond in param.when:
                if cond not in known:
                    raise ConfigError(
                        f"'{loc}.when': unknown condition key '{cond}'.{did_you_mean(cond, known)} "
                        f"Conditions name {', '.join(VARIANT_FACTS)}, an earlier parameter or a config key"
                    )
            params[key] = param
        return cls(params)

    def check(self, base: RunConfig, where: str = "search_space") -> None:
        """Every bound and choice must make a valid run config (e.g. ``model.dropout`` < 1)."""
        data = base.model_dump(mode="json")
        for key, param in self.params.items():
            for value in param.extremes():
                try:
                    validate(RunConfig, apply_overrides(data, [f"{key}={json.dumps(value)}"]))
                except ConfigError as e:
                    raise ConfigError(f"'{where}.{key}': value {value!r} is out of range: {e}") from None

    def sample(self, trial, base: RunConfig, facts: dict[str, Any]) -> dict[str, Any]:
        """Suggest every parameter whose conditions hold, in declaration order."""
        context = flatten(base.model_dump(mode="json")) | facts
        values = {}
        for key, param in self.params.items():
            if param.applies(context):
                values[key] = context[key] = param.suggest(trial, key)
        return values

    def to_dict(self) -> dict[str, Any]:
        return {k: p.model_dump(exclude_defaults=True) for k, p in self.params.items()}


def apply_params(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    """The run config of one trial: the sampled values applied as overrides."""
    overrides = [f"{k}={json.dumps(v)}" for k, v in values.items()]
    return validate(RunConfig, apply_overrides(base.model_dump(mode="json"), overrides))
