"""Kernel speed of the recurrent cells, DeepBench style: forward and forward+backward over shapes.

    rnnbench speed                                   # CPU grid (about 4-5 min on 2 cores shared by a dozen jobs)
    rnnbench speed --cells gru lstm --hidden 128 512 --seq-len 25 50 100
    rnnbench speed --preset cells                    # every cell, every implementation it has
    rnnbench speed --preset scan                     # minGRU/minLSTM: scan vs step loop, T = 64 ... 4096
    rnnbench speed --preset deepbench --device cuda  # DeepBench's training shapes (GPU)

Each configuration is one recurrent module (input size = hidden size, as DeepBench), batch-first
input ``(batch, seq_len, hidden)``, timed by ``torch.utils.benchmark.Timer`` (warm-up, blocked
repeats, median and IQR; it synchronizes CUDA around each block). "forward" runs with autograd
recording, as in training; "forward+backward" adds the backward pass to the input and weights.
Implementations, each where the cell has it: ``torch`` (``torch.nn.RNN/GRU/LSTM``: cuDNN on GPU,
oneDNN/ATen on CPU), ``loop`` (``benchmark.models.reference``'s step loop over the cell's
equations), ``compiled`` (that loop with the step function ``torch.compile``-d) and ``scan``
(minGRU/minLSTM's parallel log-space scan); ``auto`` is each cell's training default.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils import benchmark as tbench

from benchmark import devices
from benchmark.config import ConfigError
from benchmark.models import CELLS, MODELS
from benchmark.models.reference import ReferenceRecurrent

IMPLS = ("torch", "loop", "compiled", "scan")
# "cpu" = process CPU time: on a shared, oversubscribed CPU it leaves out the time other processes
# hold the cores (and, with several threads, it sums them). "wall" is the usual choice.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
COMPILE_BUDGET_S = 60.0  # total warm-up (compile) time after which "compiled" rows are skipped
MODES = ("forward", "forward+backward")


@dataclass(frozen=True)
class Shape:
    hidden: int
    batch: int
    seq_len: int


def grid(hidden, batch, seq_len) -> tuple[Shape, ...]:
    """Every combination of the given hidden sizes, batch sizes and sequence lengths."""
    return tuple(Shape(h, b, t) for h, b, t in itertools.product(hidden, batch, seq_len))


def select(shapes, hidden=None, batch=None, seq_len=None) -> tuple[Shape, ...]:
    """The shapes whose hidden size, batch and length are each among those given (an axis not given: any)."""
    wanted = {"hidden": hidden, "batch": batch, "seq_len": seq_len}
    return tuple(s for s in shapes if all(not values or getattr(s, axis) in values for axis, values in wanted.items()))


# DeepBench's RNN training set (baidu-research/DeepBench, code/kernels/rnn_problems.h): its
# (hidden, batch, timesteps) shapes, run here for every selected cell so GRU and LSTM meet on each.
_DEEPBENCH = (
    [(h, b, 50) for h in (1760, 2048, 2560) for b in (16, 32, 64, 128)]
    + [(h, b, 25) for h in (512, 1024, 2048, 4096) for b in (16, 32, 64, 128)]
    + [(1536, b, 50) for b in (8, 16, 32)]
    + [(256, b, 150) for b in (16, 32, 64)]
    + [(h, 32, t) for h in (2816, 2048, 1536, 2560) for t in (750, 375, 187)]
    + [(2048, 32, 1500), (1536, 32, 1500), (2560, 32, 1500), (512, 32, 1), (1024, 32, 1500), (1024, 64, 1500)]
)
# CPU: a cross around H=128, B=32, T=32 (three points along T and along H), to stay ~2-3 minutes.
PRESETS: dict[str, dict] = {
    "cpu": {
        "shapes": (Shape(128, 32, 16), Shape(128, 32, 32), Shape(128, 32, 64), Shape(64, 32, 32), Shape(256, 32, 32)),
        "cells": ("rnn", "gru", "lstm", "bigru", "bilstm", "gru-2l", "lstm-2l"),
        "impls": ("torch", "loop", "compiled"),
    },
    # every cell (its one-layer variant) in every implementation it has, at the cpu preset's centre
    "cells": {
        "shapes": (Shape(128, 32, 32),),
        "cells": tuple(sorted(CELLS.names())),
        "impls": IMPLS,
    },
    # where the parallel scan beats the step loop: T from 64 to 4096 at three batch sizes
    "scan": {
        "shapes": tuple(Shape(128, b, t) for b in (1, 8, 32) for t in (64, 128, 256, 512, 1024, 2048, 4096)),
        "cells": ("mingru", "minlstm"),
        "impls": ("loop", "scan"),
    },
    "deepbench": {
        "shapes": tuple(Shape(*s) for s in _DEEPBENCH),
        "cells": ("rnn", "gru", "lstm"),
        "impls": ("auto",),  # cuDNN for rnn/gru/lstm; any other cell on its training implementation
    },
}


def implementations(model: str, requested: list[str]) -> list[str]:
    """The requested implementations the model's cell has (``auto``: its default), in order."""
    cell = CELLS.get(MODELS.get(model).cell)
    wanted = [cell.default_impl if i == "auto" else i for i in requested]
    return [i for i in dict.fromkeys(wanted) if i in cell.impls]


