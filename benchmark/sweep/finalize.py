"""After the workers: each study's best trial, counts, plots and importances onto its MLflow parent run.

    rnnbench sweep configs/sweeps/default.yaml   # ends with outcome_table()
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState
from rich.markup import escape

from benchmark import record
from benchmark.record import StudyMetric, Tag
from benchmark.sweep.config import SweepConfig
from benchmark.sweep.studies import StudyAttr, StudyPlan, TrialAttr, safe_url


@dataclass
class StudyOutcome:
    plan: StudyPlan
    parent_run_id: str
    complete: int
    pruned: int
    failed: int
    epochs: int  # every epoch trained by the study's trials, pruned and failed ones included
    best_value: float | None
    best_params: dict[str, Any]
    reached_target: bool
    notes: list[str] = field(default_factory=list)


def finalize(sweep: SweepConfig, plan: StudyPlan, storage, mlflow) -> StudyOutcome:
    """Best params and value, trial counts, plots and importances onto the study's parent run."""
    study = optuna.load_study(study_name=plan.name, storage=storage)
    parent = study.user_attrs[StudyAttr.PARENT_RUN_ID]
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and TrialAttr.FAILURE in t.user_attrs)
    epochs = sum(int(t.user_attrs.get(TrialAttr.EPOCHS, len(t.intermediate_values))) for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    metrics = {
        StudyMetric.N_COMPLETE: states[TrialState.COMPLETE],
        StudyMetric.N_PRUNED: states[TrialState.PRUNED],
        StudyMetric.N_FAILED: failed,
        StudyMetric.EPOCHS_TOTAL: epochs,
    }
    out = StudyOutcome(
        plan, parent, states[TrialState.COMPLETE], states[TrialState.PRUNED], failed, epochs,
        best.value if best else None, dict(best.params) if best else {},
        states[TrialState.COMPLETE] + states[TrialState.PRUNED] >= sweep.n_trials,
    )  # fmt: skip
    if best:
        metrics[StudyMetric.BEST_VALUE] = best.value
        out.notes += _log_best(mlflow, parent, best)
    now = int(time.time() * 1000)
    mlflow.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    out.notes += _log_plots(sweep, study, parent, mlflow, len(complete))
    record.end_run(mlflow, parent, record.FINISHED if out.reached_target else record.FAILED)
    return out


def _log_best(mlflow, parent: str, best) -> list[str]:
    tags = {Tag.BEST_TRIAL: str(best.number), Tag.BEST_RUN_ID: best.user_attrs.get(TrialAttr.RUN_ID, "")}
    best_params = {f"{record.BEST_PREFIX}{k}": str(v) for k, v in best.params.items()}
    mlflow.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
    try:
        mlflow.log_batch(parent, params=[Param(k, v) for k, v in best_params.items()])
    except MlflowException:  # params are immutable: an extended study found a better trial
        mlflow.log_batch(parent, tags=[RunTag(k, v) for k, v in best_params.items()])
        return ["best changed since the params were first logged: tags best.* hold the current one"]
    return []


def _log_plots(sweep: SweepConfig, study: optuna.Study, parent: str, mlflow, n_complete: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    # Optuna 5 changed the default evaluator: pin fANOVA (seeded) so importances stay comparable.
    evaluator = functools.partial(optuna.importance.FanovaImportanceEvaluator, seed=sweep.sampler_seed)
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
        "param_importances": lambda: ovm.plot_param_importances(study, evaluator=evaluator()),
    }
    notes = []
    with tempfile.TemporaryDirectory(prefix="rnnbench-sweep-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:  # fANOVA needs complete trials whose values and params vary
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator()) if n_complete >= 2 else None
        except (ValueError, RuntimeError) as e:
            importances = None
            notes.append(f"no importances: {e}")
        if importances is not None:
            path = Path(tmp) / record.IMPORTANCES_ARTIFACT
            path.write_text(json.dumps({k: float(v) for k, v in importances.items()}, indent=2))
            mlflow.log_artifact(parent, str(path))
        else:
            del plots["param_importances"]
        for name, draw in plots.items():
            try:
                ax = draw()
            except (ValueError, RuntimeError) as e:
                notes.append(f"no {name} plot: {e}")
                continue
            fig = ax.figure
            fig.suptitle(study.study_name, fontsize=9, x=0.01, ha="left")
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = Path(tmp) / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            mlflow.log_artifact(parent, str(path), "plots")
    return notes


def outcome_table(outcomes: list[StudyOutcome], sweep: SweepConfig):
    from rich.table import Table

    table = Table(
        "task", "model", "trials c/p/f", "epochs", "best val", "best params",
        title=f"sweep {sweep.name}: complete/pruned/failed trials, epochs trained, best trial",
        caption=f"Without pruning every trial trains {sweep.train.max_epochs} epochs. MLflow: parent runs tagged "
        f"kind=sweep in experiment '{sweep.tracking.experiment}'. Optuna: {safe_url(sweep.storage_url())}",
        caption_justify="left",
    )
    for o in outcomes:
        arrow = "↑" if o.plan.higher_is_better else "↓"
        best = f"{o.plan.main_metric} {arrow} {o.best_value:.4g}" if o.best_value is not None else "-"
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in o.best_params.items())
        counts = f"{o.complete}/{o.pruned}/{o.failed}"
        table.add_row(escape(o.plan.label), o.plan.model, counts, str(o.epochs), best, escape(params) or "-")
    return table
