"""Typed, validated configs loaded from YAML with ``key=value`` overrides.

Every mistake a user can make here (unknown key, wrong type, unreadable file) raises
``ConfigError`` with one line naming the key and, where it helps, the valid choices.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from benchmark.registry import Registry


class ConfigError(ValueError):
    """A user's config mistake; its message is one complete line."""


class HeldWarnings:
    """Warnings (and the log lines of data libraries, ``HELD_LOGGERS``) raised while a command checks its input
    are held back: folded into the error line when the input is bad (one line, not warnings and then an error),
    shown as usual once the input is accepted, i.e. when the first MLflow run or Optuna storage is made
    (``HELD.release()`` there)."""

    def __init__(self):
        self.held, self.logged, self._show, self._handlers, self._holder = [], [], None, {}, None

    def __enter__(self) -> "HeldWarnings":
        self.held, self.logged, self._show, warnings.showwarning = [], [], warnings.showwarning, self._hold
        self._holder = _LogHolder(self.logged)
        self.hold_loggers()
        return self

    def hold_loggers(self) -> None:
        """Hold the ``HELD_LOGGERS``' lines too, handlers added since included: call it right after importing a
        library that configures its logger on import (``benchmark.hub.datasets``); outside the block it does nothing."""
        if self._show is None:
            return
        for name in HELD_LOGGERS:
            log = logging.getLogger(name)
            added = [h for h in log.handlers if h is not self._holder]
            handlers, propagate = self._handlers.get(name, ([], log.propagate))
            self._handlers[name] = (handlers + added, propagate)
            log.handlers, log.propagate = [self._holder], False

    def _hold(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.held.append((message, category, filename, lineno, file, line))

    def _restore_loggers(self) -> None:
        for name, (handlers, propagate) in self._handlers.items():
            log = logging.getLogger(name)
            log.handlers, log.propagate = handlers, propagate
        self._handlers = {}

    def release(self) -> None:
        """The input is accepted: show what was held, and let later warnings and log lines through."""
        if self._show is not None:
            show, warnings.showwarning, self._show = self._show, self._show, None
            for held in self.held:
                show(*held)
            self.held = []
        if self._handlers:
            self._restore_loggers()
            for record in self.logged:
                logging.getLogger(record.name).handle(record)
            self.logged = []

    def folded(self) -> str:
        notes = [str(w[0]).splitlines()[0][:300] for w in self.held]
        if self.logged:  # e.g. the hub client's retries: how many, and the last
            last = self.logged[-1].getMessage().splitlines()[0][:200]
            notes.append(f"{len(self.logged)} log line(s) from {', '.join(sorted({r.name.split('.')[0] for r in self.logged}))}, the last: {last}")
        return f" (after {len(notes)} warning(s): {'; '.join(notes)})" if notes else ""

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.release()
            return
        if self._show is not None:
            warnings.showwarning, self._show = self._show, None
        self._restore_loggers()


HELD_LOGGERS = ("huggingface_hub", "datasets", "fsspec")


class _LogHolder(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]):
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


HELD = HeldWarnings()  # the CLI holds warnings; the first MLflow run or Optuna storage made releases them


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Choice(Section):
    """A section whose ``name`` picks its schema from a registry of subclasses, e.g. a sweep's pruner.

    Subclass once per kind of choice with a ``choices`` registry, then once per option with
    ``name: Literal["..."]`` and its own fields, registered under that name. A plain string is
    short for ``{name: ...}``, and options without a name belong to ``default_name``; an unknown
    name or an option of another choice is a one-line error. Declare fields of this type as
    ``SerializeAsAny[...]`` so a dump keeps the chosen class's fields.
    """

    name: str
    choices: ClassVar[Registry]
    default_name: ClassVar[str]

    @model_validator(mode="wrap")
    @classmethod
    def _choose(cls, data: Any, handler):
        if isinstance(data, str):
            data = {"name": data}
        if isinstance(data, dict):
            own = cls.model_fields["name"].default  # a registered schema's own name; the base has none
            data = {"name": own if isinstance(own, str) else cls.default_name, **data}
            chosen = cls.choices.get(str(data["name"]))  # an unknown name raises with "did you mean"
            if chosen is not cls:
                try:
                    return chosen.model_validate(data)
                except ValidationError as e:  # keep the chosen schema's keys for the one-line message
                    raise PydanticCustomError("choice", "{error}", {"schema": chosen, "error": e}) from None
        return handler(data)


