"""Shared fixtures: every test runs in its own temporary directory with its own MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)  # tiny models: threads cost more than they give, and xdist workers share 2 cores


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """MLflow puts default artifact folders under the working directory: keep them out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def mlflow_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def tiny_overrides(mlflow_uri) -> list[str]:
    """Overrides that make any synthetic run take about a second on CPU."""
    return [
        "task.train_size=256",
        "task.val_size=64",
        "task.test_size=64",
        "train.batch_size=32",
        "train.max_epochs=2",
        f"tracking.tracking_uri={mlflow_uri}",
        "tracking.experiment=test",
    ]
