"""Execute one run (task x model x seed) under Lightning and record it in MLflow.

    python -m benchmark run task=adding model=lstm seed=1 train.max_epochs=5
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from mlflow.entities import RunTag
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from benchmark import dashboard, devices, record, tracking
from benchmark.checkpoint import log_checkpoint
from benchmark.config import HELD, ConfigError, RunConfig, TrainConfig, flatten
from benchmark.lightning_module import RecurrentTaskModule
from benchmark.models import Architecture, RecurrentNetwork, count_parameters, parameter_count, resolve_architecture
from benchmark.record import RunMetric, Tag
from benchmark.task import DatasetInfo, Metric, Task, TaskSpec, create_task

for _noisy in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*number of training batches.*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")


DEFAULT_CPU_THREADS = torch.get_num_threads()
LOG_WIDTH = 200  # columns of output written to a file or pipe: tables stay one row per line


@dataclass
class RunResult:
    run_id: str
    status: str  # FINISHED, FAILED or KILLED (MLflow's run statuses); RUNNING: left to the live process training it
    label: str
    model: str
    seed: int
    param_count: int
    metrics: dict[str, float] = field(default_factory=dict)
    failure: str | None = None


class ThroughputMeter(Callback):
    """The run's stopwatch: training-only wall and process CPU time (validation excluded),
    sequences trained, and epochs whose validation completed (a pruned epoch counts)."""

    def __init__(self):
        self.samples, self.seconds, self.cpu_seconds, self.epochs = 0, 0.0, 0.0, 0
        self._since: tuple[float, float] | None = None

    def _now(self, trainer) -> tuple[float, float]:
        devices.synchronize(trainer.strategy.root_device)  # time finished kernels, not queued ones
        return time.perf_counter(), time.process_time()

    def _stop(self, trainer) -> None:
        if self._since is not None:
            wall, cpu = self._now(trainer)
            self.seconds += wall - self._since[0]
            self.cpu_seconds += cpu - self._since[1]
            self._since = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._since = self._now(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += len(batch)

    def on_validation_start(self, trainer, pl_module):
        self._stop(trainer)

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.epochs += 1
        if trainer.training:
            self._since = self._now(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._stop(trainer)
        if self.seconds > 0:
            pl_module.log(record.TRAIN_SEQ_PER_S, self.samples / self.seconds, on_epoch=True, sync_dist=False)

    @property
    def seq_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")


class ProgressReporter(Callback):
    """Moves a ``rich`` progress bar along the training steps; redraws stay off the hot path."""

    def __init__(self, progress, task_id, every: int = 10):
        self.progress, self.task_id, self.every = progress, task_id, every

    def on_train_start(self, trainer, pl_module):
        self.progress.update(self.task_id, total=trainer.estimated_stepping_batches, completed=0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            self.progress.update(self.task_id, completed=trainer.global_step)

    def on_validation_end(self, trainer, pl_module):
        prefix = record.on_val("")
        shown = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}
        info = " ".join(f"{k[len(prefix):]}={v:.4g}" for k, v in sorted(shown.items()))
        self.progress.update(self.task_id, completed=trainer.global_step, info=f"epoch {trainer.current_epoch} {info}")


def make_console() -> Console:
    """The CLI's console: the terminal's width in a terminal; ``LOG_WIDTH`` columns into a file or pipe
    (rich would wrap every table cell at 80), unless ``COLUMNS`` says otherwise."""
    return Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=LOG_WIDTH)


def progress_bar(console: Console) -> Progress:
    """The progress display of ``rnnbench run`` and ``suite``: one line per run, plus the suite's.

    Off when the console is not a terminal: a log gets ``print_result``'s one line per run instead
    of redrawn bars.
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not console.is_terminal,
    )


def print_result(console: Console, r: RunResult) -> None:
    """One line per finished run: its test metrics and costs, or why it failed."""
    name = escape(f"{r.label} {r.model} seed={r.seed}")  # labels hold [...], which rich reads as markup
    if r.status != record.FINISHED:
        colour = "yellow" if r.status == record.RUNNING else "red"
        console.print(f"[{colour}]x {name}: {r.status} - {escape(r.failure or '')}[/]")
        return
    prefix = record.on_test("")
    tests = " ".join(f"{k}={v:.4g}" for k, v in r.metrics.items() if k.startswith(prefix))
    console.print(
        f"[green]ok[/] {name}: {tests}  params={r.param_count:,}  "
        f"{r.metrics[RunMetric.THROUGHPUT]:,.0f} seq/s  {r.metrics[RunMetric.WALL_TIME]:.1f}s"
    )


