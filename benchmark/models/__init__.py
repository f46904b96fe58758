"""Model variants (registry), the cells they name (registry), the compared network, and the step loop."""

from benchmark.models.cells import CELLS, Cell
from benchmark.models.network import Architecture, RecurrentEncoder, RecurrentNetwork, count_parameters
from benchmark.models.variants import MODELS, Variant, build_model, implementation, parameter_count, resolve_architecture

__all__ = [
    "CELLS",
    "MODELS",
    "Cell",
    "Architecture",
    "RecurrentEncoder",
    "RecurrentNetwork",
    "Variant",
    "build_model",
    "count_parameters",
    "implementation",
    "parameter_count",
    "resolve_architecture",
]
