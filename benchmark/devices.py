"""What a measurement needs from its device: clocks that wait for queued GPU work, a memory peak, and what the CPU is.

CUDA runs kernels asynchronously: a clock read without ``synchronize`` times their launch, not
their work. The memory peak is the CUDA caching allocator's high-water mark since the last
``reset_peak_memory`` (one run's, one call's); a CPU has no allocator statistics, so there a run
reports the process's peak resident set, which cannot be reset.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import resource
from pathlib import Path

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new high-water mark on a CUDA device, so ``peak_memory_mb`` covers what follows only."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """MB at the high-water mark: CUDA allocator since ``reset_peak_memory``; CPU: the process's peak RSS."""
    if device.type == "cuda":
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@functools.cache
def cpu_description() -> str:
    """``AMD EPYC, x86_64, AVX512``: the CPU's model and the instruction set torch's kernels picked. Two machines
    that differ in either round floats differently, so the same seed can give a test metric a last digit (or, on an
    accuracy, a test item) apart."""
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")  # fmt: skip
    return ", ".join(p for p in (model, platform.machine(), torch.backends.cpu.get_cpu_capability()) if p)