@dataclass
class PreparedRun:
    """Everything known about a run before its MLflow record starts: task, network, data."""

    cfg: RunConfig
    task: Task
    spec: TaskSpec
    arch: Architecture
    module: RecurrentTaskModule
    datamodule: L.LightningDataModule
    params: int

    @property
    def main(self) -> Metric:
        return self.spec.metric(self.spec.main_metric)

    def tags(self) -> dict[str, str]:
        """The tags a run carries from its start (``record.RUN_TAGS`` and the rest of the identity)."""
        return {
            Tag.TASK: self.spec.name,
            Tag.TASK_LABEL: self.task.label,
            Tag.TASK_VERSION: self.spec.version,
            Tag.MODEL: self.cfg.model.name,
            Tag.CELL: self.arch.cell,
            Tag.BIDIRECTIONAL: record.flag(self.arch.bidirectional),
            Tag.LAYERS: str(self.arch.num_layers),
            Tag.HIDDEN: str(self.arch.hidden_size),
            Tag.PARAM_COUNT: str(self.params),
            Tag.SEED: str(self.cfg.seed),
            Tag.RUN_KEY: self.cfg.run_key(),
            Tag.MAIN_METRIC: self.main.name,
            Tag.HIGHER_IS_BETTER: record.flag(self.main.higher_is_better),
            Tag.LENGTH_FACT: self.spec.length_fact or "",
        } | record.scale_tags({m.name: m.scale for m in self.spec.metrics}) | record.references_tag(
            self.cfg.model_dump(mode="json")["references"]
        )

    def note(self, data: DatasetInfo | None) -> str:
        """The run's one-paragraph description (MLflow's ``mlflow.note.content``): task, model, budget, seed, data, scoring."""
        cfg, a, t, main = self.cfg, self.arch, self.cfg.train, self.main
        network = (
            f"{'bidirectional ' if a.bidirectional else ''}{a.cell.upper()}, {a.num_layers} layer{'s' if a.num_layers > 1 else ''}, "
            f"hidden {a.hidden_size}{' per direction' if a.bidirectional else ''}, {self.params:,} parameters"
        )
        budget = f"at most {t.max_epochs} epochs of batches of {t.batch_size}, {t.optimizer} (lr {t.lr:g}, {t.lr_schedule} schedule)"
        if t.early_stopping_patience:
            budget += f", stopping after {t.early_stopping_patience} epochs without progress"
        if data is not None:
            where = next((str(data.source[k]) for k in ("path", "hub", "generator", "files") if data.source.get(k)), data.source_type)
            sizes = ", ".join(f"{split} {s.size:,}" for split, s in data.splits.items())
            data_text = f"Data: {data.name} ({data.source_type}: {where}); examples per split: {sizes}."
        else:
            data_text = "Data: not described by the task."
        base = self.spec.baseline
        baseline = f"; trivial baseline {base.values[main.name]:.4g} ({base.description})" if base and main.name in base.values else ""
        return (
            f"**{cfg.model.name}** on **{self.task.label}**, seed {cfg.seed}: {network}. Budget: {budget}. {data_text} "
            f"Scored on the test split: {main.name} ({'higher' if main.higher_is_better else 'lower'} is better) with "
            f"the checkpoint of best validation {main.name}{baseline}. Rerun: `rnnbench run {record.CONFIG_ARTIFACT}` "
            "(this run's artifact)."
        )

    def log_params(self) -> dict:
        """The config flattened, the architecture, the parameter counts (own and per cell) and the task's facts."""
        per_cell = {record.cell_param_count(c): parameter_count(self.spec, replace(self.arch, cell=c)) for c in record.CELLS}
        return (
            flatten(self.cfg.model_dump(mode="json", exclude={"references"}))  # a tag instead: a list, and no setting
            | flatten(self.arch.as_dict(), record.ARCH_PREFIX)
            | {record.PARAM_COUNT: self.params}
            | per_cell
            | record.fact_params(self.spec.extra)
        )


