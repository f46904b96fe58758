"""Reference recurrent cells written from the gate equations, step by step.

They load the weights of a ``torch.nn.RNN/GRU/LSTM`` and reproduce its outputs (the tests hold
them to 1e-5), so they document exactly what is compared and expose the gate activations.
They are slow Python loops: for introspection and reference timing, not for training.

Equations, in PyTorch's formulation and gate order (x_t input, h previous state):

- RNN:  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
- GRU:  r = σ(W_ir x + b_ir + W_hr h + b_hr)         reset gate
        z = σ(W_iz x + b_iz + W_hz h + b_hz)         update gate
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) candidate h~
        h' = (1 - z) ⊙ n + z ⊙ h
  (PyTorch's z weighs the *previous* state; Cho et al. write h' = (1 - z) ⊙ h + z ⊙ h~,
  the same cell with z relabelled as 1 - z.)
- LSTM: i, f, g, o = σ(.), σ(.), tanh(.), σ(.) of W_i* x + b_i* + W_h* h + b_h*
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Gates = dict[str, Tensor]


def rnn_cell(x: Tensor, state: Tensor, w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Gates]:
    h = torch.tanh(x @ w_ih.T + b_ih + state @ w_hh.T + b_hh)
    return h, {}


def gru_cell(x: Tensor, state: Tensor, w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Gates]:
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (state @ w_hh.T + b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * state, {"reset": r, "update": z, "candidate": n}


def lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], w_ih, w_hh, b_ih, b_hh):
    h, c = state
    x_i, x_f, x_g, x_o = (x @ w_ih.T + b_ih).chunk(4, dim=-1)
    h_i, h_f, h_g, h_o = (h @ w_hh.T + b_hh).chunk(4, dim=-1)
    i = torch.sigmoid(x_i + h_i)
    f = torch.sigmoid(x_f + h_f)
    g = torch.tanh(x_g + h_g)
    o = torch.sigmoid(x_o + h_o)
    c_next = f * c + i * g
    h_next = o * torch.tanh(c_next)
    return (h_next, c_next), {"input": i, "forget": f, "cell": g, "output": o}


CELL_FUNCTIONS = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}
_MODULE_CELL = {nn.RNN: "rnn", nn.GRU: "gru", nn.LSTM: "lstm"}


class ReferenceRecurrent(nn.Module):
    """Step-by-step twin of a batch-first ``torch.nn`` recurrent module (tanh RNN, GRU, LSTM)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False):
        super().__init__()
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell] * hidden_size
        self.weights = nn.ParameterDict()
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.directions
            for d in range(self.directions):
                sfx = f"l{layer}" + ("_reverse" if d else "")
                self.weights[f"weight_ih_{sfx}"] = nn.Parameter(torch.empty(gates, layer_in))
                self.weights[f"weight_hh_{sfx}"] = nn.Parameter(torch.empty(gates, hidden_size))
                self.weights[f"bias_ih_{sfx}"] = nn.Parameter(torch.empty(gates))
                self.weights[f"bias_hh_{sfx}"] = nn.Parameter(torch.empty(gates))

    @classmethod
    def from_torch(cls, module: nn.RNNBase) -> "ReferenceRecurrent":
        """Copy the weights of an ``nn.RNN`` (tanh), ``nn.GRU`` or ``nn.LSTM`` with biases, batch_first."""
        cell = _MODULE_CELL[type(module)]
        if cell == "rnn" and module.nonlinearity != "tanh":
            raise ValueError("only tanh RNNs are supported")
        if not module.bias or not module.batch_first or getattr(module, "proj_size", 0):
            raise ValueError("the reference needs bias=True, batch_first=True and no projection")
        ref = cls(cell, module.input_size, module.hidden_size, module.num_layers, module.bidirectional)
        with torch.no_grad():
            for name, param in ref.weights.items():
                param.copy_(getattr(module, name))
        return ref.to(next(module.parameters()).device)

    def forward(self, x: Tensor, lengths: Tensor | None = None, return_gates: bool = False):
        """x: (B, T, F). Returns (outputs (B, T, D*H), h_n (L*D, B, H)[, gates]).

        Steps at or past a sequence's length leave its state untouched and output zeros, so the
        backward direction starts at each sequence's own last valid step, exactly like packing.
        ``gates[layer][direction][name]`` is a (B, T, H) tensor of that gate's activations.
        """
        batch, steps, _ = x.shape
        lengths = torch.full((batch,), steps, device=x.device) if lengths is None else lengths.to(x.device)
        step_fn = CELL_FUNCTIONS[self.cell]
        layer_input, finals, all_gates = x, [], []
        for layer in range(self.num_layers):
            direction_outputs, layer_gates = [], []
            for d in range(self.directions):
                sfx = f"l{layer}" + ("_reverse" if d else "")
                w = [self.weights[f"{k}_{sfx}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                zeros = x.new_zeros(batch, self.hidden_size)
                state = (zeros, zeros) if self.cell == "lstm" else zeros
                out = x.new_zeros(batch, steps, self.hidden_size)
                gate_steps: dict[str, list[Tensor]] = {}
                for t in range(steps - 1, -1, -1) if d else range(steps):
                    new_state, gates = step_fn(layer_input[:, t], state, *w)
                    valid = (t < lengths)[:, None]
                    if self.cell == "lstm":
                        state = tuple(torch.where(valid, n, s) for n, s in zip(new_state, state))
                        out[:, t] = torch.where(valid, state[0], 0.0)
                    else:
                        state = torch.where(valid, new_state, state)
                        out[:, t] = torch.where(valid, state, 0.0)
                    for name, value in gates.items() if return_gates else ():
                        gate_steps.setdefault(name, [None] * steps)[t] = torch.where(valid, value, 0.0)
                finals.append(state[0] if self.cell == "lstm" else state)
                direction_outputs.append(out)
                layer_gates.append({k: torch.stack(v, dim=1) for k, v in gate_steps.items()})
            layer_input = torch.cat(direction_outputs, dim=-1)
            all_gates.append(layer_gates)
        h_n = torch.stack(finals)
        return (layer_input, h_n, all_gates) if return_gates else (layer_input, h_n)
