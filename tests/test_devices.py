"""The logic the GPU path shares with the CPU, tested on the CPU: clocks that wait for the device, the
memory peak and its reset per run, speech features computed on the waves' device. ``torch.cuda``'s
calls are recorded instead of made (no device here); ``tests/test_cuda.py`` runs them for real."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from benchmark import devices
from benchmark.config import load_run_config
from benchmark.record import RunMetric
from benchmark.runner import ThroughputMeter, execute_run
from benchmark.task import TASKS, create_task


@pytest.fixture
def cuda_calls(monkeypatch) -> list:
    """torch.cuda's synchronize and memory statistics, recorded instead of called (no device here)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("synchronize", device)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: calls.append(("peak", device)) or 3 * 2**20)
    return calls


def test_cuda_clocks_and_peaks_wait_for_the_device_and_cpu_ones_do_not(cuda_calls):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    devices.synchronize(cuda)
    devices.reset_peak_memory(cuda)
    assert devices.peak_memory_mb(cuda) == 3.0
    assert cuda_calls == [("synchronize", cuda), ("synchronize", cuda), ("reset", cuda), ("synchronize", cuda), ("peak", cuda)]
    cuda_calls.clear()
    devices.synchronize(cpu)
    devices.reset_peak_memory(cpu)
    assert devices.peak_memory_mb(cpu) > 10 and cuda_calls == []  # the process's peak RSS, in MB


def test_the_runs_stopwatch_synchronises_before_every_reading(cuda_calls, monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr("benchmark.runner.time.perf_counter", lambda: cuda_calls.append("clock") or float(next(ticks)))
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), sanity_checking=False, training=True)
    meter = ThroughputMeter()
    meter.on_train_epoch_start(trainer, None)
    meter.on_train_batch_end(trainer, None, None, [0] * 8, 0)
    meter.on_validation_start(trainer, None)
    meter.on_validation_end(trainer, None)
    meter.on_train_epoch_end(trainer, SimpleNamespace(log=lambda *a, **k: None))
    readings = [i for i, c in enumerate(cuda_calls) if c == "clock"]
    assert len(readings) == 4 and all(cuda_calls[i - 1] == ("synchronize", trainer.strategy.root_device) for i in readings)
    assert meter.seconds == 2.0 and meter.seq_per_s == 4.0  # two training stretches of one tick; 8 sequences


def test_each_run_resets_the_memory_peak_on_its_training_device(tiny_overrides, monkeypatch):
    resets = []
    monkeypatch.setattr(devices, "reset_peak_memory", resets.append)
    result = execute_run(load_run_config(None, ["task=adding", "model=gru", "model.hidden_size=4", *tiny_overrides]))
    assert result.status == "FINISHED" and resets == [torch.device("cpu")]
    assert result.metrics[RunMetric.PEAK_MEMORY] > 10


def test_speech_features_are_computed_where_the_waves_are(tmp_path):
    """'meta' stands in for a GPU: the extractor follows the batch's device, and so does everything computed from it."""
    task = create_task("speech", **TASKS.get("speech").smoke_options(tmp_path))
    task.spec()
    on_cpu, elsewhere = task.datamodule(batch_size=4, seed=0), task.datamodule(batch_size=4, seed=0)
    waves, samples, targets = next(iter(on_cpu.val_dataloader()))
    expected = on_cpu.on_after_batch_transfer((waves, samples, targets), 0)
    assert expected.inputs.device.type == "cpu" and on_cpu.extractor.mel_fb.device.type == "cpu"
    batch = elsewhere.on_after_batch_transfer((waves.to("meta"), samples.to("meta"), targets.to("meta")), 0)
    assert elsewhere.extractor.mel_fb.device.type == "meta" and batch.inputs.device.type == "meta" and batch.lengths.device.type == "meta"
    assert batch.inputs.shape == expected.inputs.shape