def prepare(cfg: RunConfig) -> PreparedRun:
    """Build the task, network, Lightning module and datamodule (seeded); bad data fails here."""
    torch.set_num_threads(cfg.train.cpu_threads or DEFAULT_CPU_THREADS)  # per run: a suite may mix settings
    task = create_task(cfg.task.name, **cfg.task.options)
    spec = task.spec()
    arch = resolve_architecture(spec, cfg.model)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    network = RecurrentNetwork(spec, arch)
    module = RecurrentTaskModule(network, spec, cfg.train)
    return PreparedRun(cfg, task, spec, arch, module, task.datamodule(cfg.train.batch_size, cfg.seed), count_parameters(network))


def build_trainer(cfg: RunConfig, logger, callbacks: list[Callback], root_dir: str) -> L.Trainer:
    t = cfg.train
    return L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        gradient_clip_val=t.grad_clip,
        deterministic=t.deterministic,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root_dir,
    )


GPU_ACCELERATORS = ("gpu", "cuda", "mps")


def check_trainer(train: TrainConfig) -> None:
    """Lightning's device settings (accelerator, devices, strategy, precision), checked as its Trainer checks them,
    before any run is created: one ``ConfigError`` naming the settings, with Lightning's reason and choices."""
    settings = " ".join(f"train.{k}={getattr(train, k)}" for k in ("accelerator", "devices", "strategy", "precision"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(accelerator=train.accelerator, devices=train.devices, strategy=train.strategy, precision=train.precision,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if str(train.accelerator).lower() in GPU_ACCELERATORS and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            reason = f"no GPU found ({reason}); use train.accelerator=cpu or auto on this machine"
        raise ConfigError(f"{settings}: {reason}") from None


def execute_run(
    cfg: RunConfig,
    *,
    kind: str = record.RunKind.RUN,
    parent_run_id: str | None = None,
    extra_tags: dict | None = None,
    progress=None,
    progress_task=None,
    callbacks: list[Callback] = (),
    meter: ThroughputMeter | None = None,
    passthrough: tuple[type[BaseException], ...] = (),
    run_name: str | None = None,
) -> RunResult:
    """Train, validate and test one configuration; the MLflow run ends FINISHED, FAILED or KILLED.

    Exceptions are recorded on the run and returned as a FAILED result, except those listed in
    ``passthrough`` (e.g. ``optuna.TrialPruned``), which end the run KILLED and propagate.
    ``kind`` and ``parent_run_id`` say what the run is part of (see ``benchmark.record``); pass a
    ``meter`` to read the training time and epochs even when the run ends in an exception.
    A datamodule with a ``pipeline_metrics()`` method has its numbers logged with the run's.
    ``run_name`` defaults to ``model · s<seed> · <task>`` (``benchmark.dashboard``).
    """
    started = time.perf_counter()
    run = prepare(cfg)
    mlflow = tracking.client(cfg.tracking.tracking_uri)
    exp_id = tracking.experiment_id(mlflow, cfg.tracking.experiment)
    if kind == record.RunKind.RUN:  # trials are reaped by the sweep's heartbeat instead
        if live := tracking.mark_abandoned(mlflow, exp_id, cfg.run_key()):  # another process trains it: leave it
            return RunResult("", record.RUNNING, run.task.label, cfg.model.name, cfg.seed, run.params,
                             failure=f"running in {live[0]}; left to it")  # fmt: skip
    name = run_name or dashboard.run_name(cfg.model.name, cfg.seed, dashboard.short_labels([run.task])[0])
    data = run.task.dataset_info()
    tags = run.tags() | tracking.source_tags() | tracking.Lease.tags() | {record.Tag.NOTE: run.note(data)} | (extra_tags or {})
    HELD.release()
    run_id = record.create_run(mlflow, exp_id, kind, name, tags, parent_run_id)
    result = RunResult(run_id, record.RUNNING, run.task.label, cfg.model.name, cfg.seed, run.params)
    try:
        _describe(mlflow, run_id, cfg, data)
        with tracking.Lease(mlflow, run_id):
            result.metrics = _train_and_test(run, run_id, started, meter or ThroughputMeter(), [*callbacks], progress, progress_task)
        record.end_run(mlflow, run_id, record.FINISHED)
        result.status = record.FINISHED
    except passthrough as e:
        record.end_run(mlflow, run_id, record.KILLED, record.describe(e))
        raise
    except Exception as e:  # recorded, not raised: one failed run must not stop a suite
        result.status, result.failure = record.FAILED, record.describe(e)
        record.end_run(mlflow, run_id, record.FAILED, result.failure)
    except BaseException:  # Ctrl+C or a kill: record it, then stop
        record.end_run(mlflow, run_id, record.KILLED, "interrupted")
        raise
    return result


def _describe(mlflow, run_id: str, cfg: RunConfig, data: DatasetInfo | None) -> None:
    """The run's data sets and its ``config.yaml`` (which ``rnnbench run`` reruns to the same run key)."""
    if data is not None:
        dashboard.log_datasets(mlflow, run_id, data)
    header = f"# rnnbench run {record.CONFIG_ARTIFACT}  (run key {cfg.run_key()}; relative paths are from where it first ran)\n"
    dashboard.log_yaml(mlflow, run_id, cfg.model_dump(mode="json"), record.CONFIG_ARTIFACT, header)


def _train_and_test(
    run: PreparedRun, run_id: str, started: float, meter: ThroughputMeter, callbacks: list[Callback], progress, progress_task
) -> dict[str, float]:
    """Fit with the best-validation checkpoint kept, test that checkpoint, log the run's summary metrics."""
    cfg, main = run.cfg, run.main
    mlflow = tracking.client(cfg.tracking.tracking_uri)
    logger = tracking.RunLogger(experiment_name=cfg.tracking.experiment, tracking_uri=cfg.tracking.tracking_uri, run_id=run_id)
    logger.log_hyperparams(run.log_params())
    if run.spec.baseline:
        logger.log_metrics({record.baseline(k): v for k, v in run.spec.baseline.values.items()})
    monitor, mode = record.on_val(main.name), "max" if main.higher_is_better else "min"
    with tempfile.TemporaryDirectory(prefix="rnnbench-ckpt-") as ckpt_dir:
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, monitor=monitor, mode=mode, save_weights_only=True)
        callbacks = [meter, checkpoint, *callbacks]
        if cfg.train.early_stopping_patience:
            callbacks.append(EarlyStopping(monitor, mode=mode, patience=cfg.train.early_stopping_patience))
        if progress is not None:
            callbacks.append(ProgressReporter(progress, progress_task))
        trainer = build_trainer(cfg, logger, callbacks, ckpt_dir)
        device = trainer.strategy.root_device
        devices.reset_peak_memory(device)  # this run's peak, not the process's (suites, sweeps, overhead)
        mlflow.log_batch(run_id, tags=[RunTag(k, v) for k, v in tracking.environment_tags(device).items()])
        trainer.fit(run.module, datamodule=run.datamodule)
        fit_seconds = time.perf_counter() - started
        tested = trainer.test(run.module, datamodule=run.datamodule, ckpt_path="best", verbose=False)[0]
    if cfg.tracking.log_checkpoint:  # the module now holds the tested (best-validation) weights
        log_checkpoint(mlflow, run_id, cfg, run.arch, run.module.network)
    best = checkpoint.best_model_score
    pipeline = getattr(run.datamodule, "pipeline_metrics", None)
    summary = {
        RunMetric.PARAM_COUNT: run.params,
        RunMetric.THROUGHPUT: meter.seq_per_s,
        RunMetric.TRAIN_TIME: meter.seconds,
        RunMetric.FIT_TIME: fit_seconds,
        RunMetric.WALL_TIME: time.perf_counter() - started,
        RunMetric.EPOCHS: trainer.current_epoch,
        RunMetric.PEAK_MEMORY: devices.peak_memory_mb(device),
        record.best_val(main.name): float(best) if best is not None else float("nan"),
        **(pipeline() if pipeline else {}),
    }
    logger.log_metrics(summary)
    return {k: float(v) for k, v in tested.items()} | summary
