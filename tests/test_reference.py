"""The reference cells, written from the gate equations, equal torch.nn's modules."""

from __future__ import annotations

import pytest
import torch

from benchmark.config import ModelConfig
from benchmark.models import MODELS, RecurrentNetwork, resolve_architecture
from benchmark.models.cells import CELLS
from benchmark.models.reference import ReferenceRecurrent
from benchmark.task import OutputKind
from tests.conftest import make_spec


@pytest.mark.parametrize("name", [n for n in MODELS.names() if CELLS.get(MODELS.get(n).cell).torch_module])
@pytest.mark.parametrize("variable_length", [False, True])
def test_reference_matches_torch(name, variable_length):
    torch.manual_seed(1)
    spec = make_spec(OutputKind.STEP_CLASSIFICATION)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name=name, hidden_size=12, forget_bias=1.0)))
    net.eval()
    x = torch.randn(5, 9, spec.input_size)
    lengths = torch.tensor([9, 4, 7, 1, 9]) if variable_length else None
    expected_out, expected_last = net.encoder(x, lengths)
    ref = ReferenceRecurrent.from_torch(net.encoder.rnn)
    out, h_n = ref(x, lengths)
    assert (out - expected_out).abs().max() <= 1e-5
    directions = 2 if MODELS.get(name).bidirectional else 1
    assert (torch.cat(list(h_n[-directions:]), -1) - expected_last).abs().max() <= 1e-5
    # and the whole stack's final states, every layer and direction
    packed_state = net.encoder.rnn(
        torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        if variable_length
        else x
    )[1]
    torch_h_n = packed_state[0] if isinstance(packed_state, tuple) else packed_state
    assert (h_n - torch_h_n).abs().max() <= 1e-5


@pytest.mark.parametrize("cell, gates", [("gru", {"reset", "update", "candidate"}), ("lstm", {"input", "forget", "cell", "output"})])
def test_gate_activations_are_returned(cell, gates):
    module = torch.nn.GRU(3, 4, batch_first=True) if cell == "gru" else torch.nn.LSTM(3, 4, batch_first=True)
    ref = ReferenceRecurrent.from_torch(module)
    _, _, all_gates = ref(torch.randn(2, 5, 3), torch.tensor([5, 2]), return_gates=True)
    layer0_forward = all_gates[0][0]
    assert set(layer0_forward) == gates
    for value in layer0_forward.values():
        assert value.shape == (2, 5, 4)
        assert torch.all(value[1, 2:] == 0)  # no gate activity on padding
    sigmoid_gate = "update" if cell == "gru" else "forget"
    assert torch.all((layer0_forward[sigmoid_gate][0] > 0) & (layer0_forward[sigmoid_gate][0] < 1))


def test_reference_rejects_relu_rnn():
    with pytest.raises(ValueError, match="tanh"):
        ReferenceRecurrent.from_torch(torch.nn.RNN(2, 3, nonlinearity="relu", batch_first=True))
