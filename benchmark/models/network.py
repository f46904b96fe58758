"""The compared architecture: input layer -> recurrent stack -> task head.

``rnn``, ``gru`` and ``lstm`` run on ``torch.nn.RNN/GRU/LSTM`` (fused cuDNN kernels on GPU) with
packed variable-length batches; every other cell of ``benchmark.models.cells`` runs on
``ReferenceRecurrent`` (step loop, compiled loop or scan), which respects lengths the same way.
Either way padding never enters a recurrent state in either direction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from benchmark.models.cells import CELLS
from benchmark.models.reference import ReferenceRecurrent
from benchmark.task import InputKind, TaskSpec


@dataclass(frozen=True)
class Architecture:
    cell: str
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    forget_bias: float = 1.0
    embedding_dim: int = 32
    pooling: str = "last"
    impl: str = "auto"  # torch, loop, compiled or scan (one the cell has); auto: the cell's default

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def as_dict(self) -> dict:
        return asdict(self)


def set_forget_bias(module: nn.Module, value: float, cell: str = "lstm") -> None:
    """Make the *effective* forget-gate bias (b_ih + b_hh) of every layer equal ``value``.

    The cell names the input block that holds it (``lstm``: the second of i, f, g, o) and its sign
    (CIFG's f = 1 - σ(a_i) = σ(-a_i), so its input-gate bias is set to -value). No-op for a cell
    without a forget gate.
    """
    if CELLS.get(cell).forget_bias_block is None:
        return
    block, sign = CELLS.get(cell).forget_bias_block
    rows = slice(block * module.hidden_size, (block + 1) * module.hidden_size)
    with torch.no_grad():
        for name, param in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("bias_ih"):
                param[rows].fill_(sign * value)
            elif leaf.startswith("bias_hh"):
                param[rows].zero_()


class RecurrentEncoder(nn.Module):
    """Runs the recurrent stack; returns per-step outputs and the final state of each sequence."""

    def __init__(self, arch: Architecture, input_size: int):
        super().__init__()
        self.arch = arch
        dropout = arch.dropout if arch.num_layers > 1 else 0.0
        cell = CELLS.get(arch.cell)
        impl = cell.default_impl if arch.impl == "auto" else arch.impl
        if impl == "torch":
            self.rnn = cell.torch_module(
                input_size, arch.hidden_size, num_layers=arch.num_layers, bidirectional=arch.bidirectional,
                dropout=dropout, batch_first=True,
            )
        else:
            self.rnn = ReferenceRecurrent(
                arch.cell, input_size, arch.hidden_size, arch.num_layers, arch.bidirectional, dropout, impl
            )
        set_forget_bias(self.rnn, arch.forget_bias, arch.cell)

    @property
    def output_size(self) -> int:
        return self.arch.hidden_size * self.arch.directions

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, T, F). Returns outputs (B, T, D*H), zero past each length, and last (B, D*H).

        ``last`` is the top layer's forward state at each sequence's own last step, concatenated,
        for bidirectional models, with the backward state at step 0 (after reading the whole sequence).
        """
        if isinstance(self.rnn, ReferenceRecurrent):
            outputs, state = self.rnn(x, lengths)
        elif lengths is None:
            outputs, state = self.rnn(x)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H); packing unsorts it
        last = torch.cat(list(h_n[-self.arch.directions :]), dim=-1)
        return outputs, last


def valid_mask(lengths: Tensor | None, batch: int, steps: int, device) -> Tensor:
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=device)
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]


class RecurrentNetwork(nn.Module):
    """input layer -> RecurrentEncoder -> linear head shaped by the task's output kind."""

    def __init__(self, spec: TaskSpec, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.output_kind = spec.output_kind
        if spec.input_kind is InputKind.TOKENS:
            self.embedding = nn.Embedding(spec.input_size, arch.embedding_dim, padding_idx=spec.padding_idx)
            rnn_input = arch.embedding_dim
        else:
            self.embedding = None
            rnn_input = spec.input_size
        self.encoder = RecurrentEncoder(arch, rnn_input)
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(self.encoder.output_size, spec.num_outputs)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        x = self.embedding(inputs) if self.embedding is not None else inputs
        outputs, last = self.encoder(x, lengths)
        if self.output_kind.per_step:
            return self.head(self.dropout(outputs))  # (B, T, C)
        return self.head(self.dropout(self.pool(outputs, last, lengths)))  # (B, C)

    def pool(self, outputs: Tensor, last: Tensor, lengths: Tensor | None) -> Tensor:
        if self.arch.pooling == "last":
            return last
        mask = valid_mask(lengths, outputs.shape[0], outputs.shape[1], outputs.device)[..., None]
        if self.arch.pooling == "mean":
            return (outputs * mask).sum(1) / mask.sum(1).clamp(min=1)
        return outputs.masked_fill(~mask, float("-inf")).amax(1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
