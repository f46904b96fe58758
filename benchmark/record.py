"""The run record: every MLflow tag, param and metric name that rnnbench writes, and how a run ends.

Writers (runner, sweep, speed) and readers (summary, report) import these names; no other module
spells them. What an ordinary run (``kind=run``) records:

- tags: the ``Tag`` names under "every run" below (``length_fact`` names the fact that is the
  task's sequence length, empty when it has none); ``failure_reason`` when it did not finish;
  its lease while it trains: ``owner`` (host:pid) and ``heartbeat`` (see ``LEASE_S``);
  ``references`` when its config names published numbers for its task setting (JSON, see
  ``references_tag``: shown beside ours, never part of our statistics);
- params: the whole run config flattened (``task.seq_len``, ``train.lr``, ...), the resolved
  architecture (``arch.*``), ``param_count``; the task's facts (``TaskSpec.extra``) as
  ``fact.<name>``; and ``param_count.<cell>``: the parameter count of the same network (same
  task, layers, direction, hidden size, input layer and head) with each cell in ``CELLS``;
- metrics: per epoch ``train/loss``, ``train/<metric>``, ``val/<metric>``, ``train/seq_per_s``;
  at the end ``test/<metric>``, ``best_val/<main>``, ``baseline/<metric>`` and ``RunMetric``;
- per task metric, its comparison scale and range as tags ``scale.<metric>`` (``ratio``,
  ``proportion``, ``difference``; see ``benchmark.scales``) and ``range.<metric>`` (``(0, inf)``).

A suite records on its experiment what the report needs beyond the runs (``ExperimentTag``): its
equivalence margins and, with ``--until-decided``, its sequential design.

A suite is a parent run (``kind=suite``) with its runs nested under it; a sweep's study is a
parent run (``kind=sweep``) with its trials nested under it (``kind=trial``, ordinary runs plus the
``Tag`` names under "trials"). ``rnnbench speed --track`` logs ``kind=speed`` runs. Runs from
before the ``kind`` tag existed count as ``run``.

What MLflow's UI shows (``benchmark.dashboard``): run names that start with the model
(``gru · s1 · adding``), the run's one-paragraph description (``Tag.NOTE``), its source (command
line, git commit) and its data sets (``mlflow.log_input``: one per split, context ``train``/
``val``/``test``). Artifacts, at the root of a run's artifact folder:

- every run and trial: ``config.yaml`` (``CONFIG_ARTIFACT``), the resolved run config, which
  ``rnnbench run config.yaml`` reruns (same run key);
- a suite's parent run: ``suite.yaml`` (the suite as run), ``summary.md``/``summary.csv`` when
  the suite ends, and ``report/`` (``report.html``, ``report.md``, ``plots/``, CSVs) from each
  ``rnnbench report`` of its experiment;
- a study's parent run: ``importances.json`` and ``plots/``;
- every finished run and trial (unless ``tracking.log_checkpoint=false``): ``checkpoint/model.pt``
  (``CHECKPOINT_ARTIFACT``), its best-validation weights with the run config and resolved
  architecture, which ``benchmark.checkpoint.load_run`` rebuilds from the run id alone;
- after ``rnnbench gates``: ``gates/`` (``GATES_ARTIFACTS``: ``stats.csv``, ``histograms.png``,
  ``heatmap.png``).

Later evaluations add metrics to a finished run: ``rnnbench robustness`` logs
``robust/<kind>/<level>/<metric>`` (``robust_metric``) and tags ``robust.<kind>`` (``robust_tag``:
how the perturbation was drawn); ``rnnbench gates`` logs ``gates/<layer>/<direction>/<gate>/<stat>``
(``gate_metric``).

Add new artifacts beside these, and name them here.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from mlflow.tracking import MlflowClient

# MLflow's run statuses
RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"

CELLS = ("rnn", "gru", "lstm")  # cells whose parameter counts every run records
MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value (reasons are cut to fit)
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


class RunKind:
    """Values of the ``kind`` tag."""

    RUN = "run"  # one task x model x seed (suites, ``rnnbench run``)
    SWEEP = "sweep"  # an Optuna study's parent run
    TRIAL = "trial"  # one trial of a study, nested under its parent
    SPEED = "speed"  # one ``rnnbench speed --track`` configuration
    SUITE = "suite"  # a suite's parent run; its runs are nested under it


class Tag:
    """Tag names."""

    KIND = "kind"
    # MLflow's own, which its UI shows
    PARENT_RUN = "mlflow.parentRunId"  # nests a run under another
    NOTE = "mlflow.note.content"  # the run's description (Markdown)
    SOURCE_NAME = "mlflow.source.name"  # the command line that made the run
    SOURCE_TYPE = "mlflow.source.type"
    SOURCE_COMMIT = "mlflow.source.git.commit"  # the full commit hash
    SOURCE_BRANCH = "mlflow.source.git.branch"
    SOURCE_DIRTY = "mlflow.source.git.dirty"  # "true": uncommitted changes to tracked files
    DATA_CONTEXT = "mlflow.data.context"  # on a logged data set: the split it is (train, val, test)
    # every run
    TASK = "task"
    TASK_LABEL = "task_label"  # the task setting, e.g. adding[seq_len=50]
    TASK_VERSION = "task_version"
    MODEL = "model"
    CELL = "cell"
    BIDIRECTIONAL = "bidirectional"  # "true" / "false"
    LAYERS = "layers"
    HIDDEN = "hidden"
    PARAM_COUNT = "param_count"
    SEED = "seed"
    RUN_KEY = "run_key"  # hash of everything that changes the result: the identity for resuming
    MAIN_METRIC = "main_metric"
    HIGHER_IS_BETTER = "higher_is_better"  # "true" / "false"
    LENGTH_FACT = "length_fact"  # which fact.* param is the task's sequence length ("": none; absent: an old run)
    REFERENCES = "references"  # JSON list of the config's published reference rows (source, setup, metric, value, model)
    # environment, once the trainer has picked its device
    DEVICE = "device"
    TORCH_VERSION = "torch_version"
    LIGHTNING_VERSION = "lightning_version"
    GIT_COMMIT = "git_commit"  # short hash, "+dirty" with uncommitted changes (the report shows it)
    HOST = "host"
    # how it ended, and who ran it
    FAILURE_REASON = "failure_reason"
    OWNER = "owner"  # host:pid of the process training the run (its lease, with HEARTBEAT)
    HEARTBEAT = "heartbeat"  # unix time the owner last renewed its lease; see LEASE_S
    SUITE = "suite"  # the suite's name, on its parent run and on each of its runs
    SUITE_JOBS = "suite_jobs"
    SUITE_HASH = "suite_hash"  # on a suite's parent run: its planned runs; a resumed suite finds its parent by it
    # sweeps: parent runs and trials
    SWEEP = "sweep"
    STUDY_NAME = "study_name"
    TRIAL_NUMBER = "trial_number"
    TRIAL_STATE = "trial_state"  # COMPLETE, PRUNED or FAIL, as Optuna recorded the trial
    N_TRIALS = "n_trials"
    SAMPLER = "sampler"
    SAMPLER_SEED = "sampler_seed"
    PRUNER = "pruner"
    STORAGE = "storage"
    BEST_TRIAL = "best_trial"
    BEST_RUN_ID = "best_run_id"
    # speed runs
    IMPL = "impl"


class ExperimentTag:
    """Tags on an experiment (set by suites, read by the report)."""

    MARGINS = "rnnbench.margins"  # JSON: the suite's report.margins (see benchmark.decide.margins)
    DESIGN = "rnnbench.sequential_design"  # JSON: looks and alpha shares of --until-decided (benchmark.decide.design)


# Tags every ordinary run carries from its start (the report reads them as columns).
RUN_TAGS = (
    Tag.KIND, Tag.TASK, Tag.TASK_LABEL, Tag.MODEL, Tag.CELL, Tag.LAYERS, Tag.BIDIRECTIONAL, Tag.HIDDEN,
    Tag.MAIN_METRIC, Tag.DEVICE, Tag.TORCH_VERSION, Tag.GIT_COMMIT, Tag.SUITE, Tag.FAILURE_REASON, Tag.RUN_KEY,
)  # fmt: skip


class RunMetric:
    """Metrics an ordinary run logs once, when it finishes."""

    PARAM_COUNT = "param_count"
    THROUGHPUT = "throughput_seq_per_s"  # training sequences per second, validation excluded
    TRAIN_TIME = "train_time_s"  # training epochs only
    FIT_TIME = "fit_time_s"  # set-up and fit, test excluded
    WALL_TIME = "wall_time_s"
    EPOCHS = "epochs_trained"
    PEAK_MEMORY = "peak_memory_mb"  # CUDA allocator peak on GPU; process peak RSS on CPU


class StudyMetric:
    """Metrics a sweep's parent run logs when the sweep finalizes it."""

    N_COMPLETE = "n_complete"
    N_PRUNED = "n_pruned"
    N_FAILED = "n_failed"
    EPOCHS_TOTAL = "epochs_total"
    BEST_VALUE = "best_value"


