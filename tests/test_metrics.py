"""Per-step and rescaled metrics against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from benchmark import metrics
from benchmark.config import ConfigError, ModelConfig
from benchmark.metrics import IGNORE_INDEX
from benchmark.models import resolve_architecture
from benchmark.task import Batch, InputKind, Metric, OutputKind, TaskSpec

NAN = float("nan")


def test_step_regression_errors_skip_nan_targets_and_average_per_sequence():
    output = torch.tensor([[[1.0], [2.0], [5.0]], [[0.0], [0.0], [0.0]]])
    targets = torch.tensor([[[0.0], [4.0], [NAN]], [[3.0], [NAN], [NAN]]])
    batch = Batch(torch.zeros(2, 3, 1), targets)
    # sequence 0: errors 1, -2 -> MSE 2.5, MAE 1.5; sequence 1: error -3 -> MSE 9, MAE 3
    assert metrics.step_squared_error(output, batch).tolist() == [2.5, 9.0]
    assert metrics.step_absolute_error(output, batch).tolist() == [1.5, 3.0]
    # the loss weights every scored entry alike: (1 + 4 + 9) / 3
    assert metrics.step_mse_loss(output, batch).item() == pytest.approx(14 / 3)


def test_step_mse_loss_gradient_is_finite_and_zero_on_unscored_steps():
    output = torch.zeros(1, 2, 1, requires_grad=True)
    metrics.step_mse_loss(output, Batch(torch.zeros(1, 2, 1), torch.tensor([[[1.0], [NAN]]]))).backward()
    assert output.grad.tolist() == [[[-2.0], [0.0]]]


def test_step_accuracy_ignores_padding_labels():
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    targets = torch.tensor([[1, 1, IGNORE_INDEX]])
    assert metrics.step_accuracy(logits, Batch(torch.zeros(1, 3, 1), targets)).tolist() == [0.5]


def test_absolute_error_and_rescaled_give_original_units():
    output, targets = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    batch = Batch(torch.zeros(1, 1, 1), targets)
    assert metrics.absolute_error(output, batch).tolist() == [1.5]
    scale = torch.tensor([10.0, 0.5])  # standardised targets times their std
    assert metrics.rescaled(metrics.squared_error, scale)(output, batch).tolist() == [(100 + 1) / 2]
    assert metrics.rescaled(metrics.absolute_error, scale)(output, batch).tolist() == [(10 + 1) / 2]


@pytest.mark.parametrize("name, refused", [("gru", False), ("bilstm", True)])
def test_causal_tasks_refuse_bidirectional_models(name, refused):
    spec = TaskSpec(
        name="forecasting", version="1", input_kind=InputKind.CONTINUOUS, input_size=2,
        output_kind=OutputKind.STEP_REGRESSION, num_outputs=2, loss=metrics.step_mse_loss,
        metrics=(Metric("mse", metrics.step_squared_error, False),), main_metric="mse", causal=True,
    )
    cfg = ModelConfig(name=name, hidden_size=4)
    if refused:
        with pytest.raises(ConfigError, match="bidirectional"):
            resolve_architecture(spec, cfg)
    else:
        assert not resolve_architecture(spec, cfg).bidirectional