def plan(models: list[str], shapes: list[Shape], impls: list[str]) -> list[tuple[str, str, Shape]]:
    """(impl, model, shape) to time, impl-major; a model with none of ``impls`` is an error."""
    for model in models:
        if not implementations(model, impls):
            cell = CELLS.get(MODELS.get(model).cell)
            raise ConfigError(f"--impls {' '.join(impls)}: model '{model}' has none of them. Its implementations: {', '.join(cell.impls)}")
    order = [i for i in dict.fromkeys(CELLS.get(MODELS.get(m).cell).default_impl if i == "auto" else i for i in impls for m in models)]
    return [(impl, model, shape) for impl in order for model in models for shape in shapes if impl in implementations(model, impls)]


@dataclass
class Measurement:
    device: str
    threads: int
    torch_version: str
    impl: str
    model: str
    cell: str
    layers: int
    bidirectional: bool
    hidden: int
    batch: int
    seq_len: int
    mode: str
    median_ms: float = math.nan
    iqr_ms: float = math.nan
    runs: int = 0
    seq_per_s: float = math.nan
    peak_memory_mb: float = math.nan
    first_call_s: float = math.nan  # warm-up call: includes compilation for "compiled"
    clock: str = "wall"
    note: str = ""


# ----------------------------------------------------------------------------- environment


def device_label(device: torch.device, threads: int) -> str:
    """Short, file-name-safe: ``cpu-2threads`` or ``cuda-nvidia-h100-80gb-hbm3``."""
    if device.type == "cuda":
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")
    return f"cpu-{threads}threads"


def file_stem(device: torch.device, threads: int, preset: str = "cpu") -> str:
    """timm-style result name: which preset (other than cpu), where it was measured and with which torch."""
    name = "speed" if preset == "cpu" else f"speed-{preset}"
    return f"{name}-{device_label(device, threads)}-torch{torch.__version__.split('+')[0]}"


