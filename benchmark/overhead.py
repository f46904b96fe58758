"""Framework overhead: the full framework against a minimal PyTorch loop, same work, same process.

    rnnbench speed --overhead                    # adding T=50, gru, batch 64, CPU
    rnnbench speed --overhead --steps 200 --repeats 7

Both paths train the same ``RecurrentNetwork`` on the same task sampler with the same optimizer,
learning rate and gradient clipping for the same number of steps. The framework path is
``execute_run`` (Lightning, MLflow logging into a temporary store, the on-device synthetic data
path); its training throughput is the run's own ``throughput_seq_per_s``, which counts training
steps only (validation excluded). The plain loop is timed over its training steps the same way.
Runs alternate (framework, plain, plain, framework, ...) so drift in a shared machine's load hits
both alike; the ratio is of the medians.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmark import devices, record
from benchmark.config import ModelConfig, RunConfig, TaskConfig, TrackingConfig, TrainConfig
from benchmark.lightning_module import OPTIMIZERS
from benchmark.models import RecurrentNetwork, resolve_architecture
from benchmark.record import RunMetric
from benchmark.task import create_task


@dataclass
class OverheadResult:
    framework_seq_per_s: list[float] = field(default_factory=list)
    plain_seq_per_s: list[float] = field(default_factory=list)
    framework_cpu_s: list[float] = field(default_factory=list)  # process CPU seconds of the training steps
    plain_cpu_s: list[float] = field(default_factory=list)
    framework_wall_s: list[float] = field(default_factory=list)  # whole execute_run: set-up, validation, test
    plain_wall_s: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Training throughput, framework / plain, of the medians over repeats."""
        return statistics.median(self.framework_seq_per_s) / statistics.median(self.plain_seq_per_s)

    @property
    def cpu_ratio(self) -> float:
        """The same ratio from process CPU time, which other processes' load on a shared machine barely moves."""
        return statistics.median(self.plain_cpu_s) / statistics.median(self.framework_cpu_s)

    @property
    def pair_ratios(self) -> list[float]:
        return [f / p for f, p in zip(self.framework_seq_per_s, self.plain_seq_per_s)]


def run_config(
    task: str, model: str, batch: int, steps: int, seed: int, tracking_uri: str, options: dict, device: torch.device
) -> RunConfig:
    """One epoch of ``steps`` training steps; tiny validation and test sets (they are not timed)."""
    return RunConfig(
        task=TaskConfig(name=task, train_size=steps * batch, val_size=batch, test_size=batch, **options),
        model=ModelConfig(name=model),
        train=TrainConfig(batch_size=batch, max_epochs=1, accelerator=device.type, devices=1),
        tracking=TrackingConfig(tracking_uri=tracking_uri, experiment="overhead"),
        seed=seed,
    )


def plain_loop(cfg: RunConfig, device: torch.device) -> tuple[float, float, float]:
    """The same training with nothing but PyTorch; returns (training seq/s, training CPU s, wall s)."""
    started = time.perf_counter()
    task = create_task(cfg.task.name, **cfg.task.options)
    spec = task.spec()
    torch.manual_seed(cfg.seed)
    network = RecurrentNetwork(spec, resolve_architecture(spec, cfg.model)).to(device)
    optimizer = OPTIMIZERS[cfg.train.optimizer](network.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003)
    steps = cfg.task.options["train_size"] // cfg.train.batch_size
    devices.synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        batch = task.sample(cfg.train.batch_size, generator, device)
        loss = spec.loss(network(batch.inputs, batch.lengths), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip:
            nn.utils.clip_grad_norm_(network.parameters(), cfg.train.grad_clip)
        optimizer.step()
    devices.synchronize(device)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return steps * cfg.train.batch_size / seconds, cpu, time.perf_counter() - started


def measure_overhead(
    task: str = "adding",
    model: str = "gru",
    batch: int = 64,
    steps: int = 100,
    repeats: int = 5,
    options: dict | None = None,
    on_repeat=None,
    device: torch.device | None = None,
) -> OverheadResult:
    """Alternate framework and plain runs ``repeats`` times after one discarded warm-up pair."""
    from benchmark.runner import ThroughputMeter, execute_run

    options = {"seq_len": 50} if options is None and task == "adding" else (options or {})
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = OverheadResult()
    with tempfile.TemporaryDirectory(prefix="rnnbench-overhead-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        for r in range(repeats + 1):
            cfg = run_config(task, model, batch, steps, r, uri, options, device)
            order = ("framework", "plain") if r % 2 == 0 else ("plain", "framework")
            for path in order:
                if path == "framework":
                    meter = ThroughputMeter()
                    run = execute_run(cfg, meter=meter)
                    if run.status != record.FINISHED:
                        raise RuntimeError(f"framework run failed: {run.failure}")
                    seq_per_s, cpu, wall = run.metrics[RunMetric.THROUGHPUT], meter.cpu_seconds, run.metrics[RunMetric.WALL_TIME]
                else:
                    seq_per_s, cpu, wall = plain_loop(cfg, device)
                if r == 0:  # warm-up: imports, MLflow store creation, allocator and thread-pool start-up
                    continue
                getattr(result, f"{path}_seq_per_s").append(seq_per_s)
                getattr(result, f"{path}_cpu_s").append(cpu)
                getattr(result, f"{path}_wall_s").append(wall)
            if r and on_repeat:
                on_repeat(r, result)
    return result


def summary_lines(result: OverheadResult, task: str, model: str, batch: int, steps: int, threads: int) -> list[str]:
    med = statistics.median
    return [
        f"framework overhead: {task} / {model}, batch {batch}, {steps} steps x {len(result.plain_seq_per_s)} repeats "
        f"(alternating, after a warm-up pair), {threads} thread(s)",
        f"  framework (execute_run: Lightning + MLflow + on-device data): {med(result.framework_seq_per_s):,.0f} seq/s "
        f"training (runner's throughput_seq_per_s, validation excluded); whole run {med(result.framework_wall_s):.2f} s",
        f"  plain PyTorch loop (same network, sampler, optimizer, clipping): {med(result.plain_seq_per_s):,.0f} seq/s; "
        f"whole loop {med(result.plain_wall_s):.2f} s",
        f"  per-repeat ratios: {', '.join(f'{r:.3f}' for r in result.pair_ratios)}",
        f"  training CPU time ratio plain/framework: {result.cpu_ratio:.3f} (process CPU seconds; robust to other load)",
        f"throughput ratio framework/plain: {result.ratio:.3f} (median seq/s over repeats)",
    ]
