"""The GPU path: cuDNN against the step loop, packing, bf16, determinism, device features, sweeps, metrics.

Marked ``cuda``; ``make gpu-check`` runs them on a CUDA machine (``pytest -m cuda tests/test_cuda.py``).
Where ``torch.cuda.is_available()`` is false they are collected and skipped, saying so.
``RNNBENCH_CUDA_TESTS_DEVICE=cpu`` runs the same tests on the CPU (bf16 autocast included), which
checks the tests themselves on a machine without a GPU.

Tolerances, in float32 with TF32 off for every comparison (torch >= 2.9 runs cuDNN RNNs in TF32 by
default): cuDNN against the step loop of the same weights, outputs and final states <= 1e-5 and
gradients <= 1e-4 of the largest gradient (at least 1); step loop against scan <= 1e-4 (as on CPU)
and against the compiled loop <= 1e-5 (gradients as above); a sequence inside a padded, packed batch
against the same sequence alone <= 1e-5; speech features on the device against the CPU's within
0.01 dB (+ 1e-4 relative), and 1e-3 after normalisation.
"""

from __future__ import annotations

import math
import os

import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from benchmark import record, speed, tracking
from benchmark.config import ModelConfig, load_run_config
from benchmark.models import CELLS, MODELS, RecurrentNetwork, resolve_architecture
from benchmark.models.reference import ReferenceRecurrent, as_reference
from benchmark.record import RunMetric, Tag
from benchmark.runner import execute_run
from benchmark.sweep import load_sweep_config, run_sweep
from benchmark.task import TASKS, OutputKind, create_task
from tasks.speech.features import FeatureExtractor
from tests.conftest import make_spec
from tests.test_speech import FAST, RATE, write_folder

DEVICE = torch.device(os.environ.get("RNNBENCH_CUDA_TESTS_DEVICE", "cuda"))
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False): `make gpu-check` runs these on a GPU machine"

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason=NO_CUDA)]

TORCH_VARIANTS = [n for n in MODELS.names() if CELLS.get(MODELS.get(n).cell).torch_module]
STEP_CELLS = [n for n, c in CELLS.items() if c.torch_module is None]
SCAN_CELLS = [n for n, c in CELLS.items() if c.scan]


@pytest.fixture
def full_fp32():
    """Full float32 in cuDNN RNNs and cuBLAS matmuls while comparing implementations."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9; mixing in the legacy flags is an error there
        flags, value = [(torch.backends.cudnn.rnn, "fp32_precision"), (torch.backends.cuda.matmul, "fp32_precision")], "ieee"
    else:
        flags, value = [(torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")], False
    saved = [getattr(owner, name) for owner, name in flags]
    for owner, name in flags:
        setattr(owner, name, value)
    yield
    for (owner, name), old in zip(flags, saved):
        setattr(owner, name, old)


@pytest.fixture
def restores_determinism(monkeypatch):
    """Lightning's ``deterministic=True`` switches process-wide flags on; the tests after this one get them back off."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"))
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module: creating a SQLite store costs seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('cuda') / 'mlflow.db'}"


def close(a: torch.Tensor, b: torch.Tensor, tolerance: float, relative: bool = False) -> bool:
    scale = max(1.0, b.abs().max().item()) if relative else 1.0
    return (a - b).abs().max().item() <= tolerance * scale


def as_lengths(lengths: list[int] | None) -> torch.Tensor | None:
    return None if lengths is None else torch.tensor(lengths)


# ----------------------------------------------------------------------------- implementations agree


@pytest.mark.parametrize("name", TORCH_VARIANTS)
@pytest.mark.parametrize("lengths", [None, [20, 7, 13, 1, 20, 9]], ids=["full", "packed"])
def test_cudnn_equals_the_step_loop_forward_and_gradients(name, lengths, full_fp32):
    torch.manual_seed(0)
    spec = make_spec(OutputKind.STEP_CLASSIFICATION)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name=name, hidden_size=32))).to(DEVICE)
    cudnn = net.encoder.rnn
    ref = as_reference(cudnn)  # the same weights, copied, on the same device
    x = torch.randn(6, 20, spec.input_size, device=DEVICE, requires_grad=True)
    out, last = net.encoder(x, as_lengths(lengths))  # packed when lengths are given
    ref_out, ref_h = ref(x, as_lengths(lengths))
    ref_last = torch.cat(list(ref_h[-net.arch.directions :]), -1)
    assert close(out, ref_out, 1e-5) and close(last, ref_last, 1e-5)
    w_out, w_last = torch.randn_like(out), torch.randn_like(last)  # every output weighs differently in the loss
    names = [n for n, _ in cudnn.named_parameters()]
    grads = torch.autograd.grad((out * w_out).sum() + (last * w_last).sum(), [x, *(getattr(cudnn, n) for n in names)])
    ref_grads = torch.autograd.grad((ref_out * w_out).sum() + (ref_last * w_last).sum(), [x, *(ref.weights[n] for n in names)])
    for label, g, r in zip(["input", *names], grads, ref_grads):
        assert close(g, r, 1e-4, relative=True), (name, label, (g - r).abs().max().item())


