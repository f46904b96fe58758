"""Model variants (registry), the compared network, and reference cells."""

from benchmark.models.network import Architecture, RecurrentEncoder, RecurrentNetwork, count_parameters
from benchmark.models.variants import MODELS, Variant, build_model, parameter_count, resolve_architecture

__all__ = [
    "MODELS",
    "Architecture",
    "RecurrentEncoder",
    "RecurrentNetwork",
    "Variant",
    "build_model",
    "count_parameters",
    "parameter_count",
    "resolve_architecture",
]
