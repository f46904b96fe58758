"""Recurrent cells as gate equations: one step function and its parameter shapes each (a registry).

A step reads ``x``, the layer input already projected for every step at once (``x W_ih^T + b_ih``,
batch-normalised for Li-GRU), the previous state (``h`` first; ``c`` for LSTM-like cells) and the
parameters of one layer and direction by name, and returns the new state and its gate activations.
``benchmark.models.reference.ReferenceRecurrent`` runs any of them over layers, directions and
lengths; ``rnn``, ``gru`` and ``lstm`` also have their ``torch.nn`` (cuDNN) module, and minGRU and
minLSTM a parallel log-space scan. Adding a cell is one step function under ``@cell(...)``.

Conventions (those of ``torch.nn``): input blocks in the order the step chunks them; two bias
vectors ``bias_ih``/``bias_hh`` where there is a recurrent matrix, as PyTorch has them. In every
GRU-family cell the gate recorded as ``update`` is the weight kept on the *previous* state
(PyTorch's and Cho et al.'s z: h' = z ⊙ h + (1 - z) ⊙ h̃; Zhou et al.'s MGU and Feng et al. write
the complement), so gate statistics read the same across the family. Greff et al.'s LSTM variants
(V and one change each) keep V's peepholes except on a gate they remove.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.registry import Registry

Params = Mapping[str, Tensor]
State = tuple[Tensor, ...]
Gates = dict[str, Tensor]
StepFn = Callable[[Tensor, State, Params], tuple[State, Gates]]
ShapesFn = Callable[[int, int], dict[str, tuple[int, ...]]]
ScanFn = Callable[[Tensor], Tensor]  # (B, T, blocks*H) projected inputs -> (B, T, H) states

# A cell is compared with its family's vanilla form: the first of these that ran beside it. Greff et
# al.'s vanilla LSTM has peepholes (V); torch's (their NP) stands in where V did not run.
VANILLA = {"rnn": ("rnn",), "gru": ("gru",), "lstm": ("lstm-peep", "lstm")}
FAMILIES = tuple(VANILLA)


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: its equations (``step``), parameters and the implementations it has."""

    name: str
    family: str  # whose vanilla form it is compared with: rnn, gru or lstm
    step: StepFn
    shapes: ShapesFn  # (layer input size, hidden size) -> parameter name -> shape
    summary: str  # what it is, with its reference: one line
    state: tuple[int, ...] = (1,)  # widths of the state tensors in units of H, h first
    torch_module: type[nn.RNNBase] | None = None  # same equations and parameter names in torch.nn
    scan: ScanFn | None = None  # (B, T, blocks*H) projected inputs -> (B, T, H) states from h_0 = 0
    input_norm: bool = False  # batch norm over the valid steps of the input projection (Li-GRU)
    forget_bias_block: tuple[int, float] | None = None  # (input block, sign) that model.forget_bias sets

    @property
    def impls(self) -> tuple[str, ...]:
        """Implementations this cell runs on, the training default first."""
        return (
            (("torch",) if self.torch_module else ())
            + (("scan",) if self.scan else ())
            + ("loop", "compiled")
        )

    @property
    def default_impl(self) -> str:
        return self.impls[0]


CELLS: Registry[Cell] = Registry("cell", entry_point_group="rnnbench.models")


def cell(name: str, family: str, shapes: ShapesFn, summary: str, **options) -> Callable[[StepFn], StepFn]:
    """Register the decorated step function as cell ``name`` (``options``: the other ``Cell`` fields)."""

    if family not in FAMILIES:
        raise ValueError(f"cell '{name}': family must be one of {', '.join(FAMILIES)} (got '{family}')")

    def register(step: StepFn) -> StepFn:
        CELLS.register(name, Cell(name, family, step, shapes, summary, **options))
        return step

    return register


def affine(blocks: int, *, recurrent: bool = True, bias: bool = True, peepholes: str = "", gate_recurrence: int = 0) -> ShapesFn:
    """Shapes of ``blocks`` gate blocks of H: W_ih, W_hh (if ``recurrent``), b_ih, b_hh (if ``bias``),
    a peephole vector per gate letter in ``peepholes`` and a (g·H, g·H) gate-to-gate matrix."""

    def shapes(input_size: int, hidden: int) -> dict[str, tuple[int, ...]]:
        g = blocks * hidden
        out = {"weight_ih": (g, input_size)}
        if recurrent:
            out["weight_hh"] = (g, hidden)
        if bias:
            out["bias_ih"] = (g,)
            if recurrent:
                out["bias_hh"] = (g,)
        out |= {f"peephole_{gate}": (hidden,) for gate in peepholes}
        if gate_recurrence:
            out["weight_gg"] = (gate_recurrence * hidden, gate_recurrence * hidden)
        return out

    return shapes


