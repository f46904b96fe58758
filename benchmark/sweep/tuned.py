"""``rnnbench suite --from-sweep``: each study's best config, rerun over fresh seeds as an ordinary suite."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from benchmark.config import ConfigError, RunConfig, SuiteConfig
from benchmark.search_space import apply_params
from benchmark.sweep.config import SweepConfig
from benchmark.sweep.studies import count_trials, open_storage, plan_studies, safe_url
from benchmark.task import create_task


def tuned_suite(sweep: SweepConfig) -> tuple[SuiteConfig, list[RunConfig]]:
    """Each study's best params over ``sweep.seeds``, as an ordinary suite named ``<sweep>-tuned``."""
    if sweep.seed in sweep.seeds:
        raise ConfigError(
            f"seeds {sweep.seeds} include the sweep's training seed {sweep.seed}: rerun the tuned configs on "
            "fresh seeds, or the best trial's lucky initialisation counts twice"
        )
    storage = open_storage(sweep)
    best = {}
    for plan in plan_studies(sweep):
        try:
            study = optuna.load_study(study_name=plan.name, storage=storage)
        except KeyError:
            raise ConfigError(
                f"no study '{plan.name}' in {safe_url(sweep.storage_url())}: run the sweep first"
            ) from None
        c = count_trials(study)
        if c.finished < sweep.n_trials:
            raise ConfigError(
                f"study '{plan.name}' has {c.finished} of {sweep.n_trials} finished trials: finish the sweep first "
                "(every model gets the same budget)"
            )
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            raise ConfigError(f"study '{plan.name}' has no complete trial")
        best[(plan.label, plan.model)] = study.best_trial.params
    suite = sweep.as_suite(f"{sweep.name}-tuned", sweep.seeds)
    runs = [
        apply_params(r, best[(create_task(r.task.name, **r.task.options).label, r.model.name)]) for r in suite.runs()
    ]
    return suite, runs
