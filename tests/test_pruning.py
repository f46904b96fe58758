"""Pruners on tiny in-memory studies (hand-made curves), the plateau warm-up, and the offline replay against a live sweep."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from benchmark.sweep import load_sweep_config, run_sweep
from benchmark.sweep.config import PrunerConfig, PruneContext
from benchmark.sweep.replay import Curve, curves_of, replay
from tests.test_sweep import trials_of, write_sweep

BASELINE = 1 / 6  # adding's "always predict 1"
EPOCHS = 9
CTX = PruneContext(EPOCHS, higher_is_better=False, baseline=BASELINE, study="tiny")


def learning(start: float, rate: float, plateau: int = 0) -> list[float]:
    """A curve on the baseline for ``plateau`` epochs, then falling geometrically from ``start``."""
    return [BASELINE] * plateau + [start * rate**k for k in range(EPOCHS - plateau)]


def run_curves(pruner: PrunerConfig, curves: list[list[float]]) -> list[tuple[bool, int]]:
    """(pruned, epochs trained) per curve, in order, as a live single-worker sweep decides."""
    recorded = [Curve(i, dict(enumerate(c)), min(c)) for i, c in enumerate(curves)]
    return [(d.pruned, d.epochs) for d in replay(recorded, pruner.build(CTX), "tiny", "minimize", EPOCHS)]


GOOD = [learning(0.15 - 0.005 * i, 0.7) for i in range(8)]  # eight trials that learn, slightly different


@pytest.mark.parametrize(
    "pruner",
    [
        {"name": "median", "n_startup_trials": 2},
        {"name": "percentile", "percentile": 50, "n_startup_trials": 2},
        {"name": "successive_halving"},
        {"name": "hyperband"},  # trial 8 of study 'tiny' falls in a bracket that stops early (crc32 of the name)
    ],
)
def test_a_trial_worse_at_every_step_is_pruned_early(pruner):
    worse = [v * 1.5 + 0.01 for v in GOOD[0]]
    decisions = run_curves(PrunerConfig.model_validate(pruner), [*GOOD, worse])
    pruned, epochs = decisions[-1]
    assert pruned and epochs < EPOCHS - 1
    # the same curve better than every other at every step is kept to the end
    better = [v * 0.5 for v in GOOD[-1]]
    assert run_curves(PrunerConfig.model_validate(pruner), [*GOOD, better])[-1] == (False, EPOCHS)


def test_nothing_is_pruned_without_a_pruner_and_the_last_epoch_never():
    worse = [1.0] * EPOCHS
    assert run_curves(PrunerConfig.model_validate("none"), [*GOOD, worse])[-1] == (False, EPOCHS)
    # a threshold that every value crosses would prune at every step, but not at the last epoch: it saves nothing
    assert run_curves(PrunerConfig.model_validate({"name": "threshold", "upper": 0.5, "n_warmup_steps": 8}), [worse]) == [(False, EPOCHS)]


def test_plateau_warmup_spares_a_late_starter_until_max_wait_and_no_longer():
    median = {"name": "median", "n_startup_trials": 2}
    late = learning(0.03, 0.5, plateau=3)  # leaves the plateau at its 4th epoch, ahead of the others there
    assert run_curves(PrunerConfig.model_validate(median), [*GOOD, late])[-1] == (True, 1)  # plain median: cut at once
    plateau = PrunerConfig.model_validate({"name": "plateau", "inner": median, "max_wait": 5})
    assert run_curves(plateau, [*GOOD, late])[-1] == (False, EPOCHS)
    # off the plateau the inner pruner judges as usual: a late starter still behind the median there is cut
    behind = learning(0.1, 0.5, plateau=3)
    assert run_curves(plateau, [*GOOD, behind])[-1] == (True, 4)
    stuck = [BASELINE] * EPOCHS  # never leaves: pruned as soon as the wait is over (epoch 5), not before
    assert run_curves(plateau, [*GOOD, stuck])[-1] == (True, 5)
    # a trial already off the plateau is judged by the inner pruner at once
    off = [0.14] * EPOCHS  # below 1/6 by more than tol=10 %, but worse than the median at every step
    assert run_curves(plateau, [*GOOD, off])[-1] == (True, 1)
    # the default wait is half of max_epochs
    assert run_curves(PrunerConfig.model_validate({"name": "plateau", "inner": median}), [*GOOD, stuck])[-1] == (True, EPOCHS // 2)


def test_patient_pruner_waits_for_a_stall():
    median = {"name": "median", "n_startup_trials": 2}
    patient = PrunerConfig.model_validate({"name": "patient", "inner": median, "patience": 2})
    worse_but_improving = [v * 1.5 + 0.01 for v in GOOD[0]]
    assert run_curves(patient, [*GOOD, worse_but_improving])[-1] == (False, EPOCHS)
    stalls = [0.2, 0.19, 0.195, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]  # its best is at epoch 2: stalled for 3 epochs at epoch 5
    assert run_curves(patient, [*GOOD, stalls])[-1] == (True, 5)


def test_replay_of_an_unpruned_sweep_makes_the_live_pruned_sweeps_decisions(tmp_path, mlflow_uri):
    fields = {
        "n_trials": 4, "sampler": {"name": "random"}, "train": {"batch_size": 32, "max_epochs": 3},
        "search_space": {"train.lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}},
    }  # fmt: skip
    median = {"name": "median", "n_startup_trials": 1}
    live = load_sweep_config(write_sweep(tmp_path, mlflow_uri, name="live", pruner=median, **fields))
    (o,) = run_sweep(live)
    live_trials = [t for t in trials_of(live, o.plan.name) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert any(t.state == TrialState.PRUNED for t in live_trials)  # the case exercises pruning

    full = load_sweep_config(write_sweep(tmp_path, mlflow_uri, name="full", pruner="none", **fields))
    (f,) = run_sweep(full)
    study = optuna.load_study(study_name=f.plan.name, storage=full.storage_url())
    decisions = replay(curves_of(study), PrunerConfig.model_validate(median).build(f.plan.prune_context()), f.plan.name, "minimize", 3)
    assert [(d.pruned, d.epochs) for d in decisions] == [
        (t.state == TrialState.PRUNED, len(t.intermediate_values)) for t in live_trials
    ]
    assert [d.value for d in decisions if not d.pruned] == pytest.approx([t.value for t in live_trials if t.state == TrialState.COMPLETE])


def test_efficiency_summary_counts_kept_bests_flags_a_changed_verdict_and_recommends(tmp_path, mlflow_uri):
    import pandas as pd

    from benchmark.sweep.efficiency import REFERENCE, load_efficiency_config, recommend, summarize
    from benchmark.sweep.studies import plan_studies

    path = write_sweep(
        tmp_path, mlflow_uri, name="eff", models=["gru", "lstm"], sampler_seeds=[0, 1, 2],
        pruners={"fair": "median", "biased": "hyperband", "lossy": {"name": "median", "n_startup_trials": 1}},
        train={"batch_size": 32, "max_epochs": 6},
    )  # fmt: skip
    cfg = load_efficiency_config(path)
    plans = plan_studies(cfg.recorded(0))
    gru = {0: 0.010, 1: 0.012, 2: 0.011}  # gru clearly better than lstm at every seed
    lstm = {0: 0.050, 1: 0.066, 2: 0.052}  # by ratios that vary: equal ones have no spread to test
    rows = []
    for pruner, epochs, lstm_factor, gru_factor in [
        (REFERENCE, 48, 1.0, 1.0),
        ("fair", 20, 1.05, 1.0),  # bests within the 10 % margin: saved 58 % at equal best
        ("biased", 10, 0.2, 1.0),  # lstm's best 5x better than unpruned: the verdict flips (as a stand-in for any change)
        ("lossy", 8, 1.0, 1.5),  # gru loses 50 %: saved, but not at equal best
    ]:
        for seed in (0, 1, 2):
            rows.append({"seed": seed, "task": plans[0].label, "model": "gru", "pruner": pruner, "epochs": epochs, "seconds": epochs, "best": gru[seed] * gru_factor})
            rows.append({"seed": seed, "task": plans[0].label, "model": "lstm", "pruner": pruner, "epochs": epochs, "seconds": epochs, "best": lstm[seed] * lstm_factor})
    summary = summarize(cfg, pd.DataFrame(rows), plans).set_index("pruner")
    assert summary.loc[REFERENCE, "verdict"] == "gru better"
    assert summary.loc["fair", "saved_at_equal_best"] == pytest.approx(1 - 20 / 48)
    assert summary.loc["fair", "equal_best"] == 6 and not summary.loc["fair", "verdict_changed"]
    assert summary.loc["fair", "max_regret"] == pytest.approx(max(lstm.values()) * 0.05)
    assert summary.loc["biased", "verdict"] != "gru better" and summary.loc["biased", "verdict_changed"]
    assert summary.loc["lossy", "equal_best"] == 3 and pd.isna(summary.loc["lossy", "saved_at_equal_best"])
    choice, overall = recommend(summary.reset_index())
    assert choice == "lossy"  # the most epochs saved without a verdict changed ('biased' saves more, but changes one)
    assert recommend(summary.drop(index="lossy").reset_index())[0] == "fair"
    assert overall.set_index("pruner").loc["biased", "verdicts_changed"] == 1