def hidden_projection(h: Tensor, p: Params) -> Tensor:
    """``h W_hh^T + b_hh`` (bias when the cell has one)."""
    return F.linear(h, p["weight_hh"], p.get("bias_hh"))


# ----------------------------------------------------------------------------- torch.nn's three


@cell("rnn", "rnn", affine(1), "Elman RNN, h' = tanh(W x + U h + b) (torch.nn.RNN)", torch_module=nn.RNN)
def rnn_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    return (torch.tanh(x + hidden_projection(state[0], p)),), {}


@cell("gru", "gru", affine(3), "GRU, reset applied after the recurrent matrix (torch.nn.GRU, cuDNN)", torch_module=nn.GRU)
def gru_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    (h,) = state
    x_r, x_z, x_n = x.chunk(3, dim=-1)
    h_r, h_z, h_n = hidden_projection(h, p).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,), {"reset": r, "update": z, "candidate": n}


@cell(
    "lstm", "lstm", affine(4), "LSTM without peepholes: Greff et al.'s NP (torch.nn.LSTM)",
    state=(1, 1), torch_module=nn.LSTM, forget_bias_block=(1, 1.0),
)
def lstm_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    h, c = state
    x_i, x_f, x_g, x_o = (x + hidden_projection(h, p)).chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(x_i), torch.sigmoid(x_f), torch.tanh(x_g), torch.sigmoid(x_o)
    c_next = f * c + i * g
    return (o * torch.tanh(c_next), c_next), {"input": i, "forget": f, "cell": g, "output": o}


# ----------------------------------------------------------------------------- Greff et al. 2017
# "LSTM: A Search Space Odyssey": V (vanilla, peepholes) and one change each. Blocks i, f, g, o
# minus the removed gate; peepholes p_i, p_f read c_{t-1}, p_o reads c_t.


def greff_lstm(x: Tensor, state: State, p: Params, *, gates: str = "ifgo", coupled: bool = False,
               input_activation=torch.tanh, output_activation=torch.tanh) -> tuple[State, Gates]:
    """Greff et al.'s vanilla LSTM with peepholes, minus the gates absent from ``gates``."""
    h, c = state[0], state[1]
    pre = dict(zip(gates, (x + hidden_projection(h, p)).chunk(len(gates), dim=-1)))
    if "weight_gg" in p:  # FGR: i, f, o also read the previous step's i, f, o (state[2])
        for gate, previous in zip("ifo", F.linear(state[2], p["weight_gg"]).chunk(3, dim=-1)):
            pre[gate] = pre[gate] + previous
    one = torch.ones_like(h)
    i = torch.sigmoid(pre["i"] + p["peephole_i"] * c) if "i" in pre else one
    if coupled:
        f = 1 - i
    else:
        f = torch.sigmoid(pre["f"] + p["peephole_f"] * c) if "f" in pre else one
    g = input_activation(pre["g"])
    c_next = f * c + i * g
    o = torch.sigmoid(pre["o"] + p["peephole_o"] * c_next) if "o" in pre else one
    h_next = o * output_activation(c_next)
    recorded = {"input": i, "forget": f, "cell": g, "output": o}
    kept = {"input": "i" in pre, "forget": "f" in pre or coupled, "cell": True, "output": "o" in pre}
    new_state = (h_next, c_next, torch.cat([i, f, o], -1)) if "weight_gg" in p else (h_next, c_next)
    return new_state, {k: v for k, v in recorded.items() if kept[k]}


GREFF = "Greff et al. 2017"
LSTM_OPTIONS = {"state": (1, 1), "forget_bias_block": (1, 1.0)}


@cell("lstm-peep", "lstm", affine(4, peepholes="ifo"), f"LSTM with peephole connections: {GREFF}'s vanilla (V)", **LSTM_OPTIONS)
def lstm_peephole_step(x, state, p):
    return greff_lstm(x, state, p)


@cell("cifg", "lstm", affine(3, peepholes="io"), f"coupled input-forget gate, f = 1 - i ({GREFF}'s CIFG)",
      state=(1, 1), forget_bias_block=(0, -1.0))  # f = σ(-a_i): the input bias is set to -forget_bias
def cifg_step(x, state, p):
    return greff_lstm(x, state, p, gates="igo", coupled=True)