def _twins(name: str, impl: str, layers: int) -> tuple[ReferenceRecurrent, ReferenceRecurrent]:
    torch.manual_seed(0)
    loop = ReferenceRecurrent(name, 5, 16, num_layers=layers, bidirectional=True, impl="loop").to(DEVICE)
    with torch.no_grad():  # wider than the default init, so the gates leave their linear range
        for p in loop.weights.values():
            p.uniform_(-0.6, 0.6)
    other = ReferenceRecurrent(name, 5, 16, num_layers=layers, bidirectional=True, impl=impl).to(DEVICE)
    other.load_state_dict(loop.state_dict())
    return loop.eval(), other.eval()


def _outputs_and_gradients(module: ReferenceRecurrent, x: torch.Tensor, lengths: torch.Tensor):
    out, h_n = module(x, lengths)
    return (out, h_n, *torch.autograd.grad(out.sum() + h_n.square().sum(), [x, *module.parameters()]))


@pytest.mark.parametrize("name", SCAN_CELLS)
def test_scan_equals_the_step_loop_on_the_device(name, full_fp32):
    loop, scan = _twins(name, "scan", layers=2)
    x = torch.randn(6, 33, 5, device=DEVICE, requires_grad=True)
    lengths = torch.tensor([33, 1, 17, 33, 8, 2])
    for a, b in zip(_outputs_and_gradients(loop, x, lengths), _outputs_and_gradients(scan, x, lengths)):
        assert close(a, b, 1e-4)


@pytest.mark.parametrize("name", STEP_CELLS)
def test_compiled_step_equals_the_step_loop_on_the_device(name, full_fp32):
    unavailable = speed.compile_unavailable(DEVICE)
    if unavailable:
        pytest.skip(unavailable)
    loop, compiled = _twins(name, "compiled", layers=1)  # one layer: each extra layer input size is another graph to compile
    x = torch.randn(4, 9, 5, device=DEVICE, requires_grad=True)
    lengths = torch.tensor([9, 3, 6, 9])
    expected, got = _outputs_and_gradients(loop, x, lengths), _outputs_and_gradients(compiled, x, lengths)
    assert close(got[0], expected[0], 1e-5) and close(got[1], expected[1], 1e-5)
    assert all(close(g, e, 1e-4, relative=True) for g, e in zip(got[2:], expected[2:]))


