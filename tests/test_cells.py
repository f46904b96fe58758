"""The cell design space: each cell against its paper's equations, written out again here.

The loops below are deliberately naive and independent of ``benchmark.models.cells``: per-gate
weight slices, one step at a time, the equations as the papers print them (biases b = b_ih + b_hh
where torch.nn keeps two). ``ReferenceRecurrent`` (step loop and scan) must agree with them to
1e-5, forward and gradients.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch
from torch.nn.functional import softplus

from benchmark.cli import main
from benchmark.config import ConfigError, ModelConfig
from benchmark.models import MODELS, RecurrentNetwork, parameter_count, resolve_architecture
from benchmark.models.cells import CELLS
from benchmark.models.reference import ReferenceRecurrent, as_reference
from benchmark.task import OutputKind
from tests.test_models import make_spec

B, T, F_IN, H = 3, 5, 3, 4
NEW_CELLS = [name for name, cell in CELLS.items() if cell.torch_module is None]
σ = torch.sigmoid


def blocks(w: torch.Tensor, n: int) -> list[torch.Tensor]:
    return list(w.split(H, dim=0)) if n else []


def paper_g(x):
    return torch.where(x >= 0, x + 0.5, σ(x))


# ----------------------------------------------------------------------------- the papers' equations


def greff(x, p, variant: str):
    """Greff et al. 2017, Section 2 (vanilla LSTM, peepholes) and the variants of Section 3."""
    gates = {"cifg": "izo", "lstm-nig": "fzo", "lstm-nfg": "izo", "lstm-nog": "ifz"}.get(variant, "ifzo")
    W = dict(zip(gates, blocks(p["weight_ih"], len(gates))))
    R = dict(zip(gates, blocks(p["weight_hh"], len(gates))))
    b = dict(zip(gates, blocks(p["bias_ih"] + p["bias_hh"], len(gates))))
    y, c = torch.zeros(x.shape[0], H), torch.zeros(x.shape[0], H)
    prev = {k: torch.zeros(x.shape[0], H) for k in "ifo"}  # FGR: last step's gate activations
    if variant == "lstm-fgr":  # R_jk: from gate j at t-1 to gate k at t, nine H x H matrices
        R_gates = {(j, k): block for k, row in zip("ifo", blocks(p["weight_gg"], 3)) for j, block in zip("ifo", row.split(H, dim=1))}
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]

        def pre(k):
            a = xt @ W[k].T + y @ R[k].T + b[k]
            if variant == "lstm-fgr" and k != "z":
                a = a + sum(prev[j] @ R_gates[j, k].T for j in "ifo")
            return a

        z = pre("z") if variant == "lstm-niaf" else torch.tanh(pre("z"))
        i = σ(pre("i") + p["peephole_i"] * c) if "i" in gates else torch.ones_like(c)
        if variant == "cifg":
            f = 1 - i
        else:
            f = σ(pre("f") + p["peephole_f"] * c) if "f" in gates else torch.ones_like(c)
        c = z * i + c * f
        o = σ(pre("o") + p["peephole_o"] * c) if "o" in gates else torch.ones_like(c)
        y = (c if variant == "lstm-noaf" else torch.tanh(c)) * o
        prev = {"i": i, "f": f, "o": o}
        outs.append(y)
    return torch.stack(outs, 1)


def cho_gru(x, p):
    """Cho et al. 2014, eqs. 5-8: r and z, then h̃ = tanh(W x + U (r ⊙ h)), h = z h + (1 - z) h̃."""
    (Wr, Wz, W), (Ur, Uz, U) = blocks(p["weight_ih"], 3), blocks(p["weight_hh"], 3)
    (ar, az, a), (br, bz, bn) = blocks(p["bias_ih"], 3), blocks(p["bias_hh"], 3)
    h, outs = torch.zeros(x.shape[0], H), []
    for t in range(x.shape[1]):
        r = σ(x[:, t] @ Wr.T + ar + h @ Ur.T + br)
        z = σ(x[:, t] @ Wz.T + az + h @ Uz.T + bz)
        h_tilde = torch.tanh(x[:, t] @ W.T + a + (r * h) @ U.T + bn)
        h = z * h + (1 - z) * h_tilde
        outs.append(h)
    return torch.stack(outs, 1)


def mgu(x, p):
    """Zhou et al. 2016, eq. (MGU): f = σ(W_f[h, x] + b_f), h̃ = tanh(W_h[f ⊙ h, x] + b_h), h = (1 - f) h + f h̃."""
    (Wf, Wh), (Uf, Uh) = blocks(p["weight_ih"], 2), blocks(p["weight_hh"], 2)
    bf, bh = blocks(p["bias_ih"] + p["bias_hh"], 2)
    h, outs = torch.zeros(x.shape[0], H), []
    for t in range(x.shape[1]):
        f = σ(h @ Uf.T + x[:, t] @ Wf.T + bf)
        h_tilde = torch.tanh((f * h) @ Uh.T + x[:, t] @ Wh.T + bh)
        h = (1 - f) * h + f * h_tilde
        outs.append(h)
    return torch.stack(outs, 1)


def gru_no_reset(x, p, relu_and_norm=None):
    """z = σ(W_z x + U_z h + b_z), h̃ = tanh(W x + U h + b), h = z h + (1 - z) h̃; Li-GRU (Ravanelli et
    al. 2018, eqs. 5-6): BN(W x) in place of W x + b, ReLU candidate."""
    Wz, W = blocks(p["weight_ih"], 2)
    Uz, U = blocks(p["weight_hh"], 2)
    if relu_and_norm is None:
        bz, b = blocks(p["bias_ih"] + p["bias_hh"], 2)
        proj_z, proj = x @ Wz.T + bz, x @ W.T + b
    else:  # batch statistics over every (sequence, step): all sequences are full length here
        gamma, beta = relu_and_norm.weight, relu_and_norm.bias
        a = torch.cat([x @ Wz.T, x @ W.T], -1)
        mean, var = a.mean((0, 1)), a.var((0, 1), unbiased=False)
        proj_z, proj = ((a - mean) / torch.sqrt(var + relu_and_norm.eps) * gamma + beta).split(H, -1)
    h, outs = torch.zeros(x.shape[0], H), []
    for t in range(x.shape[1]):
        z = σ(proj_z[:, t] + h @ Uz.T)
        h_tilde = (torch.relu if relu_and_norm is not None else torch.tanh)(proj[:, t] + h @ U.T)
        h = z * h + (1 - z) * h_tilde
        outs.append(h)
    return torch.stack(outs, 1)


def min_gru(x, p):
    """Feng et al. 2024, Algorithm 1 (sequential minGRU) with g: z = σ(Linear(x)), h = (1 - z) h + z g(Linear(x))."""
    Wz, Wh = blocks(p["weight_ih"], 2)
    bz, bh = blocks(p["bias_ih"], 2)
    h, outs = torch.zeros(x.shape[0], H), []
    for t in range(x.shape[1]):
        z = σ(x[:, t] @ Wz.T + bz)
        h = (1 - z) * h + z * paper_g(x[:, t] @ Wh.T + bh)
        outs.append(h)
    return torch.stack(outs, 1)


def min_lstm(x, p):
    """Feng et al. 2024, Algorithm 3 (sequential minLSTM), normalised f' = f / (f + i), i' = i / (f + i)."""
    Wf, Wi, Wh = blocks(p["weight_ih"], 3)
    bf, bi, bh = blocks(p["bias_ih"], 3)
    h, outs = torch.zeros(x.shape[0], H), []
    for t in range(x.shape[1]):
        f, i = σ(x[:, t] @ Wf.T + bf), σ(x[:, t] @ Wi.T + bi)
        h = f / (f + i) * h + i / (f + i) * paper_g(x[:, t] @ Wh.T + bh)
        outs.append(h)
    return torch.stack(outs, 1)


PAPER = {
    **{v: (lambda x, p, m, v=v: greff(x, p, v)) for v in ("lstm-peep", "cifg", "lstm-nig", "lstm-nfg", "lstm-nog", "lstm-niaf", "lstm-noaf", "lstm-fgr")},
    "gru-rb": lambda x, p, m: cho_gru(x, p),
    "mgu": lambda x, p, m: mgu(x, p),
    "gru-nr": lambda x, p, m: gru_no_reset(x, p),
    "ligru": lambda x, p, m: gru_no_reset(x, p, relu_and_norm=m.norms["l0"]),
    "mingru": lambda x, p, m: min_gru(x, p),
    "minlstm": lambda x, p, m: min_lstm(x, p),
}


def test_every_new_cell_has_its_equations_here():
    assert sorted(PAPER) == sorted(NEW_CELLS)


def _randomise(module: torch.nn.Module) -> None:
    """Weights away from torch's small init, batch-norm affine parameters included."""
    with torch.no_grad():
        for param in module.parameters():
            param.uniform_(-0.8, 0.8)