TRAIN, VAL, TEST = "train", "val", "test"
TRAIN_LOSS = "train/loss"
TRAIN_SEQ_PER_S = "train/seq_per_s"  # per epoch


def on_split(split: str, metric: str) -> str:
    """``val/mse``: a task metric on one split (train, val or test), as logged per epoch or at the end."""
    return f"{split}/{metric}"


def on_test(metric: str) -> str:
    """``test/<metric>``, scored with the best-validation checkpoint."""
    return on_split(TEST, metric)


def on_val(metric: str) -> str:
    return on_split(VAL, metric)


def best_val(metric: str) -> str:
    """``best_val/<metric>``: the best validation score over epochs (the checkpoint tested)."""
    return f"best_val/{metric}"


def baseline(metric: str) -> str:
    """``baseline/<metric>``: the task's trivial baseline on the test set."""
    return f"baseline/{metric}"


# param names and prefixes
PARAM_COUNT = "param_count"
ARCH_PREFIX = "arch."  # the resolved architecture (arch.hidden_size, ...)
TASK_PREFIX = "task."  # the task's config options (task.seq_len, ...)
FACT_PREFIX = "fact."  # the task's facts, TaskSpec.extra (fact.seq_len, ...)
BEST_PREFIX = "best."  # a study's best params (best.train.lr, ...) on its parent run
SEARCH_SPACE = "search_space"

