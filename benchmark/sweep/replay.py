"""Replay a pruner offline over the per-epoch curves of a study swept without pruning.

A pruner decides from reported values only (and, for Hyperband, the study name and trial
number), so feeding the recorded curves of an unpruned study, trial by trial in their order, to a
fresh in-memory study with the pruner gives exactly the decisions a live pruned sweep would have
made on the same trials. A live sweep meets the same trials when its sampler does not learn from
results (``random``); a model-based sampler (TPE) sees pruned trials and would propose other
ones after the first prune, so the replay then answers "same trials, pruned" rather than
"a live pruned sweep". Training must be deterministic for the curves' prefixes to match (it is on
CPU with the sweep's fixed training seed). The last epoch is never pruned, as in the live
callback (``worker.LastEpochKept``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState


@dataclass(frozen=True)
class Curve:
    """A recorded trial: its validation value per epoch (0-based steps), its objective, its seconds."""

    number: int
    values: dict[int, float]
    objective: float  # the trial's value: best validation value over all epochs
    seconds: float = 0.0


@dataclass(frozen=True)
class Decision:
    number: int
    pruned: bool
    epochs: int  # epochs trained (validated), pruned or not
    value: float | None  # the objective of a complete trial; None when pruned
    seconds: float  # the recorded trial's seconds x the share of its epochs trained


def curves_of(study: optuna.Study) -> list[Curve]:
    """The complete trials of an unpruned study, in trial order."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
        out.append(Curve(t.number, dict(t.intermediate_values), t.value, seconds))
    return sorted(out, key=lambda c: c.number)


def replay(curves: list[Curve], pruner: optuna.pruners.BasePruner, study_name: str, direction: str, max_epochs: int) -> list[Decision]:
    """The pruner's decision on each recorded trial, in order, as a live single-worker sweep makes them."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name=study_name, direction=direction, pruner=pruner)
    out = []
    for c in curves:
        trial = study.ask()
        pruned_at = None
        for step in sorted(c.values):
            trial.report(c.values[step], step)
            if step < max_epochs - 1 and trial.should_prune():
                pruned_at = step
                break
        total = len(c.values)
        if pruned_at is None:
            study.tell(trial, c.objective)
            out.append(Decision(c.number, False, total, c.objective, c.seconds))
        else:
            study.tell(trial, state=TrialState.PRUNED)
            epochs = pruned_at + 1
            out.append(Decision(c.number, True, epochs, None, c.seconds * epochs / max(total, 1)))
    return out


def best(decisions: list[Decision], higher_is_better: bool) -> float:
    values = [d.value for d in decisions if d.value is not None and math.isfinite(d.value)]
    if not values:
        return math.nan
    return max(values) if higher_is_better else min(values)