@pytest.mark.parametrize("name", NEW_CELLS)
def test_cell_matches_its_paper_forward_and_gradients(name):
    torch.manual_seed(0)
    impls = [i for i in CELLS.get(name).impls if i in ("loop", "scan")]
    module = ReferenceRecurrent(name, F_IN, H)
    _randomise(module)
    x = torch.randn(B, T, F_IN, requires_grad=True)
    weights = torch.randn(B, T, H)
    expected = PAPER[name](x, module.layer_parameters(0, 0), module)
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, *module.parameters()])
    for impl in impls:
        module.impl = impl
        out, h_n = module(x)
        assert (out - expected).abs().max() <= 1e-5, impl
        assert (h_n[0] - expected[:, -1]).abs().max() <= 1e-5, impl
        grads = torch.autograd.grad((out * weights).sum(), [x, *module.parameters()])
        for got, want in zip(grads, expected_grads):
            assert (got - want).abs().max() <= 1e-5, impl


def test_reset_before_differs_from_torch_gru_on_the_same_weights():
    torch.manual_seed(0)
    gru = torch.nn.GRU(F_IN, H, batch_first=True)
    before = ReferenceRecurrent("gru-rb", F_IN, H)
    before.load_state_dict(ReferenceRecurrent.from_torch(gru).state_dict())  # torch.nn's names and layout
    x = torch.randn(B, T, F_IN)
    torch_out, _ = gru(x)
    assert (ReferenceRecurrent.from_torch(gru)(x)[0] - torch_out).abs().max() <= 1e-5  # reset-after == torch
    assert (before(x)[0] - torch_out).abs().max() > 1e-3
    assert (before(x)[0] - cho_gru(x, before.layer_parameters(0, 0))).abs().max() <= 1e-5


