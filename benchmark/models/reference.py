"""Any registered cell run step by step over layers, directions and lengths (or by its scan).

For ``rnn``, ``gru`` and ``lstm`` this is the twin of ``torch.nn.RNN/GRU/LSTM``: it loads their
weights (``from_torch``) and reproduces their outputs (the tests hold them to 1e-5), so it
documents exactly what is compared and exposes the gate activations. For every other cell of
``benchmark.models.cells`` it is the implementation that trains. Lengths are respected exactly as
packing does: steps at or past a sequence's length leave its state untouched and output zeros,
the backward direction starts at each sequence's own last step, and Li-GRU's batch norm sees the
valid steps only.

Implementations (``impl``): ``loop`` (a Python loop over steps), ``compiled`` (the same loop with
the cell's step function under ``torch.compile``) and, for cells that have one, ``scan`` (a
parallel scan over the whole sequence).
"""

from __future__ import annotations

import contextlib
import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.models.cells import CELLS, Cell, Gates, StepFn

STEP_IMPLS = ("loop", "compiled", "scan")


@cache
def compiled_step(name: str) -> StepFn:
    """The cell's step under ``torch.compile`` (dynamic shapes: one graph serves every batch and size)."""
    return torch.compile(CELLS.get(name).step, dynamic=True)


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of (B, T, F) within its own length; padding stays where it is."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[..., None].expand_as(x))


def as_reference(module: nn.Module) -> "ReferenceRecurrent":
    """The step-by-step form of a network's recurrent module (``encoder.rnn``): itself, or its torch.nn twin."""
    return module if isinstance(module, ReferenceRecurrent) else ReferenceRecurrent.from_torch(module)