def describe_device(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    return f"CPU {devices.cpu_description()}, {threads} thread(s)"


# ----------------------------------------------------------------------------- one configuration


def build(model: str, shape: Shape, impl: str, device: torch.device) -> torch.nn.Module:
    variant = MODELS.get(model)
    if impl == "torch":
        module = CELLS.get(variant.cell).torch_module(
            shape.hidden, shape.hidden, num_layers=variant.num_layers, bidirectional=variant.bidirectional, batch_first=True
        )
    else:
        module = ReferenceRecurrent(variant.cell, shape.hidden, shape.hidden, variant.num_layers, variant.bidirectional, impl=impl)
    return module.to(device)


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run here, or None."""
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        return "n/a: torch.compile on CPU needs a C++ compiler (none on PATH)"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "n/a: torch.compile on CUDA needs triton"
    return None


def step_function(module: torch.nn.Module, shape: Shape, mode: str, device: torch.device):
    x = torch.randn(shape.batch, shape.seq_len, shape.hidden, device=device, requires_grad=mode != "forward")

    def forward():
        return module(x)[0]

    if mode == "forward":
        return forward
    grad = torch.ones(shape.batch, shape.seq_len, shape.hidden * (2 if _bidirectional(module) else 1), device=device)

    def forward_backward():
        forward().backward(grad)

    return forward_backward


def _bidirectional(module) -> bool:
    return getattr(module, "bidirectional", False) or getattr(module, "directions", 1) == 2


@contextlib.contextmanager
def _native_stderr_silenced():
    """Kineto prints two "USDT: profiler_start/stop" lines from C++ per profile; no setting turns them off."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(fn, device: torch.device) -> float:
    """Memory allocated by one call above what was allocated before it.

    CUDA: the caching allocator's peak (``max_memory_allocated``). CPU: the peak of the torch
    profiler's memory timeline (every tensor allocation and free on the CPU), since CPU tensors
    have no allocator statistics and RSS hides reuse inside malloc.
    """
    if device.type == "cuda":
        devices.reset_peak_memory(device)
        before = torch.cuda.memory_allocated(device) / 2**20
        fn()
        return devices.peak_memory_mb(device) - before
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memory.json"
        with warnings.catch_warnings():  # deprecated for CUDA snapshots; still the CPU timeline
            warnings.simplefilter("ignore", FutureWarning)
            prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    totals = [sum(row) for row in sizes]
    return (max(totals) - totals[0]) / 2**20 if totals else math.nan


def measure(
    model: str,
    shape: Shape,
    impl: str,
    mode: str,
    device: torch.device,
    threads: int,
    min_run_time: float,
    memory: bool = True,
    clock: str = "wall",
) -> Measurement:
    variant = MODELS.get(model)
    row = Measurement(
        device=describe_device(device, threads),
        threads=threads,
        torch_version=torch.__version__,
        impl=impl,
        model=model,
        cell=variant.cell,
        layers=variant.num_layers,
        bidirectional=variant.bidirectional,
        hidden=shape.hidden,
        batch=shape.batch,
        seq_len=shape.seq_len,
        mode=mode,
        clock=clock,
    )
    fn = step_function(build(model, shape, impl, device), shape, mode, device)
    started = time.perf_counter()
    fn()
    devices.synchronize(device)
    row.first_call_s = time.perf_counter() - started
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, timer=CLOCKS[clock], label=model, description=impl)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    row.median_ms, row.iqr_ms, row.runs = m.median * 1e3, m.iqr * 1e3, len(m.times)
    row.seq_per_s = shape.batch / m.median
    if memory:
        row.peak_memory_mb = peak_memory_mb(fn, device)
    return row


# ----------------------------------------------------------------------------- the grid


def run_grid(
    models: list[str],
    shapes: list[Shape],
    impls: list[str],
    device: torch.device,
    threads: int,
    min_run_time: float = 0.1,
    memory: bool = True,
    on_row=None,
    clock: str = "wall",
    compile_budget_s: float = COMPILE_BUDGET_S,
) -> list[Measurement]:
    """Every model x shape x impl (that the model has) x mode; a failing configuration becomes a row with a ``note``."""
    torch.set_num_threads(threads)
    rows: list[Measurement] = []
    unavailable = compile_unavailable(device) if "compiled" in impls else None
    compile_s = 0.0
    for (impl, model, shape), mode in itertools.product(plan(models, shapes, impls), MODES):
        try:
            if impl == "compiled" and unavailable:
                raise _NotAvailable(unavailable)
            if impl == "compiled" and compile_s > compile_budget_s:
                raise _NotAvailable(f"n/a: skipped, torch.compile warm-ups took {compile_s:.0f} s (> {compile_budget_s:.0f} s budget)")
            # memory of the torch and scan paths only: the profiler pass over a Python loop costs more than its timing
            row = measure(model, shape, impl, mode, device, threads, min_run_time, memory and impl in ("torch", "scan"), clock)
            if impl == "compiled":
                compile_s += row.first_call_s
        except Exception as e:  # one broken configuration must not end the benchmark
            variant = MODELS.get(model)
            note = str(e) if isinstance(e, _NotAvailable) else f"n/a: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            row = Measurement(
                describe_device(device, threads), threads, torch.__version__, impl, model, variant.cell,
                variant.num_layers, variant.bidirectional, shape.hidden, shape.batch, shape.seq_len, mode, clock=clock, note=note,
            )
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


class _NotAvailable(RuntimeError):
    pass


def as_dicts(rows: list[Measurement]) -> list[dict]:
    return [asdict(r) for r in rows]