class ModelConfig(Section):
    """Architecture knobs. ``None`` means "the variant's default" (e.g. ``gru-2l`` sets 2 layers)."""

    name: str = "gru"
    hidden_size: int | None = Field(None, gt=0)
    num_layers: int | None = Field(None, gt=0)
    bidirectional: bool | None = None
    param_budget: int | None = Field(None, gt=0, description="solve hidden_size for this many parameters")
    budget_scope: Literal["total", "recurrent"] = Field(
        "total", description="what param_budget counts: the whole network, or the recurrent layers and head (the embedding is fixed by embedding_dim)"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="between stacked layers and before the head")
    forget_bias: float = Field(1.0, description="effective LSTM forget-gate bias at init (b_ih + b_hh)")
    embedding_dim: int = Field(32, gt=0, description="token tasks only")
    pooling: Literal["last", "mean", "max"] = "last"
    impl: Literal["auto", "torch", "loop", "compiled", "scan"] = Field(
        "auto", description="auto: torch.nn for rnn/gru/lstm, the scan for minGRU/minLSTM, the step loop otherwise"
    )


class TrainConfig(Section):
    batch_size: int = Field(64, gt=0)
    max_epochs: int = Field(10, gt=0)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; null disables")
    early_stopping_patience: int | None = Field(None, gt=0, description="epochs without val improvement")
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool = False
    nan_check_every: int = Field(20, gt=0, description="steps between non-finite loss checks")
    cpu_threads: int | None = Field(
        None, gt=0, description="torch intra-op threads; null keeps torch's default. Small RNNs on a busy CPU run faster on 1"
    )


Seed = Annotated[int, Field(ge=0, lt=2**32, description="numpy and torch take seeds in [0, 2**32)")]

# MLflow's tracking stores, by URI scheme (a SQLAlchemy URL may name its driver: postgresql+psycopg2)
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "file", "http", "https", "databricks")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _tracking_uri(uri: str) -> str:
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else "file"  # a plain path is a file store
    if scheme not in TRACKING_SCHEMES:
        raise ValueError(f"'{uri}' has no MLflow tracking store; valid schemes: {', '.join(TRACKING_SCHEMES)}")
    return uri


def _file_name(name: str) -> str:
    """Names that become file and folder names (results/<suite>/, optuna/<sweep>.db) stay in their folder."""
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(f"'{name}' must be a file name: letters, digits and . _ + - (not starting with . _ + -)")
    return name


class TrackingConfig(Section):
    tracking_uri: Annotated[str, AfterValidator(_tracking_uri)] = "sqlite:///mlflow.db"
    experiment: str = Field("rnnbench", min_length=1, pattern=r"\S", description="MLflow experiment name")
    log_checkpoint: bool = Field(True, description="log the best-validation weights as the run's checkpoint/model.pt artifact")