# A RUNNING run is live while its owner renews the lease: it is reaped (KILLED) only when its owner is gone,
# i.e. the owner's process has ended (same host) or its heartbeat is older than LEASE_S (any host).
HEARTBEAT_S = 30
LEASE_S = 180

COMMAND_ENV = "RNNBENCH_COMMAND"  # the CLI's command line, for Tag.SOURCE_NAME (worker processes inherit it)

# artifacts (see the module docstring for the layout)
CONFIG_ARTIFACT = "config.yaml"  # a run's resolved config
SUITE_ARTIFACT = "suite.yaml"  # a suite parent's config
REPORT_ARTIFACTS = "report"  # folder of the report on a suite's parent run
IMPORTANCES_ARTIFACT = "importances.json"  # fANOVA importances on a study's parent run
CHECKPOINT_ARTIFACT = "checkpoint/model.pt"  # a run's best-validation weights, config and architecture
GATES_ARTIFACTS = "gates"  # folder of ``rnnbench gates``' files on a run

ROBUST_PREFIX = "robust/"
GATES_PREFIX = "gates/"
GATE_STATS = ("mean", "left_sat", "right_sat")  # mean activation; fractions < 0.1 and > 0.9 (Karpathy et al. 2015)


def level_text(level: float) -> str:
    """A perturbation level as metric names spell it: ``20``, ``0.1``, ``inf``."""
    return "inf" if level == float("inf") else f"{level:g}"


def robust_metric(kind: str, level: float, metric: str) -> str:
    """``robust/snr/20/accuracy``: the test metric with the test inputs perturbed by ``kind`` at ``level``."""
    return f"{ROBUST_PREFIX}{kind}/{level_text(level)}/{metric}"