@pytest.mark.parametrize("name", MODELS.names())
def test_padding_never_leaks_on_the_device(name, full_fp32):
    """A sequence inside a padded batch (packed for cuDNN, masked for the step loop and scan) equals it alone, unpadded."""
    torch.manual_seed(0)
    spec = make_spec(OutputKind.STEP_CLASSIFICATION)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name=name, hidden_size=16))).to(DEVICE).eval()
    lengths = torch.tensor([12, 5, 1, 9])
    x = torch.randn(4, 12, spec.input_size, device=DEVICE)
    x = torch.where(torch.arange(12, device=DEVICE)[None, :, None] < lengths.to(DEVICE)[:, None, None], x, 1e3)  # loud padding
    with torch.no_grad():
        out, last = net.encoder(x, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone_out, alone_last = net.encoder(x[b : b + 1, :n])
            assert close(out[b, :n], alone_out[0], 1e-5) and close(last[b], alone_last[0], 1e-5), (name, b)
            assert torch.all(out[b, n:] == 0)


# ----------------------------------------------------------------------------- training on the device


def _run_config(task: str, model: str, store: str, workdir, *overrides: str):
    options = TASKS.get(task).smoke_options(workdir)
    cfg = load_run_config(None, [f"task={task}", f"model={model}", "model.hidden_size=8", "train.batch_size=8",
                                 "train.max_epochs=2", f"train.accelerator={DEVICE.type}", "train.devices=1",
                                 f"tracking.tracking_uri={store}", "tracking.experiment=cuda", *overrides])  # fmt: skip
    return cfg.model_copy(update={"task": cfg.task.model_validate({"name": task, **options})})


BF16_RUNS = [(task, "gru") for task in TASKS.names()] + [("adding", "lstm"), ("adding", "cifg"), ("adding", "mingru-2l"), ("anbn", "bilstm")]


@pytest.mark.parametrize("task, model", BF16_RUNS)
def test_short_bf16_mixed_training_on_the_device(task, model, store, tmp_path):
    result = execute_run(_run_config(task, model, store, tmp_path, "train.precision=bf16-mixed"))
    assert result.status == record.FINISHED, result.failure
    run = MlflowClient(store).get_run(result.run_id)
    assert run.data.tags[Tag.DEVICE] == tracking.device_name(DEVICE)
    assert run.data.params["train.precision"] == "bf16-mixed"
    main = run.data.tags[Tag.MAIN_METRIC]
    for metric in (record.on_test(main), RunMetric.THROUGHPUT, RunMetric.PEAK_MEMORY, RunMetric.TRAIN_TIME):
        assert math.isfinite(run.data.metrics[metric]), metric
    assert run.data.metrics[RunMetric.THROUGHPUT] > 0 and run.data.metrics[RunMetric.PEAK_MEMORY] > 0


@pytest.mark.parametrize("task, model", [("adding", "lstm"), ("copy_memory", "gru"), ("anbn", "bigru"), ("speech", "gru"), ("adding", "cifg")])
def test_deterministic_runs_are_equal_on_the_device(task, model, store, tmp_path, restores_determinism):
    results = [execute_run(_run_config(task, model, store, tmp_path, "train.deterministic=true", "seed=3")) for _ in range(2)]
    assert all(r.status == record.FINISHED for r in results), [r.failure for r in results]
    scores = [{k: v for k, v in r.metrics.items() if k.startswith(record.on_test("")) or k.startswith("best_val/")} for r in results]
    assert scores[0] and scores[0] == scores[1]


def test_a_runs_peak_memory_is_its_own(store, tmp_path):
    if DEVICE.type != "cuda":
        pytest.skip("the CUDA allocator's peak; a CPU run reports the process's peak RSS, which cannot be reset")
    big = torch.empty(512 * 2**20, dtype=torch.uint8, device=DEVICE)  # 512 MB before the run
    del big
    result = execute_run(_run_config("adding", "gru", store, tmp_path))
    assert result.status == record.FINISHED, result.failure
    assert 0 < result.metrics[RunMetric.PEAK_MEMORY] < 256


def test_sweep_trials_report_to_the_pruner_on_the_device(store, tmp_path):
    config = {
        "name": "cuda-sweep", "tasks": [{"name": "adding", "seq_len": 8, "train_size": 128, "val_size": 32, "test_size": 32}],
        "models": ["gru"], "n_trials": 3, "model": {"hidden_size": 8},
        "train": {"batch_size": 32, "max_epochs": 3, "accelerator": DEVICE.type, "devices": 1},
        "pruner": {"name": "median", "n_startup_trials": 1}, "sampler": "random",
        "tracking": {"tracking_uri": store, "experiment": "cuda-sweep"}, "storage_dir": str(tmp_path / "optuna"),
        "search_space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
    }  # fmt: skip
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    sweep = load_sweep_config(path)
    (outcome,) = run_sweep(sweep)
    assert outcome.reached_target and outcome.failed == 0 and outcome.complete + outcome.pruned == 3
    study = optuna.load_study(study_name=outcome.plan.name, storage=sweep.storage_url())
    assert all(t.intermediate_values for t in study.trials)  # the pruning callback saw every trial's validation
    mlflow = MlflowClient(store)
    children = mlflow.search_runs([mlflow.get_experiment_by_name("cuda-sweep").experiment_id], f"tags.`{Tag.KIND}` = 'trial'")
    assert len(children) == 3 and {r.data.tags[Tag.DEVICE] for r in children} == {tracking.device_name(DEVICE)}


@pytest.mark.parametrize("mode", speed.MODES)
def test_speed_times_and_measures_memory_on_the_device(mode):
    row = speed.measure("lstm", speed.Shape(64, 8, 16), "torch", mode, DEVICE, 1, 0.01)
    for value in (row.median_ms, row.seq_per_s, row.peak_memory_mb, row.first_call_s):
        assert math.isfinite(value) and value > 0, row


# ----------------------------------------------------------------------------- speech features on the device


def test_speech_features_on_the_device_equal_the_cpus(tmp_path, full_fp32):
    """On chirps with noise (test_speech's audio): every band has power far above float32 FFT rounding."""
    write_folder(tmp_path / "audio")
    for normalize in ("utterance", "dataset"):
        task = create_task("speech", **FAST, path=str(tmp_path / "audio"), normalize=normalize)
        task.spec()
        on_cpu, on_dev = task.datamodule(batch_size=8, seed=0), task.datamodule(batch_size=8, seed=0)
        raw = next(iter(on_cpu.val_dataloader()))
        expected = on_cpu.on_after_batch_transfer(raw, 0)
        got = on_dev.on_after_batch_transfer([t.to(DEVICE) for t in raw], 0)
        assert got.inputs.device.type == DEVICE.type and on_dev.extractor.mel_fb.device.type == DEVICE.type
        assert torch.equal(got.lengths.cpu(), expected.lengths)
        torch.testing.assert_close(got.inputs.cpu(), expected.inputs, atol=1e-3, rtol=0)
    waves = on_cpu.splits["train"].tensors[0][:8].float() / 32768.0
    for n_mfcc in (None, 10):  # raw log-mel (dB) and MFCC, before any normalisation
        extractor = FeatureExtractor(RATE, 256, 128, n_mels=20, n_mfcc=n_mfcc)
        expected = extractor(waves)
        got = extractor.to(DEVICE)(waves.to(DEVICE)).cpu()
        torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-4)