class TaskConfig(BaseModel):
    """``name`` plus the task's own options, validated later by the task's ``Options`` model."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Reference(Section):
    """A published number for this task setting, shown beside ours in the summary and report (marked
    "published, other setup"), never counted in our statistics."""

    source: str = Field(min_length=1, max_length=200, description="paper and table, e.g. 'Bai et al. 2018, Table 1'")
    setup: str = Field(min_length=1, max_length=300, description="one line: how their setup differs from ours")
    metric: str = Field(min_length=1, max_length=60, description="in our units where it is one of the task's metrics (accuracy 0-1)")
    value: float
    model: str = Field(min_length=1, max_length=60, description="their model's name, e.g. LSTM")

    MARK: ClassVar[str] = "published, other setup"  # how the summary and report label these rows

    @field_validator("setup", "source")
    @classmethod
    def _one_line(cls, text: str) -> str:
        if "\n" in text.strip():
            raise ValueError("must be one line")
        return text.strip()


References = list[Reference]
MAX_REFERENCES = 12  # the run's references tag stays under MLflow's 5,000 characters


class RunConfig(Section):
    """One task x one model x one seed."""

    task: TaskConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    seed: Seed = 0
    references: References = Field([], max_length=MAX_REFERENCES, description="published numbers for this task setting")

    NOT_IN_RESULT: ClassVar[set[str]] = {"tracking", "references"}  # change no number a run measures

    def run_key(self) -> str:
        """Identity of a run for resuming: everything that changes its result, nothing else."""
        payload = self.model_dump(mode="json", exclude=self.NOT_IN_RESULT)
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class SuiteTask(TaskConfig):
    """A suite entry: a task with its options and optional ``train`` and ``model`` overrides for it
    (e.g. a per-task ``param_budget``, as papers size each task's models differently)."""

    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    references: References = Field([], max_length=MAX_REFERENCES, description="published numbers for this task setting")


class ReportConfig(Section):
    """How the report decides: equivalence margins by metric, or by task then metric (``benchmark.decide.margins``)."""

    margins: dict[str, Any] = Field({}, description="e.g. {mse: 0.2, copy_memory: {cross_entropy: 0.15}}")


class SuiteConfig(Section):
    """tasks x models x seeds, sharing one model/train/tracking section."""

    name: Annotated[str, AfterValidator(_file_name)]
    tasks: list[SuiteTask] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    seeds: list[Seed] = Field([0], min_length=1)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    results_dir: str = "results"
    jobs: int = Field(1, gt=0, description="runs trained at once, each in its own process")
    report: ReportConfig = ReportConfig()
    until_decided: bool = Field(False, description="then add seeds to the GRU-vs-LSTM pairs still undecided (benchmark.until_decided)")
    max_seeds: int | None = Field(None, gt=0, description="until_decided: the most seeds a pair gets (default: max(10, planned))")

    def runs(self) -> list[RunConfig]:
        """Expand to run configs, ordered seed-major so a partial suite covers every cell."""
        out = []
        for seed in self.seeds:
            for task in self.tasks:
                train = validate(TrainConfig, {**self.train.model_dump(), **task.train}, f"tasks[{task.name}].train.")
                shared = validate(ModelConfig, {**self.model.model_dump(), **task.model}, f"tasks[{task.name}].model.")
                for model in self.models:
                    out.append(
                        RunConfig(
                            task=TaskConfig(name=task.name, **task.options),
                            model=shared.model_copy(update={"name": model}),
                            train=train,
                            tracking=self.tracking,
                            seed=seed,
                            references=task.references,
                        )
                    )
        return out


# ----------------------------------------------------------------------------- loading


SHORTHANDS = {"task": "task.name", "model": "model.name"}


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings; values are parsed as YAML (``1e-3``, ``true``, ``[1, 2]``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key = SHORTHANDS.get(key, key)
        value = _parse_value(raw)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _parse_value(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        return raw
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
        return float(value)  # YAML 1.1 reads "3e-3" as a string; a user means the number
    return value


def valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and ann is not TaskConfig:
            keys += valid_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _section_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The section a key path leads to through nested sections and list items (``tasks.0.references.1``)."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def format_validation_error(e: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """Turn pydantic's first error into one line naming the key; an unknown key first (a misspelt key is also missing)."""
    errors = e.errors()
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = prefix + ".".join(str(p) for p in err["loc"])
    if err["type"] == "choice":  # an error inside a Choice's chosen schema
        return format_validation_error(err["ctx"]["error"], f"{loc}.", err["ctx"]["schema"])
    if err["type"] == "extra_forbidden":
        parent, _, leaf = loc.rpartition(".")
        item = _section_at(model, err["loc"][:-1]) if model and any(isinstance(p, int) for p in err["loc"]) else None
        valid = [f"{parent}.{k}" for k in item.model_fields] if item else valid_keys(model, prefix) if model else []
        siblings = {k.rpartition(".")[2]: k for k in valid if k.rpartition(".")[0] == parent}  # same section only
        close = difflib.get_close_matches(leaf, list(siblings), n=1)
        hint = f" Did you mean '{siblings[close[0]]}'?" if close else ""
        return f"unknown key '{loc}'.{hint} Valid keys: {', '.join(valid)}"
    if err["type"] == "missing":
        return f"missing required key '{loc}'"
    return f"invalid value for '{loc}': {err['msg']} (got {err.get('input')!r})"


def validate(model: type[BaseModel], data: dict[str, Any], prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, prefix, model)) from None


def load_run_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    data = load_yaml(path) if path else {}
    cfg = validate(RunConfig, apply_overrides(data, list(overrides)))
    return cfg


def load_suite_config(path: str | Path, overrides: list[str] = ()) -> SuiteConfig:
    return validate(SuiteConfig, apply_overrides(load_yaml(path), list(overrides)))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``, for logging as MLflow params."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