@cell("lstm-nig", "lstm", affine(3, peepholes="fo"), f"no input gate, i = 1 ({GREFF}'s NIG)", state=(1, 1), forget_bias_block=(0, 1.0))
def lstm_no_input_gate_step(x, state, p):
    return greff_lstm(x, state, p, gates="fgo")


@cell("lstm-nfg", "lstm", affine(3, peepholes="io"), f"no forget gate, f = 1 ({GREFF}'s NFG)", state=(1, 1))
def lstm_no_forget_gate_step(x, state, p):
    return greff_lstm(x, state, p, gates="igo")


@cell("lstm-nog", "lstm", affine(3, peepholes="if"), f"no output gate, o = 1 ({GREFF}'s NOG)", **LSTM_OPTIONS)
def lstm_no_output_gate_step(x, state, p):
    return greff_lstm(x, state, p, gates="ifg")


@cell("lstm-niaf", "lstm", affine(4, peepholes="ifo"), f"no input activation function, g = identity ({GREFF}'s NIAF)", **LSTM_OPTIONS)
def lstm_no_input_activation_step(x, state, p):
    return greff_lstm(x, state, p, input_activation=lambda a: a)


@cell("lstm-noaf", "lstm", affine(4, peepholes="ifo"), f"no output activation function, h = o ⊙ c ({GREFF}'s NOAF)", **LSTM_OPTIONS)
def lstm_no_output_activation_step(x, state, p):
    return greff_lstm(x, state, p, output_activation=lambda a: a)


@cell("lstm-fgr", "lstm", affine(4, peepholes="ifo", gate_recurrence=3),
      f"full gate recurrence: i, f, o also read i, f, o of the previous step, 9 more H×H matrices ({GREFF}'s FGR)",
      state=(1, 1, 3), forget_bias_block=(1, 1.0))
def lstm_full_gate_recurrence_step(x, state, p):
    return greff_lstm(x, state, p)


# ----------------------------------------------------------------------------- GRU family


@cell("gru-rb", "gru", affine(3), "GRU, reset applied before the recurrent matrix: Cho et al. 2014's original equations")
def gru_reset_before_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    (h,) = state
    hidden = h.shape[-1]
    x_r, x_z, x_n = x.chunk(3, dim=-1)
    w_rz, w_n = p["weight_hh"][: 2 * hidden], p["weight_hh"][2 * hidden :]
    b_rz, b_n = p["bias_hh"][: 2 * hidden], p["bias_hh"][2 * hidden :]
    h_r, h_z = F.linear(h, w_rz, b_rz).chunk(2, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + F.linear(r * h, w_n, b_n))
    return ((1 - z) * n + z * h,), {"reset": r, "update": z, "candidate": n}


def one_gate_gru(x: Tensor, h: Tensor, p: Params, reset: bool, candidate=torch.tanh) -> tuple[Tensor, Tensor]:
    """A GRU with a single gate k (blocks k, n): k and the candidate h̃ (k ⊙ h inside it if ``reset``)."""
    x_k, x_n = x.chunk(2, dim=-1)
    if not reset:  # one matrix product for both blocks
        h_k, h_n = hidden_projection(h, p).chunk(2, dim=-1)
        return torch.sigmoid(x_k + h_k), candidate(x_n + h_n)
    hidden = h.shape[-1]
    w_k, w_n = p["weight_hh"][:hidden], p["weight_hh"][hidden:]
    b_k, b_n = p["bias_hh"][:hidden], p["bias_hh"][hidden:]
    k = torch.sigmoid(x_k + F.linear(h, w_k, b_k))
    return k, candidate(x_n + F.linear(k * h, w_n, b_n))


@cell("mgu", "gru", affine(2), "minimal gated unit: one forget gate f resets h and updates it, h' = (1 - f) h + f h̃ (Zhou et al. 2016)")
def mgu_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    (h,) = state
    f, n = one_gate_gru(x, h, p, reset=True)
    return ((1 - f) * h + f * n,), {"reset": f, "update": 1 - f, "candidate": n}


@cell("gru-nr", "gru", affine(2), "GRU without reset gate, h̃ = tanh(W x + U h + b) (Jozefowicz et al. 2015; Ravanelli et al. 2018)")
def gru_no_reset_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    (h,) = state
    z, n = one_gate_gru(x, h, p, reset=False)
    return ((1 - z) * n + z * h,), {"update": z, "candidate": n}


@cell("ligru", "gru", affine(2, bias=False),
      "light GRU: no reset gate, ReLU candidate, batch norm on the input projections (Ravanelli et al. 2018)",
      input_norm=True)
def ligru_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    (h,) = state
    z, n = one_gate_gru(x, h, p, reset=False, candidate=torch.relu)
    return (z * h + (1 - z) * n,), {"update": z, "candidate": n}


