"""A plateau-aware warm-up: no pruning while a trial has not yet left its task's baseline plateau.

Many sequence tasks sit on the trivial baseline (adding: predict 1, MSE 1/6) for a few epochs
before a trial that learns drops below it, and cells leave it at different epochs (an LSTM often
later than a GRU). An early-stopping rule that compares curves there prunes late starters, i.e.
prefers one cell over the other. ``PlateauWarmup`` asks its inner pruner only once the trial's
best value so far beats the baseline by ``tol`` of it, or once ``max_wait`` epochs have passed:
a trial that never leaves the plateau is still pruned, just not before it had its chance.
"""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner


def left_plateau(values: list[float], baseline: float, tol: float, higher_is_better: bool) -> bool:
    """Whether the best of ``values`` beats ``baseline`` by more than ``tol`` of it."""
    if not values:
        return False
    if higher_is_better:
        return max(values) > baseline * (1 + tol)
    return min(values) < baseline * (1 - tol)


class PlateauWarmup(BasePruner):
    """Defers to ``inner`` once the trial left the plateau or reached epoch ``max_wait`` (steps are 0-based epochs)."""

    def __init__(self, inner: BasePruner, baseline: float, higher_is_better: bool, tol: float, max_wait: int):
        self.inner, self.baseline, self.higher_is_better = inner, baseline, higher_is_better
        self.tol, self.max_wait = tol, max_wait

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        values = list(trial.intermediate_values.values())
        if step + 1 < self.max_wait and not left_plateau(values, self.baseline, self.tol, self.higher_is_better):
            return False
        return self.inner.prune(study, trial)
