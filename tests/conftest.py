"""Shared fixtures and helpers: every test runs in its own temporary directory with its own MLflow store.

Helpers used by several test modules live here (import them as ``from tests.conftest import ...``):
``REPO_ROOT``, ``make_spec``/``make_inputs`` (a probe task spec and inputs for model tests),
``DivergingAdding`` and the ``diverging_task`` fixture (a registered task whose loss is NaN).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.metrics import cross_entropy_loss
from benchmark.task import TASKS, Batch, InputKind, Metric, OutputKind, TaskSpec
from tasks.synthetic import Adding

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


def make_spec(output_kind: OutputKind, input_kind: InputKind = InputKind.CONTINUOUS) -> TaskSpec:
    """A task spec with 5 inputs (or a vocabulary of 5) and 3 outputs, for model tests without data."""
    return TaskSpec(
        name="probe",
        version="1",
        input_kind=input_kind,
        input_size=5,
        output_kind=output_kind,
        num_outputs=3,
        loss=cross_entropy_loss,
        metrics=(Metric("m", lambda o, b: o.new_zeros(len(b)), True),),
        main_metric="m",
        padding_idx=0 if input_kind is InputKind.TOKENS else None,
    )


def make_inputs(spec: TaskSpec, batch: int = 4, steps: int = 7) -> torch.Tensor:
    if spec.input_kind is InputKind.TOKENS:
        return torch.randint(1, spec.input_size, (batch, steps))
    return torch.randn(batch, steps, spec.input_size)


class DivergingAdding(Adding):
    """The adding problem with NaN targets: the loss is NaN from the first step."""

    name = "adding_nan"

    def sample(self, n, generator, device):
        batch = super().sample(n, generator, device)
        return Batch(batch.inputs, torch.full_like(batch.targets, float("nan")))


@pytest.fixture
def diverging_task():
    """``adding_nan`` registered for the test only."""
    with TASKS.temporarily({DivergingAdding.name: DivergingAdding}):
        yield DivergingAdding.name


class PostgresDatabases:
    """Fresh PostgreSQL databases for one test, dropped after it: ``create(name)``, or ``adopt(name)`` one made otherwise."""

    def __init__(self, conn):
        self.conn, self.names = conn, []

    def create(self, name: str) -> str:
        self.conn.cursor().execute(f"CREATE DATABASE {name}")
        return self.adopt(name)

    def adopt(self, name: str) -> str:
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        for name in self.names:
            self.conn.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres():
    """``PostgresDatabases`` on 127.0.0.1:5432 (user postgres, trust); skipped where none is reachable."""
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed")
    try:
        conn = psycopg2.connect("dbname=postgres user=postgres host=127.0.0.1 port=5432 connect_timeout=3")
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432: {e}")
    conn.autocommit = True
    dbs = PostgresDatabases(conn)
    yield dbs
    dbs.drop_all()
    conn.close()
