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