def _recurrent_params(name: str, input_size: int = F_IN, hidden: int = H) -> int:
    return sum(p.numel() for p in ReferenceRecurrent(name, input_size, hidden).parameters())


def test_removing_a_gate_removes_its_parameters():
    F, h = 7, 5
    count = {name: _recurrent_params(name, F, h) for name in CELLS.names()}
    block = h * F + h * h + 2 * h  # one gate: its input rows, recurrent rows and two biases
    assert count["lstm"] == 4 * block
    assert count["lstm-peep"] == count["lstm"] + 3 * h  # NP = V minus three peephole vectors
    for one_gate_less in ("cifg", "lstm-nig", "lstm-nfg", "lstm-nog"):
        assert count[one_gate_less] == count["lstm-peep"] - block - h, one_gate_less  # its block and peephole
    assert count["lstm-niaf"] == count["lstm-noaf"] == count["lstm-peep"]  # activations have no parameters
    assert count["lstm-fgr"] == count["lstm-peep"] + 9 * h * h
    assert count["gru"] == count["gru-rb"] == 3 * block
    assert count["mgu"] == count["gru-nr"] == 2 * block
    assert count["ligru"] == 2 * (h * F + h * h) + 2 * 2 * h  # no biases; batch norm's scale and shift
    assert count["mingru"] == 2 * (h * F + h) and count["minlstm"] == 3 * (h * F + h)


# ----------------------------------------------------------------------------- lengths and padding


