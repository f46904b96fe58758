"""The README's "Add a task" example is real code: it registers, and its batches match its spec."""

from __future__ import annotations

import re
import sys

import torch

from benchmark.task import TASKS, create_task
from tests.conftest import REPO_ROOT


def test_add_a_task_example_works(tmp_path, monkeypatch):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Add a task", 1)[1]
    code = re.search(r"```python\n(# tasks/(\w+)\.py\n.*?)```", section, re.S)
    assert code, "the 'Add a task' section lost its example"
    (tmp_path / "readme_task.py").write_text(code.group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "readme_task", raising=False)
    with TASKS.temporarily():  # the example's registration ends with the test
        __import__("readme_task")
        name = code.group(2)
        task = create_task(name, seq_len=8)
        spec = task.spec()
        batch = task.datamodule(batch_size=16, seed=0).on_after_batch_transfer(0, 0)
        assert batch.inputs.shape == (16, 8, spec.input_size)
        assert torch.equal(batch.targets, batch.inputs.squeeze(-1).long().sum(1) % 2)
    assert name not in TASKS


def test_add_a_cell_example_trains_with_lengths():
    from benchmark.models import CELLS, MODELS

    readme = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# my_cells\.py.*?)```", readme.split("## Add a cell", 1)[1], re.S)
    assert code, "the 'Add a cell' section lost its example"
    with CELLS.temporarily(), MODELS.temporarily():  # the example's registrations end with the test
        exec(compile(code.group(1), "README.md", "exec"), {})
        check_indrnn()
    assert "indrnn" not in CELLS and "indrnn" not in MODELS


def check_indrnn():
    from benchmark.config import ModelConfig
    from benchmark.models import parameter_count, resolve_architecture
    from benchmark.models.reference import ReferenceRecurrent
    from tasks.synthetic import Adding

    torch.manual_seed(0)
    module = ReferenceRecurrent("indrnn", 3, 4, num_layers=2, bidirectional=True)
    p = module.layer_parameters(0, 0)
    x = torch.randn(2, 5, 3)
    h, expected = torch.zeros(2, 4), []
    for t in range(5):
        h = torch.relu(x[:, t] @ p["weight_ih"].T + p["bias_ih"] + p["weight_hh"] * h)
        expected.append(h)
    single = ReferenceRecurrent("indrnn", 3, 4)
    single.load_state_dict({k: v for k, v in module.state_dict().items() if k.endswith("_l0")})
    assert (single(x)[0] - torch.stack(expected, 1)).abs().max() <= 1e-6
    out, _ = module(x, torch.tensor([5, 2]))
    assert (out[1, :2] - module(x[1:, :2])[0][0]).abs().max() <= 1e-6 and torch.all(out[1, 2:] == 0)
    spec = Adding().spec()
    arch = resolve_architecture(spec, ModelConfig(name="indrnn", param_budget=5000))
    assert arch.impl == "loop" and abs(parameter_count(spec, arch) - 5000) <= 5  # 4H + 1 per unit of H
