"""Registered model variants (one line each) and the builder that sizes them.

A variant names a cell of ``benchmark.models.cells`` (its equations and implementations) and a
structure. Other distributions add variants (and cells) through the ``rnnbench.models``
entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from benchmark.config import ConfigError, ModelConfig
from benchmark.models.cells import CELLS
from benchmark.models.network import Architecture, RecurrentNetwork, count_parameters
from benchmark.registry import Registry
from benchmark.task import InputKind, TaskSpec

DEFAULT_HIDDEN_SIZE = 128


@dataclass(frozen=True)
class Variant:
    cell: str  # a name in benchmark.models.cells.CELLS
    num_layers: int = 1
    bidirectional: bool = False


MODELS: Registry[Variant] = Registry("model", entry_point_group="rnnbench.models")

MODELS.register("rnn", Variant("rnn"))
MODELS.register("gru", Variant("gru"))
MODELS.register("lstm", Variant("lstm"))
MODELS.register("birnn", Variant("rnn", bidirectional=True))
MODELS.register("bigru", Variant("gru", bidirectional=True))
MODELS.register("bilstm", Variant("lstm", bidirectional=True))
MODELS.register("rnn-2l", Variant("rnn", num_layers=2))
MODELS.register("gru-2l", Variant("gru", num_layers=2))
MODELS.register("lstm-2l", Variant("lstm", num_layers=2))
MODELS.register("bigru-2l", Variant("gru", num_layers=2, bidirectional=True))
MODELS.register("bilstm-2l", Variant("lstm", num_layers=2, bidirectional=True))
MODELS.register("gru-3l", Variant("gru", num_layers=3))
MODELS.register("lstm-3l", Variant("lstm", num_layers=3))
# The cell design space (equations and references in benchmark/models/cells.py; step loop or scan).
# LSTM family, Greff et al. 2017: `lstm` is their NP; V and its one-change variants:
MODELS.register("lstm-peep", Variant("lstm-peep"))
MODELS.register("cifg", Variant("cifg"))
MODELS.register("lstm-nig", Variant("lstm-nig"))
MODELS.register("lstm-nfg", Variant("lstm-nfg"))
MODELS.register("lstm-nog", Variant("lstm-nog"))
MODELS.register("lstm-niaf", Variant("lstm-niaf"))
MODELS.register("lstm-noaf", Variant("lstm-noaf"))
MODELS.register("lstm-fgr", Variant("lstm-fgr"))
# GRU family: `gru` is reset-after (torch/cuDNN); Cho et al.'s reset-before, MGU, no reset, Li-GRU:
MODELS.register("gru-rb", Variant("gru-rb"))
MODELS.register("mgu", Variant("mgu"))
MODELS.register("gru-nr", Variant("gru-nr"))
MODELS.register("ligru", Variant("ligru"))
# Feng et al. 2024, trained with a parallel log-space scan; stacked as the paper uses them (one layer
# has no recurrent matrix, so a parameter budget buys it a very wide state):
MODELS.register("mingru", Variant("mingru"))
MODELS.register("minlstm", Variant("minlstm"))
MODELS.register("mingru-2l", Variant("mingru", num_layers=2))
MODELS.register("minlstm-2l", Variant("minlstm", num_layers=2))


def implementation(cfg: ModelConfig) -> str:
    """The implementation ``cfg.impl`` asks for, ``auto`` resolved; an error if the cell lacks it."""
    cell = CELLS.get(MODELS.get(cfg.name).cell)
    if cfg.impl == "auto":
        return cell.default_impl
    if cfg.impl not in cell.impls:
        raise ConfigError(
            f"model.impl={cfg.impl}: model '{cfg.name}' (cell '{cell.name}') has no {cfg.impl} implementation. "
            f"Valid choices: auto, {', '.join(cell.impls)}"
        )
    return cfg.impl


def _architecture(cfg: ModelConfig, hidden_size: int) -> Architecture:
    variant = MODELS.get(cfg.name)
    return Architecture(
        cell=variant.cell,
        hidden_size=hidden_size,
        num_layers=cfg.num_layers if cfg.num_layers is not None else variant.num_layers,
        bidirectional=cfg.bidirectional if cfg.bidirectional is not None else variant.bidirectional,
        dropout=cfg.dropout,
        forget_bias=cfg.forget_bias,
        embedding_dim=cfg.embedding_dim,
        pooling=cfg.pooling,
        impl=implementation(cfg),
    )


SCOPES = {"total": "embedding and head included", "recurrent": "recurrent layers and head; embedding not counted"}


def parameter_count(spec: TaskSpec, arch: Architecture, scope: str = "total") -> int:
    """Exact parameter count, built on 'meta': of the whole network (``total``), or without the
    token embedding, which ``embedding_dim`` fixes for every variant (``recurrent``)."""
    with torch.device("meta"):  # impl never changes the count, and another cell may lack this one
        network = RecurrentNetwork(spec, replace(arch, impl="auto"))
    embedding = count_parameters(network.embedding) if scope == "recurrent" and network.embedding is not None else 0
    return count_parameters(network) - embedding


def solve_hidden_size(spec: TaskSpec, cfg: ModelConfig, budget: int) -> int:
    """Largest hidden size whose network stays closest to ``budget`` parameters (count grows with H),
    counted over ``cfg.budget_scope``."""
    def count(h: int) -> int:
        return parameter_count(spec, _architecture(cfg, h), cfg.budget_scope)

    smallest = count(1)
    if smallest > budget:
        hint = "; model.budget_scope=recurrent leaves the embedding out" if cfg.budget_scope == "total" and spec.input_kind is InputKind.TOKENS else ""
        raise ConfigError(
            f"model.param_budget={budget} is below the smallest '{cfg.name}' on this task "
            f"({smallest} parameters at hidden_size=1, {SCOPES[cfg.budget_scope]}){hint}"
        )
    lo, hi = 1, 1
    while count(hi) < budget:
        hi *= 2
        if hi > 1 << 16:
            raise ConfigError(f"model.param_budget={budget} is too large to reach")
    while lo < hi:  # smallest H with count >= budget
        mid = (lo + hi) // 2
        if count(mid) >= budget:
            hi = mid
        else:
            lo = mid + 1
    candidates = [h for h in (lo - 1, lo) if h >= 1]
    return min(candidates, key=lambda h: abs(count(h) - budget))


def resolve_architecture(spec: TaskSpec, cfg: ModelConfig) -> Architecture:
    """Fill the variant's defaults and the hidden size (explicit, from the budget, or default)."""
    if cfg.hidden_size is not None and cfg.param_budget is not None:
        raise ConfigError("set model.hidden_size or model.param_budget, not both")
    if cfg.param_budget is not None:
        hidden = solve_hidden_size(spec, cfg, cfg.param_budget)
    else:
        hidden = cfg.hidden_size or DEFAULT_HIDDEN_SIZE
    arch = _architecture(cfg, hidden)
    if spec.causal and arch.bidirectional:
        raise ConfigError(f"task '{spec.name}' predicts later inputs: model '{cfg.name}' is bidirectional and would read them; use a unidirectional model")
    return arch


def build_model(spec: TaskSpec, cfg: ModelConfig) -> RecurrentNetwork:
    return RecurrentNetwork(spec, resolve_architecture(spec, cfg))
