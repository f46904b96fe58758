"""Every registered task: its batches match its spec; the synthetic tasks' baselines are right."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.config import ConfigError
from benchmark.metrics import IGNORE_INDEX
from benchmark.task import TASKS, Batch, InputKind, OutputKind, create_task


def _first(loader):
    return next(iter(loader))


@pytest.mark.parametrize("name", TASKS.names())
def test_batches_match_spec(name, tmp_path):
    task = create_task(name, **TASKS.get(name).smoke_options(tmp_path))
    spec = task.spec()
    assert spec.name == name and spec.version
    dm = task.datamodule(batch_size=8, seed=0)
    if hasattr(dm, "prepare_data"):
        dm.prepare_data()
    dm.setup("fit")
    train = dm.on_after_batch_transfer(_first(dm.train_dataloader()), 0)
    val = dm.on_after_batch_transfer(_first(dm.val_dataloader()), 0)
    for batch in (train, val):
        assert isinstance(batch, Batch)
        n = len(batch)
        assert 0 < n <= 8
        if spec.input_kind is InputKind.TOKENS:
            assert batch.inputs.dtype == torch.long and batch.inputs.dim() == 2
            assert 0 <= batch.inputs.min() and batch.inputs.max() < spec.input_size
        else:
            assert batch.inputs.is_floating_point() and batch.inputs.shape[-1] == spec.input_size
        assert batch.inputs.shape[0] == n
        if batch.lengths is not None:
            assert batch.lengths.shape == (n,) and batch.lengths.min() >= 1
            assert batch.lengths.max() <= batch.inputs.shape[1]
        if spec.output_kind is OutputKind.SEQUENCE_REGRESSION:
            assert batch.targets.shape == (n, spec.num_outputs) and batch.targets.is_floating_point()
        elif spec.output_kind is OutputKind.SEQUENCE_CLASSIFICATION:
            assert batch.targets.shape == (n,)
            assert 0 <= batch.targets.min() and batch.targets.max() < spec.num_outputs
        elif spec.output_kind is OutputKind.STEP_REGRESSION:
            assert batch.targets.shape == (*batch.inputs.shape[:2], spec.num_outputs) and batch.targets.is_floating_point()
        else:
            assert batch.targets.shape == batch.inputs.shape[:2]
            scored = batch.targets[batch.targets != IGNORE_INDEX]
            assert 0 <= scored.min() and scored.max() < spec.num_outputs
    assert spec.baseline is None or set(spec.baseline.values) <= {m.name for m in spec.metrics}


@pytest.mark.parametrize("name", TASKS.names())
def test_dataset_info_names_every_split_and_is_stable(name, tmp_path):
    """What MLflow logs as the run's data sets: each split once, its size, a digest that a reload reproduces."""
    options = TASKS.get(name).smoke_options(tmp_path)
    task = create_task(name, **options)
    task.spec()
    info = task.dataset_info()
    if info is None:  # a task may describe no data set
        return
    assert info.name and info.source_type in ("local", "hub", "generator") and info.source
    assert set(info.splits) == {"train", "val", "test"}
    assert all(s.size > 0 and len(s.digest) == 12 for s in info.splits.values())
    assert len({s.digest for s in info.splits.values()}) == 3
    again = create_task(name, **options)
    again.spec()
    assert again.dataset_info() == info
    assert task.data_name is None or task.data_name in task.label or info.source_type == "generator"


def test_validation_set_is_fixed_across_seeds_and_training_data_is_not():
    task = create_task("adding", seq_len=10, val_size=32)
    a, b = task.datamodule(16, seed=0), task.datamodule(16, seed=1)
    assert torch.equal(_first(a.val_dataloader()).inputs, _first(b.val_dataloader()).inputs)
    ta = a.on_after_batch_transfer(0, 0)
    tb = b.on_after_batch_transfer(0, 0)
    assert not torch.equal(ta.inputs, tb.inputs)
    again = task.datamodule(16, seed=0).on_after_batch_transfer(0, 0)
    assert torch.equal(ta.inputs, again.inputs)  # same seed, same stream


def test_adding_problem_data_and_baseline():
    task = create_task("adding", seq_len=20)
    batch = task.sample(20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    markers = batch.inputs[..., 1]
    assert torch.all(markers.sum(1) == 2)
    assert torch.all(markers[:, :10].sum(1) == 1)  # one marker in each half
    assert torch.allclose((batch.inputs[..., 0] * markers).sum(1, keepdim=True), batch.targets)
    baseline_mse = ((batch.targets - 1) ** 2).mean().item()
    assert abs(baseline_mse - task.spec().baseline.values["mse"]) < 0.01


def test_copy_memory_layout_and_memoryless_baseline():
    task = create_task("copy_memory", delay=15)
    spec = task.spec()
    batch = task.sample(64, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert batch.inputs.shape == (64, 35) and batch.targets.shape == (64, 35)
    assert torch.equal(batch.targets[:, -10:], batch.inputs[:, :10])  # recall the first ten symbols
    assert torch.all(batch.inputs[:, 24] == 9)  # delimiter after T-1 blanks
    assert torch.all(batch.targets[:, :-10] == 0)
    # the memoryless strategy (blank, then uniform over the 8 symbols) scores exactly the baseline
    logits = torch.full((64, 35, spec.num_outputs), -1e9)
    logits[:, :-10, 0] = 0
    logits[:, -10:, 1:] = 0
    ce = spec.metric("cross_entropy").fn(logits, batch).mean().item()
    assert math.isclose(ce, spec.baseline.values["cross_entropy"], rel_tol=1e-5)
    assert math.isclose(ce, 10 * math.log(8) / 35, rel_tol=1e-5)


def test_unknown_task_option_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"unknown key 'task.seq_le'. Did you mean 'task.seq_len'\?"):
        create_task("adding", seq_le=5)
    with pytest.raises(ConfigError, match=r"invalid value for 'task.seq_len'"):
        create_task("adding", seq_len=1)


def test_anbn_strings_and_labels():
    task = create_task("anbn", seq_len=20)
    batch = task.sample(500, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert batch.lengths.max() <= 20 and batch.lengths.min() >= 2
    for tokens, length, label in zip(batch.inputs, batch.lengths, batch.targets):
        string = "".join(" ab"[t] for t in tokens[:length].tolist())
        assert set(tokens[length:].tolist()) <= {0}  # only padding past the length
        a, b = string.count("a"), string.count("b")
        assert string == "a" * a + "b" * b and a >= 1 and b >= 1
        assert label.item() == int(a == b)
        assert abs(a - b) <= 2
    assert 0.35 < batch.targets.float().mean() < 0.65  # balanced classes
