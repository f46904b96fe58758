"""Every registered model variant: shapes, finiteness, gradients, sizing, LSTM forget bias."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import ConfigError, ModelConfig
from benchmark.models import MODELS, RecurrentNetwork, count_parameters, parameter_count, resolve_architecture
from benchmark.models.cells import CELLS
from benchmark.models.network import set_forget_bias
from benchmark.metrics import cross_entropy_loss
from benchmark.task import Batch, InputKind, Metric, OutputKind, TaskSpec
from tests.conftest import make_inputs, make_spec


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("output_kind", list(OutputKind))
@pytest.mark.parametrize("input_kind", list(InputKind))
def test_every_variant_forward_backward(name, output_kind, input_kind):
    torch.manual_seed(0)
    spec = make_spec(output_kind, input_kind)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name=name, hidden_size=8)))
    x = make_inputs(spec)
    lengths = torch.tensor([7, 3, 5, 1])
    for lens in (None, lengths):
        out = net(x, lens)
        expected = (4, 7, 3) if output_kind.per_step else (4, 3)
        assert out.shape == expected
        assert torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", MODELS.names())
def test_param_budget_reaches_budget(name):
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    arch = resolve_architecture(spec, ModelConfig(name=name, param_budget=20_000))
    count = parameter_count(spec, arch)
    assert abs(count - 20_000) / 20_000 < 0.05, (name, arch.hidden_size, count)
    # the solver picks the closest hidden size: one unit more or less is no closer
    for h in (arch.hidden_size - 1, arch.hidden_size + 1):
        other = parameter_count(spec, resolve_architecture(spec, ModelConfig(name=name, hidden_size=h)))
        assert abs(other - 20_000) >= abs(count - 20_000)


def test_parameter_count_is_exact_and_gru_is_three_quarters_of_lstm_recurrence():
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    h, f = 16, spec.input_size
    counts = {}
    for name in ("rnn", "gru", "lstm"):
        arch = resolve_architecture(spec, ModelConfig(name=name, hidden_size=h))
        counts[name] = parameter_count(spec, arch)
        assert counts[name] == count_parameters(RecurrentNetwork(spec, arch))  # meta count == real count
    head = h * 3 + 3
    recurrent = {n: c - head for n, c in counts.items()}
    assert recurrent["rnn"] == h * f + h * h + 2 * h
    assert recurrent["gru"] == 3 * recurrent["rnn"]
    assert recurrent["lstm"] == 4 * recurrent["rnn"]


def test_hidden_size_and_budget_together_is_an_error():
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    with pytest.raises(ConfigError, match="not both"):
        resolve_architecture(spec, ModelConfig(name="gru", hidden_size=8, param_budget=1000))


@pytest.mark.parametrize("name", [n for n in MODELS.names() if CELLS.get(MODELS.get(n).cell).forget_bias_block])
def test_lstm_effective_forget_bias(name):
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name=name, hidden_size=6, forget_bias=2.5)))
    block, sign = CELLS.get(MODELS.get(name).cell).forget_bias_block
    rows = slice(6 * block, 6 * (block + 1))
    params = dict(net.encoder.rnn.named_parameters())
    layers = [n.rsplit("bias_ih", 1)[1] for n in params if "bias_ih" in n]
    assert len(layers) == net.arch.num_layers * net.arch.directions
    for suffix in layers:
        b_ih = next(v for k, v in params.items() if k.endswith("bias_ih" + suffix))
        b_hh = next((v for k, v in params.items() if k.endswith("bias_hh" + suffix)), torch.zeros_like(b_ih))
        effective = b_ih + b_hh
        assert torch.allclose(effective[rows], torch.full((6,), sign * 2.5))
        assert not torch.allclose(effective[:6] if block else effective[6:12], torch.full((6,), sign * 2.5))  # other gates untouched


def test_set_forget_bias_changes_only_forget_gate():
    lstm = torch.nn.LSTM(3, 4, num_layers=2)
    before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    set_forget_bias(lstm, 0.7)
    for layer in ("l0", "l1"):
        b_ih, b_hh = getattr(lstm, f"bias_ih_{layer}"), getattr(lstm, f"bias_hh_{layer}")
        assert torch.equal(b_ih[4:8], torch.full((4,), 0.7))  # gate order i, f, g, o: f is [H, 2H)
        assert torch.equal(b_hh[4:8], torch.zeros(4))  # so the effective forget bias is exactly 0.7
        for bias, name in ((b_ih, f"bias_ih_{layer}"), (b_hh, f"bias_hh_{layer}")):
            assert torch.equal(bias[:4], before[name][:4]) and torch.equal(bias[8:], before[name][8:])
    for name, param in lstm.named_parameters():
        if name.startswith("weight"):
            assert torch.equal(param, before[name])


def test_bidirectional_last_state_uses_backward_state_at_step_zero():
    torch.manual_seed(0)
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name="bigru", hidden_size=4)))
    x = torch.randn(2, 6, 5)
    lengths = torch.tensor([6, 4])
    outputs, last = net.encoder(x, lengths)
    # forward half: output at each sequence's last valid step; backward half: output at step 0
    assert torch.allclose(last[0, :4], outputs[0, 5, :4]) and torch.allclose(last[1, :4], outputs[1, 3, :4])
    assert torch.allclose(last[:, 4:], outputs[:, 0, 4:])
    assert torch.all(outputs[1, 4:] == 0)  # nothing computed on padding


def test_sequence_batch_length_is_number_of_examples():
    b = Batch(torch.zeros(3, 5, 2), torch.zeros(3, 1))
    assert len(b) == 3


def test_param_budget_below_the_smallest_model_is_an_error():
    spec = make_spec(OutputKind.SEQUENCE_CLASSIFICATION, InputKind.TOKENS)  # embedding alone: 5 x 32
    with pytest.raises(ConfigError, match=r"model.param_budget=100 is below the smallest 'gru'"):
        resolve_architecture(spec, ModelConfig(name="gru", param_budget=100))


def test_recurrent_budget_scope_leaves_the_embedding_out():
    spec = TaskSpec(
        name="tok", version="1", input_kind=InputKind.TOKENS, input_size=5000, output_kind=OutputKind.SEQUENCE_CLASSIFICATION,
        num_outputs=2, loss=cross_entropy_loss, metrics=(Metric("accuracy", lambda o, b: o, True),), main_metric="accuracy",
    )
    with pytest.raises(ConfigError, match="below the smallest 'gru'.*embedding and head included.*budget_scope=recurrent"):
        resolve_architecture(spec, ModelConfig(name="gru", param_budget=100_000, embedding_dim=32))
    arch = resolve_architecture(spec, ModelConfig(name="gru", param_budget=100_000, embedding_dim=32, budget_scope="recurrent"))
    H = arch.hidden_size
    recurrent = 3 * (H * 32 + H * H + 2 * H) + (H * 2 + 2)  # torch.nn.GRU's weights and biases, then the head
    assert parameter_count(spec, arch, "recurrent") == recurrent
    assert parameter_count(spec, arch) == recurrent + 5000 * 32
    assert abs(recurrent - 100_000) <= 3 * (32 + 2 * H + 4) + 2  # the closest hidden size: within one step of H