def parse_robust_metric(name: str) -> tuple[str, float, str] | None:
    """(kind, level, metric) of a ``robust_metric`` name; None for any other name."""
    if not name.startswith(ROBUST_PREFIX) or name.count("/") != 3:
        return None
    _, kind, level, metric = name.split("/")
    return kind, float(level), metric


def robust_tag(kind: str) -> str:
    """``robust.snr``: JSON tag saying how a run's ``kind`` perturbations were drawn (seed, options)."""
    return f"robust.{kind}"


def gate_metric(layer: int, direction: int, gate: str, stat: str) -> str:
    """``gates/l0/fwd/forget/right_sat``: a gate statistic over the test set's valid steps."""
    return f"{GATES_PREFIX}l{layer}/{'bwd' if direction else 'fwd'}/{gate}/{stat}"


def parse_gate_metric(name: str) -> tuple[str, str, str, str] | None:
    """(layer, direction, gate, stat) of a ``gate_metric`` name; None for any other name."""
    if not name.startswith(GATES_PREFIX) or name.count("/") != 4:
        return None
    _, layer, direction, gate, stat = name.split("/")
    return layer, direction, gate, stat


def metric_scale(metric: str) -> str:
    """``scale.mse``: tag holding the metric's comparison scale (``ratio``, ``proportion``, ``difference``)."""
    return f"scale.{metric}"


def metric_range(metric: str) -> str:
    """``range.mse``: tag holding the metric's range, e.g. ``(0, inf)`` or ``[0, 1]``."""
    return f"range.{metric}"


def scale_tags(scales: Mapping[str, Any]) -> dict[str, str]:
    """Tags naming the scale and range of each metric (``scales``: metric name -> ``benchmark.scales.Scale``)."""
    tags = {}
    for metric, scale in scales.items():
        tags[metric_scale(metric)] = scale.name
        tags[metric_range(metric)] = scale.range_text
    return tags


def cell_param_count(cell: str) -> str:
    """``param_count.gru``: the run's network with this cell instead of its own."""
    return f"{PARAM_COUNT}.{cell}"


def flag(value: bool) -> str:
    """Booleans as tags hold them."""
    return str(bool(value)).lower()


def is_true(value: str | None) -> bool:
    return value == "true"


def kind_of(tags: Mapping[str, str]) -> str:
    return tags.get(Tag.KIND) or RunKind.RUN


def describe(error: BaseException) -> str:
    """``TypeName: message``, as failure reasons read."""
    return f"{type(error).__name__}: {error}"


def fact_params(facts: Mapping[str, Any]) -> dict[str, str]:
    """A task's facts as params: scalars as text, lists and mappings as JSON, cut to MLflow's limit."""
    out = {}
    for name, value in facts.items():
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        out[FACT_PREFIX + name] = text[:MAX_PARAM_CHARS]
    return out


def references_tag(references: list[Mapping[str, Any]]) -> dict[str, str]:
    """``{references: JSON}`` for a run whose config names published numbers; no tag when it names none."""
    return {Tag.REFERENCES: json.dumps(list(references))} if references else {}


def read_references(text: str | None) -> list[dict[str, Any]]:
    """The reference rows a run's ``references`` tag holds ([] when it has none)."""
    return json.loads(text) if text else []


def create_run(
    client: MlflowClient, experiment_id: str, kind: str, name: str, tags: Mapping[str, str], parent_run_id: str | None = None
) -> str:
    """Start a run of ``kind`` (nested under ``parent_run_id`` if given); returns its id."""
    tags = {Tag.KIND: kind, **tags} | ({Tag.PARENT_RUN: parent_run_id} if parent_run_id else {})
    return client.create_run(experiment_id, run_name=name, tags=dict(tags)).info.run_id


def end_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    """End a run FINISHED, FAILED or KILLED; a reason is kept in its ``failure_reason`` tag."""
    if reason is not None:
        client.set_tag(run_id, Tag.FAILURE_REASON, reason[:MAX_TAG_CHARS])
    client.set_terminated(run_id, status)
