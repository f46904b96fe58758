"""Execute one run (task x model x seed) under Lightning and record it in MLflow.

    python -m benchmark run task=adding model=lstm seed=1 train.max_epochs=5
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from mlflow.entities import RunStatus, RunTag

from benchmark import tracking
from benchmark.config import RunConfig, flatten
from benchmark.lightning_module import RecurrentTaskModule
from benchmark.models import RecurrentNetwork, count_parameters, resolve_architecture
from benchmark.task import create_task

for _noisy in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*number of training batches.*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")


DEFAULT_CPU_THREADS = torch.get_num_threads()


@dataclass
class RunResult:
    run_id: str
    status: str  # FINISHED, FAILED or KILLED (MLflow's run statuses)
    label: str
    model: str
    seed: int
    param_count: int
    metrics: dict[str, float] = field(default_factory=dict)
    failure: str | None = None


class ThroughputMeter(Callback):
    """Training-only wall time (validation excluded) and sequences per second."""

    def __init__(self):
        self.samples, self.seconds, self._since = 0, 0.0, None

    def _now(self, trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":  # time finished kernels, not queued ones
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def _stop(self, trainer) -> None:
        if self._since is not None:
            self.seconds += self._now(trainer) - self._since
            self._since = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._since = self._now(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += len(batch)

    def on_validation_start(self, trainer, pl_module):
        self._stop(trainer)

    def on_validation_end(self, trainer, pl_module):
        if trainer.training:
            self._since = self._now(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._stop(trainer)
        if self.seconds > 0:
            pl_module.log("train/seq_per_s", self.samples / self.seconds, on_epoch=True, sync_dist=False)

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
        shown = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        info = " ".join(f"{k[4:]}={v:.4g}" for k, v in sorted(shown.items()))
        self.progress.update(self.task_id, completed=trainer.global_step, info=f"epoch {trainer.current_epoch} {info}")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process high-water mark (Linux: KiB)


def execute_run(
    cfg: RunConfig,
    *,
    progress=None,
    progress_task=None,
    extra_tags: dict | None = None,
    callbacks: list[Callback] = (),
    passthrough: tuple[type[BaseException], ...] = (),
) -> RunResult:
    """Train, validate and test one configuration; the MLflow run ends FINISHED, FAILED or KILLED.

    Exceptions are recorded on the run and returned as a FAILED result, except those listed in
    ``passthrough`` (e.g. ``optuna.TrialPruned``), which end the run KILLED and propagate.
    ``extra_tags`` may carry ``mlflow.parentRunId`` to nest the run under a parent.
    A datamodule with a ``pipeline_metrics()`` method has its numbers logged with the run's.
    """
    started = time.perf_counter()
    torch.set_num_threads(cfg.train.cpu_threads or DEFAULT_CPU_THREADS)  # per run: a suite may mix settings
    task = create_task(cfg.task.name, **cfg.task.options)
    spec = task.spec()
    arch = resolve_architecture(spec, cfg.model)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    network = RecurrentNetwork(spec, arch)
    params = count_parameters(network)
    module = RecurrentTaskModule(network, spec, cfg.train)
    datamodule = task.datamodule(cfg.train.batch_size, cfg.seed)

    mlflow = tracking.client(cfg.tracking.tracking_uri)
    exp_id = tracking.experiment_id(mlflow, cfg.tracking.experiment)
    run_key = cfg.run_key()
    if (extra_tags or {}).get("kind", "run") == "run":  # trials are reaped by the sweep's heartbeat instead
        tracking.mark_abandoned(mlflow, exp_id, run_key)
    main = spec.metric(spec.main_metric)
    tags = {
        "kind": "run",
        "task": spec.name,
        "task_label": task.label,
        "task_version": spec.version,
        "model": cfg.model.name,
        "cell": arch.cell,
        "bidirectional": str(arch.bidirectional).lower(),
        "layers": str(arch.num_layers),
        "hidden": str(arch.hidden_size),
        "param_count": str(params),
        "seed": str(cfg.seed),
        "run_key": run_key,
        "main_metric": main.name,
        "higher_is_better": str(main.higher_is_better).lower(),
        **(extra_tags or {}),
    }
    run = mlflow.create_run(exp_id, run_name=f"{task.label}/{cfg.model.name}/seed{cfg.seed}", tags=tags)
    run_id = run.info.run_id
    result = RunResult(run_id, "RUNNING", task.label, cfg.model.name, cfg.seed, params)
    try:
        logger = tracking.RunLogger(
            experiment_name=cfg.tracking.experiment, tracking_uri=cfg.tracking.tracking_uri, run_id=run_id
        )
        logger.log_hyperparams(
            flatten(cfg.model_dump(mode="json")) | flatten(arch.as_dict(), "arch.") | {"param_count": params}
        )
        if spec.baseline:
            logger.log_metrics({f"baseline/{k}": v for k, v in spec.baseline.values.items()})
        meter = ThroughputMeter()
        with tempfile.TemporaryDirectory(prefix="rnnbench-ckpt-") as ckpt_dir:
            mode = "max" if main.higher_is_better else "min"
            checkpoint = ModelCheckpoint(dirpath=ckpt_dir, monitor=f"val/{main.name}", mode=mode, save_weights_only=True)
            callbacks = [meter, checkpoint, *callbacks]
            if cfg.train.early_stopping_patience:
                callbacks.append(
                    EarlyStopping(f"val/{main.name}", mode=mode, patience=cfg.train.early_stopping_patience)
                )
            if progress is not None:
                callbacks.append(ProgressReporter(progress, progress_task))
            trainer = L.Trainer(
                max_epochs=cfg.train.max_epochs,
                accelerator=cfg.train.accelerator,
                devices=cfg.train.devices,
                strategy=cfg.train.strategy,
                precision=cfg.train.precision,
                gradient_clip_val=cfg.train.grad_clip,
                deterministic=cfg.train.deterministic,
                logger=logger,
                callbacks=callbacks,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                default_root_dir=ckpt_dir,
            )
            device = trainer.strategy.root_device
            mlflow.log_batch(run_id, tags=[RunTag(k, v) for k, v in tracking.environment_tags(device).items()])
            trainer.fit(module, datamodule=datamodule)
            fit_seconds = time.perf_counter() - started
            tested = trainer.test(module, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
        best = checkpoint.best_model_score
        summary = {
            "param_count": params,
            "throughput_seq_per_s": meter.seq_per_s,
            "train_time_s": meter.seconds,
            "fit_time_s": fit_seconds,
            "wall_time_s": time.perf_counter() - started,
            "epochs_trained": trainer.current_epoch,
            "peak_memory_mb": peak_memory_mb(device),
            f"best_val/{main.name}": float(best) if best is not None else float("nan"),
            **(datamodule.pipeline_metrics() if hasattr(datamodule, "pipeline_metrics") else {}),
        }
        logger.log_metrics(summary)
        result.metrics = {k: float(v) for k, v in tested.items()} | summary
        mlflow.set_terminated(run_id, "FINISHED")
        result.status = "FINISHED"
    except passthrough as e:
        mlflow.set_tag(run_id, "failure_reason", f"{type(e).__name__}: {e}"[:5000])
        mlflow.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except Exception as e:  # recorded, not raised: one failed run must not stop a suite
        result.status, result.failure = "FAILED", f"{type(e).__name__}: {e}"
        mlflow.set_tag(run_id, "failure_reason", result.failure[:5000])
        mlflow.set_terminated(run_id, "FAILED")
    except BaseException:  # Ctrl+C or a kill: record it, then stop
        mlflow.set_tag(run_id, "failure_reason", "interrupted")
        mlflow.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    return result