def _alone_vs_batched(module: ReferenceRecurrent, garbage: float = 7.0):
    torch.manual_seed(3)
    lengths = torch.tensor([6, 1, 4, 6, 2])
    x = torch.randn(len(lengths), 6, module.input_size)
    x = torch.where(torch.arange(6)[None, :, None] < lengths[:, None, None], x, garbage)  # loud padding
    out, h_n = module(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone_out, alone_h = module(x[b : b + 1, :n])
        assert (out[b, :n] - alone_out[0]).abs().max() <= 1e-5
        assert torch.all(out[b, n:] == 0)
        assert (h_n[:, b] - alone_h[:, 0]).abs().max() <= 1e-5


@pytest.mark.parametrize("name", NEW_CELLS)
def test_padding_never_leaks_bidirectional_and_stacked(name):
    torch.manual_seed(0)
    module = ReferenceRecurrent(name, F_IN, H, num_layers=2, bidirectional=True).eval()
    _randomise(module)
    _alone_vs_batched(module)


def test_a_long_padded_tail_cannot_poison_gradients():
    """Past its length a sequence's state is frozen: an unstable cell (ReLU candidate, large U) run
    on 300 padded steps would otherwise overflow there, and 0 * inf turns the gradients NaN."""
    torch.manual_seed(0)
    module = ReferenceRecurrent("ligru", F_IN, H).eval()
    with torch.no_grad():  # z ≈ σ(-3): mostly the candidate, whose recurrence grows ~10x a step
        module.weights["weight_hh_l0"][:H].zero_()
        module.weights["weight_hh_l0"][H:].uniform_(2.0, 3.0)
        module.norms["l0"].bias[:H].fill_(-3.0)
    x = torch.randn(2, 300, F_IN)
    assert not torch.isfinite(module(x)[0]).all()  # 300 valid steps do overflow
    out, _ = module(x, torch.tensor([3, 2]))
    grads = torch.autograd.grad(out.sum(), list(module.parameters()))
    alone = [torch.autograd.grad(module(x[b : b + 1, :n])[0].sum(), list(module.parameters())) for b, n in ((0, 3), (1, 2))]
    assert all((a - b - c).abs().max() <= 1e-5 for a, b, c in zip(grads, *alone))


def test_li_gru_batch_norm_statistics_exclude_padded_steps():
    torch.manual_seed(0)
    module = ReferenceRecurrent("ligru", F_IN, H).train()
    lengths = torch.tensor([5, 3, 2])
    x = torch.randn(3, 5, F_IN)
    runs = []
    for steps, garbage in ((5, 0.0), (9, 50.0)):  # the same sequences, padded differently
        fresh = ReferenceRecurrent("ligru", F_IN, H).train()
        fresh.load_state_dict(module.state_dict())
        padded = torch.full((3, steps, F_IN), garbage)
        padded[:, :5] = torch.where(torch.arange(5)[None, :, None] < lengths[:, None, None], x, garbage)
        out, _ = fresh(padded, lengths)
        runs.append((out[:, :5], fresh.norms["l0"].running_mean.clone(), fresh.norms["l0"].running_var.clone()))
    for a, b in zip(*runs):
        assert (a - b).abs().max() <= 1e-5
    valid = torch.cat([x[b, :n] for b, n in enumerate(lengths.tolist())]) @ module.weights["weight_ih_l0"].T
    momentum = module.norms["l0"].momentum
    assert (runs[0][1] - momentum * valid.mean(0)).abs().max() <= 1e-6  # from the 10 valid steps only
    assert (runs[0][2] - (1 - momentum) - momentum * valid.var(0)).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
@pytest.mark.parametrize("steps", [1, 7, 33])
def test_scan_equals_sequential_mode_with_variable_lengths(name, steps):
    torch.manual_seed(steps)
    scan = ReferenceRecurrent(name, F_IN, H, num_layers=2, bidirectional=True, impl="scan")
    _randomise(scan)
    loop = ReferenceRecurrent(name, F_IN, H, num_layers=2, bidirectional=True, impl="loop")
    loop.load_state_dict(scan.state_dict())
    lengths = torch.randint(1, steps + 1, (6,))
    x = torch.randn(6, steps, F_IN, requires_grad=True)
    results = []
    for module in (scan, loop):
        out, h_n = module(x, lengths)
        grads = torch.autograd.grad(out.sum() + h_n.sum(), [x, *module.parameters()])
        results.append((out, h_n, *grads))
    for a, b in zip(*results):
        assert (a - b).abs().max() <= 1e-4


@pytest.mark.skipif(not shutil.which("g++") and not shutil.which("c++"), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_step_equals_the_loop():
    torch.manual_seed(0)
    loop = ReferenceRecurrent("mgu", F_IN, H, bidirectional=True)
    compiled = ReferenceRecurrent("mgu", F_IN, H, bidirectional=True, impl="compiled")
    compiled.load_state_dict(loop.state_dict())
    x, lengths = torch.randn(B, T, F_IN), torch.tensor([5, 2, 4])
    (a, _), (b, _) = loop(x, lengths), compiled(x, lengths)
    ga, gb = (torch.autograd.grad(o.sum(), list(m.parameters())) for o, m in ((a, loop), (b, compiled)))
    assert (a - b).abs().max() <= 1e-5 and all((p - q).abs().max() <= 1e-5 for p, q in zip(ga, gb))


# ----------------------------------------------------------------------------- gates, config, CLI


@pytest.mark.parametrize("name", [n for n, c in CELLS.items() if c.family != "rnn"])
def test_gate_names_follow_the_family(name):
    module = as_reference(RecurrentNetwork(make_spec(OutputKind.SEQUENCE_REGRESSION), resolve_architecture(
        make_spec(OutputKind.SEQUENCE_REGRESSION), ModelConfig(name=name, hidden_size=4))).encoder.rnn)
    _, _, gates = module(torch.randn(2, 3, 5), torch.tensor([3, 1]), return_gates=True)
    names = set(gates[0][0])
    family = {"gru": {"update", "reset"}, "lstm": {"input", "forget", "output"}}[CELLS.get(name).family]
    assert names & family and names <= family | {"candidate", "cell"}
    for value in gates[0][0].values():
        assert value.shape == (2, 3, 4) and torch.all(value[1, 1:] == 0)


@pytest.mark.parametrize("name", [n for n, c in CELLS.items() if c.forget_bias_block])
def test_forget_bias_sets_the_forget_gate_at_init(name):
    """With zero input and state the forget gate is σ(forget_bias) (minLSTM: before normalising)."""
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name=name, hidden_size=4, forget_bias=2.5)))
    module = as_reference(net.encoder.rnn)
    _, _, gates = module(torch.zeros(1, 1, 5), return_gates=True)
    forget = gates[0][0]["forget"]
    if name == "minlstm":  # f' = f / (f + i): recover f from i's bias
        i = torch.sigmoid(module.weights["bias_ih_l0"][4:8])
        forget = forget * i / (1 - forget)
    assert torch.allclose(forget, torch.sigmoid(torch.tensor(2.5)).expand_as(forget), atol=1e-6)