class ReferenceRecurrent(nn.Module):
    """A stack of any registered cell, batch-first: ``(outputs, h_n)`` as ``torch.nn`` returns them."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        impl: str = "loop",
    ):
        super().__init__()
        self.cell: Cell = CELLS.get(cell)
        if impl not in STEP_IMPLS or impl not in self.cell.impls:
            raise ValueError(f"cell '{cell}' has no '{impl}' implementation here (it has {', '.join(i for i in self.cell.impls if i in STEP_IMPLS)})")
        self.impl, self.hidden_size, self.num_layers, self.dropout = impl, hidden_size, num_layers, dropout
        self.input_size = input_size
        self.directions = 2 if bidirectional else 1
        self.weights = nn.ParameterDict()  # torch.nn's names: weight_ih_l0, bias_hh_l1_reverse, ...
        self.norms = nn.ModuleDict()
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.directions
            for d in range(self.directions):
                for name, shape in self.cell.shapes(layer_in, hidden_size).items():
                    self.weights[f"{name}_{self.suffix(layer, d)}"] = nn.Parameter(torch.empty(shape))
                if self.cell.input_norm:
                    self.norms[self.suffix(layer, d)] = nn.BatchNorm1d(self.weights[f"weight_ih_{self.suffix(layer, d)}"].shape[0])
        self.reset_parameters()

    @property
    def bidirectional(self) -> bool:
        return self.directions == 2

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        return f"l{layer}" + ("_reverse" if direction else "")

    def reset_parameters(self) -> None:
        """torch.nn's RNN initialisation for every weight: U(-1/√H, 1/√H)."""
        bound = 1 / math.sqrt(self.hidden_size)
        for param in self.weights.values():
            nn.init.uniform_(param, -bound, bound)

    def layer_parameters(self, layer: int, direction: int) -> dict[str, Tensor]:
        sfx = self.suffix(layer, direction)
        return {name: self.weights[f"{name}_{sfx}"] for name in self.cell.shapes(1, 1)}

    @classmethod
    def from_torch(cls, module: nn.RNNBase) -> "ReferenceRecurrent":
        """Copy the weights of an ``nn.RNN`` (tanh), ``nn.GRU`` or ``nn.LSTM`` with biases, batch_first."""
        name = next((n for n, c in CELLS.items() if c.torch_module is type(module)), None)
        if name is None:
            raise ValueError(f"no registered cell runs as {type(module).__name__}")
        if name == "rnn" and module.nonlinearity != "tanh":
            raise ValueError("only tanh RNNs are supported")
        if not module.bias or not module.batch_first or getattr(module, "proj_size", 0):
            raise ValueError("the reference needs bias=True, batch_first=True and no projection")
        ref = cls(name, module.input_size, module.hidden_size, module.num_layers, module.bidirectional, module.dropout)
        with torch.no_grad():
            for key, param in ref.weights.items():
                param.copy_(getattr(module, key))
        return ref.to(next(module.parameters()).device)

    def forward(self, x: Tensor, lengths: Tensor | None = None, return_gates: bool = False):
        """x: (B, T, F). Returns (outputs (B, T, D*H), h_n (L*D, B, H)[, gates]).

        ``gates[layer][direction][name]`` is a (B, T, H) tensor of that gate's activations, zero
        past each sequence's length (always computed by the step loop).
        """
        batch, steps, _ = x.shape
        lengths = torch.full((batch,), steps, device=x.device) if lengths is None else lengths.to(x.device)
        mask = torch.arange(steps, device=x.device)[None, :] < lengths[:, None]  # (B, T) valid steps
        padded = bool((lengths < steps).any())
        impl = "loop" if return_gates else self.impl
        # each cell function meets several guards (first step's state without grad, forward-only vs
        # training, layer input sizes); past the default limit of 8 graphs dynamo silently runs eager
        with torch._dynamo.config.patch(recompile_limit=64) if impl == "compiled" else contextlib.nullcontext():
            return self.run_layers(x, lengths, mask, padded, impl, return_gates)

    def run_layers(self, x: Tensor, lengths: Tensor, mask: Tensor, padded: bool, impl: str, return_gates: bool):
        layer_input, finals, all_gates = x, [], []
        for layer in range(self.num_layers):
            if layer:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
            outputs, layer_gates = [], []
            for d in range(self.directions):
                p = self.layer_parameters(layer, d)
                projected = F.linear(layer_input, p["weight_ih"], p.get("bias_ih"))
                if self.cell.input_norm:  # statistics of the valid steps only
                    projected = projected.masked_scatter(mask[..., None], self.norms[self.suffix(layer, d)](projected[mask]))
                if d:  # the backward direction reads each sequence from its own last step
                    projected = reverse_padded(projected, lengths) if padded else projected.flip(1)
                if impl == "scan":
                    out, gates = self.cell.scan(projected), {}
                else:
                    step = compiled_step(self.cell.name) if impl == "compiled" else self.cell.step
                    out, gates = self.step_loop(step, projected, p, mask if padded else None, return_gates)
                finals.append(out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])).squeeze(1))
                if padded:
                    out = torch.where(mask[..., None], out, 0.0)
                    gates = {k: torch.where(mask[..., None], v, 0.0) for k, v in gates.items()}
                if d:
                    out = reverse_padded(out, lengths) if padded else out.flip(1)
                    gates = {k: reverse_padded(v, lengths) if padded else v.flip(1) for k, v in gates.items()}
                outputs.append(out)
                layer_gates.append(gates)
            layer_input = torch.cat(outputs, dim=-1)
            all_gates.append(layer_gates)
        h_n = torch.stack(finals)
        return (layer_input, h_n, all_gates) if return_gates else (layer_input, h_n)

    def step_loop(
        self, step: StepFn, projected: Tensor, p: dict[str, Tensor], mask: Tensor | None, keep_gates: bool = False
    ) -> tuple[Tensor, Gates]:
        """Run ``step`` over dim 1 from a zero state; with ``mask``, invalid steps keep the state."""
        batch, steps, _ = projected.shape
        state = tuple(projected.new_zeros(batch, width * self.hidden_size) for width in self.cell.state)
        outputs, gate_steps = [], []
        # unbind once: slicing projected[:, t] in the loop would make backward O(T^2) (each
        # slice's gradient is a zero tensor of the whole input)
        for t, x in enumerate(projected.unbind(1)):
            new_state, gates = step(x, state, p)
            if mask is not None:  # past its length a sequence's state is frozen (padding never enters it)
                valid = mask[:, t, None]
                new_state = tuple(torch.where(valid, n, s) for n, s in zip(new_state, state))
            state = new_state
            outputs.append(state[0])
            if keep_gates:
                gate_steps.append(gates)
        gates = {k: torch.stack([g[k] for g in gate_steps], dim=1) for k in gate_steps[0]} if gate_steps else {}
        return torch.stack(outputs, dim=1), gates