# ----------------------------------------------------------------------------- Feng et al. 2024
# "Were RNNs All We Needed?": gates from x_t only, so h_t = a_t ⊙ h_{t-1} + b_t is a linear
# recurrence, trained as a parallel scan in log space. The candidate goes through
# g(x) = x + 0.5 (x ≥ 0), σ(x) (x < 0), which keeps it positive for the logarithm.


def g(x: Tensor) -> Tensor:
    return F.relu(x) + torch.sigmoid(x.clamp(max=0))  # branch-free: torch.where is slow on CPU


def log_g(x: Tensor) -> Tensor:
    return torch.log(F.relu(x) + 0.5) + F.logsigmoid(x.clamp(max=0)) + math.log(2)


def log_space_scan(log_a: Tensor, log_b: Tensor) -> Tensor:
    """log h_t for h_t = exp(log_a_t) h_{t-1} + exp(log_b_t) over dim 0 (time first) from h_0 = 0.

    A parallel scan by work-efficient recursive pairing (Blelloch): combine neighbours, scan the
    pairs, fill in the even steps; log2(T) levels of whole-tensor ops. It computes what Heinsen's
    (2023) ``a* = cumsum(log_a); a* + logcumsumexp(log_b - a*)`` computes, without that form's
    cancellation between two numbers of size ~T (2e-4 to 5e-4 off at T = 1024 in float32) and without
    ``logcumsumexp``, which runs serially on CPU (6-8x slower here). Time first keeps each step's
    (batch, hidden) block contiguous.
    """
    steps = log_a.shape[0]
    if steps == 1:
        return log_b
    if steps % 2:  # pad with the identity step (a = 1, b = 0)
        log_a = torch.cat([log_a, log_a.new_zeros(1, *log_a.shape[1:])])
        log_b = torch.cat([log_b, log_b.new_full((1, *log_b.shape[1:]), -math.inf)])
    a_even, a_odd = log_a.unflatten(0, (-1, 2)).unbind(1)
    b_even, b_odd = log_b.unflatten(0, (-1, 2)).unbind(1)
    h_odd = log_space_scan(a_even + a_odd, torch.logaddexp(b_even + a_odd, b_odd))
    h_before_even = torch.cat([h_odd.new_full((1, *h_odd.shape[1:]), -math.inf), h_odd[:-1]])  # h_0 = 0
    h_even = torch.logaddexp(h_before_even + a_even, b_even)
    return torch.stack([h_even, h_odd], dim=1).flatten(0, 1)[:steps]


def mingru_scan(x: Tensor) -> Tensor:
    k, k_h = x.transpose(0, 1).chunk(2, dim=-1)
    log_keep = F.logsigmoid(-k)  # log(1 - z); log z = log(1 - z) + k
    return log_space_scan(log_keep, log_keep + k + log_g(k_h)).exp().transpose(0, 1)


def minlstm_scan(x: Tensor) -> Tensor:
    k_f, k_i, k_h = x.transpose(0, 1).chunk(3, dim=-1)
    log_ratio = F.logsigmoid(k_i) - F.logsigmoid(k_f)  # log(i / f)
    log_forget = F.logsigmoid(-log_ratio)  # log f' = log(f / (f + i)); log i' = log f' + log(i / f)
    return log_space_scan(log_forget, log_forget + log_ratio + log_g(k_h)).exp().transpose(0, 1)


FENG = "Feng et al. 2024"


@cell("mingru", "gru", affine(2, recurrent=False),
      f"minGRU: z and h̃ from x only, h' = (1 - z) h + z g(h̃), parallel log-space scan ({FENG})", scan=mingru_scan)
def mingru_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    (h,) = state
    k, k_h = x.chunk(2, dim=-1)
    z, candidate = torch.sigmoid(k), g(k_h)
    return ((1 - z) * h + z * candidate,), {"update": 1 - z, "candidate": candidate}


@cell("minlstm", "lstm", affine(3, recurrent=False),
      f"minLSTM: f, i, h̃ from x only, normalised f' + i' = 1, h' = f' h + i' g(h̃), parallel log-space scan ({FENG})",
      scan=minlstm_scan, forget_bias_block=(0, 1.0))
def minlstm_step(x: Tensor, state: State, p: Params) -> tuple[State, Gates]:
    (h,) = state
    k_f, k_i, k_h = x.chunk(3, dim=-1)
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    f, i = f / (f + i), i / (f + i)
    candidate = g(k_h)
    return (f * h + i * candidate,), {"forget": f, "input": i, "cell": candidate}