def test_impl_a_cell_lacks_is_one_line_error(capsys):
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    with pytest.raises(ConfigError, match=r"model.impl=scan: model 'gru' .* Valid choices: auto, torch, loop, compiled"):
        resolve_architecture(spec, ModelConfig(name="gru", impl="scan"))
    assert main(["run", "task=adding", "model=cifg", "model.impl=torch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: model.impl=torch: model 'cifg'") and err.count("\n") == 1


@pytest.mark.parametrize("impl, expected", [("auto", "scan"), ("loop", "loop")])
def test_impl_reaches_the_network(impl, expected):
    spec = make_spec(OutputKind.SEQUENCE_REGRESSION)
    arch = resolve_architecture(spec, ModelConfig(name="mingru", hidden_size=4, impl=impl))
    assert arch.impl == expected and RecurrentNetwork(spec, arch).encoder.rnn.impl == expected
    assert parameter_count(spec, arch) == parameter_count(spec, resolve_architecture(spec, ModelConfig(name="mingru", hidden_size=4)))
    assert parameter_count(spec, replace(arch, cell="gru")) == 3 * (4 * 5 + 4 * 4 + 8) + 4 * 3 + 3  # a cell without a scan: counted all the same


def test_every_variant_names_a_registered_cell():
    for name in MODELS.names():
        assert MODELS.get(name).cell in CELLS, name
