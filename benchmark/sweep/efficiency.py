"""``rnnbench sweep-efficiency``: what each pruner saves, what it costs, and whether it changes the verdict.

    rnnbench sweep-efficiency configs/sweeps/efficiency.yaml            # results in the config's `out`

The config is a sweep config plus ``sampler_seeds`` and ``pruners`` (label -> pruner). For each
sampler seed the sweep runs once *unpruned* (study ``<name>-seed<s>``, every trial's full curve
recorded in Optuna); then each pruner is replayed offline over those curves
(``benchmark.sweep.replay``: exact for the same trials; the sampler should be ``random`` so that a
live pruned sweep would meet the same trials). A pruned trial's remaining epochs are not counted.

Per task setting and pruner, over the seeds: epochs and (estimated) seconds spent, the best value
of each model, the regret against the unpruned best, how many studies kept their best within the
task's equivalence margin (``benchmark.decide.margins``), the saving "at equal best value"
(only when every study kept it), and the tuned verdict of the first two models (paired over
sampler seeds, ``benchmark.decide.compare_paired``) with and without pruning; a pruner that
changes a verdict is flagged. The recommended pruner saves the most epochs without changing any
verdict (how many bests it kept is beside it).
"""

from __future__ import annotations

import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from pydantic import Field, SerializeAsAny
from rich.console import Console

from benchmark import devices, tracking
from benchmark.config import ConfigError
from benchmark.decide import compare_paired, margin_for
from benchmark.sweep.config import NoPruner, PrunerConfig, SweepConfig, load_sweep_config
from benchmark.sweep.replay import best, curves_of, replay
from benchmark.sweep.studies import StudyPlan, open_storage, plan_studies

REFERENCE = "none"  # the recorded, unpruned sweep


class EfficiencyConfig(SweepConfig):
    """A sweep (run unpruned, whatever its ``pruner``) and the pruners to replay over its curves."""

    sampler_seeds: list[int] = Field([0, 1, 2], min_length=1, description="one unpruned sweep per seed")
    pruners: dict[str, SerializeAsAny[PrunerConfig]] = Field(min_length=1, description="label -> pruner, replayed")
    out: str = Field("results/sweep-efficiency", description="folder for summary.md and the CSVs")

    def pruners_used(self) -> list[tuple[str, PrunerConfig]]:
        if REFERENCE in self.pruners:
            raise ConfigError(f"pruners.{REFERENCE}: '{REFERENCE}' is the recorded unpruned sweep; give the pruners to compare with it")
        return [(f"pruners.{label}", p) for label, p in self.pruners.items()]

    def recorded(self, seed: int) -> SweepConfig:
        """The unpruned sweep of one sampler seed."""
        shared = self.model_dump(include=set(SweepConfig.model_fields))
        return SweepConfig.model_validate(shared | {"name": f"{self.name}-seed{seed}", "sampler_seed": seed, "pruner": "none"})


def load_efficiency_config(path: str | Path, overrides: list[str] = ()) -> EfficiencyConfig:
    return load_sweep_config(path, overrides, EfficiencyConfig)


def replay_all(cfg: EfficiencyConfig, plans_by_seed: dict[int, list[StudyPlan]]) -> pd.DataFrame:
    """One row per (seed, study, pruner): epochs, seconds, trials pruned and the best value, from the stored curves."""
    rows = []
    for seed, plans in plans_by_seed.items():
        sweep = cfg.recorded(seed)
        storage = open_storage(sweep)
        for plan in plans:
            curves = curves_of(optuna.load_study(study_name=plan.name, storage=storage))
            for label, pruner in {REFERENCE: NoPruner(), **cfg.pruners}.items():
                decisions = replay(curves, pruner.build(plan.prune_context()), plan.name, plan.direction, plan.base.train.max_epochs)
                rows.append({
                    "seed": seed, "task": plan.label, "model": plan.model, "pruner": label,
                    "trials": len(decisions), "pruned": sum(d.pruned for d in decisions),
                    "epochs": sum(d.epochs for d in decisions), "seconds": sum(d.seconds for d in decisions),
                    "best": best(decisions, plan.higher_is_better),
                })  # fmt: skip
    return pd.DataFrame(rows)


def summarize(cfg: EfficiencyConfig, rows: pd.DataFrame, plans: list[StudyPlan]) -> pd.DataFrame:
    """One row per (task setting, pruner): the figures the module doc lists."""
    meta = {p.label: p for p in plans}
    a, b = cfg.models[:2]
    out = []
    ref = rows[rows.pruner == REFERENCE].set_index(["seed", "task", "model"])
    verdicts = {}
    for (task, pruner), g in rows.groupby(["task", "pruner"], sort=False):
        plan = meta[task]
        margin = margin_for(cfg.report.margins, plan.base.task.name, plan.main_metric, plan.scale)
        bound = plan.scale.bound(margin)
        sign = -1 if plan.higher_is_better else 1
        ref_g = ref.loc[[(s, task, m) for s, m in zip(g.seed, g.model)]]
        t_best, t_ref = plan.scale.transform(g.best.to_numpy()), plan.scale.transform(ref_g.best.to_numpy())
        equal = int(sum(abs(x - y) <= bound + 1e-12 for x, y in zip(t_best, t_ref)))
        regret = max(sign * (x - y) for x, y in zip(g.best, ref_g.best)) + 0.0  # no "-0"
        saved = 1 - g.epochs.sum() / ref_g.epochs.sum()
        by_seed = {m: dict(zip(gm.seed, gm.best)) for m, gm in g.groupby("model")}
        d = compare_paired(by_seed.get(a, {}), by_seed.get(b, {}), plan.scale, margin,
                           higher_is_better=plan.higher_is_better, names=(a, b))  # fmt: skip
        verdict = d.winner and f"{d.winner} better" or d.verdict.value
        verdicts[(task, pruner)] = verdict
        row: dict[str, Any] = {
            "task": task, "pruner": pruner, "studies": len(g),
            "epochs": g.epochs.sum() / len(cfg.sampler_seeds), "seconds": g.seconds.sum() / len(cfg.sampler_seeds),
            "saved": saved, "equal_best": equal, "max_regret": regret,
            "saved_at_equal_best": saved if equal == len(g) else math.nan,
        }  # fmt: skip
        for m, gm in g.groupby("model", sort=False):
            row[f"best_{m}"] = gm.best.mean()
        row |= {"margin": margin, "verdict": verdict, "verdict_changed": verdict != verdicts.get((task, REFERENCE), verdict)}
        out.append(row)
    return pd.DataFrame(out)


def recommend(summary: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """Per pruner over all tasks: epochs saved, every best kept, any verdict changed; and the best pruner."""
    overall = []
    for pruner, g in summary.groupby("pruner", sort=False):
        ref = summary[summary.pruner == REFERENCE]
        overall.append({
            "pruner": pruner, "epochs": g.epochs.sum(), "saved": 1 - g.epochs.sum() / ref.epochs.sum(),
            "equal_best": f"{g.equal_best.sum()}/{g.studies.sum()}", "all_equal": bool((g.equal_best == g.studies).all()),
            "verdicts_changed": int(g.verdict_changed.sum()),
        })  # fmt: skip
    table = pd.DataFrame(overall)
    fair = table[(table.pruner != REFERENCE) & (table.verdicts_changed == 0)]
    choice = None if fair.empty else str(fair.sort_values("saved", ascending=False).pruner.iloc[0])
    return choice, table


def run(cfg: EfficiencyConfig, workers: int = 1, console: Console | None = None) -> Path:
    """Record the unpruned sweeps (resumable), replay the pruners, write summary.md and the CSVs to ``cfg.out``."""
    from benchmark.sweep.launch import run_sweep

    console = console or Console()
    plans_by_seed = {}
    for seed in cfg.sampler_seeds:
        sweep = cfg.recorded(seed)
        run_sweep(sweep, workers, console)
        plans_by_seed[seed] = plan_studies(sweep)
    rows = replay_all(cfg, plans_by_seed)
    summary = summarize(cfg, rows, plans_by_seed[cfg.sampler_seeds[0]])
    choice, overall = recommend(summary)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "studies.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    overall.to_csv(out / "overall.csv", index=False)
    (out / "summary.md").write_text(markdown(cfg, summary, overall, choice))
    console.print(f"recommended pruner: {choice}; written to {out}")
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def _pct(x: float) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else f"{100 * x:.0f} %"


def markdown(cfg: EfficiencyConfig, summary: pd.DataFrame, overall: pd.DataFrame, choice: str | None) -> str:
    import torch

    pruners = "; ".join(f"`{k}`: `{v.model_dump_json()}`" for k, v in cfg.pruners.items())
    lines = [
        f"# Sweep efficiency: {cfg.name}",
        "",
        f"Each study ({', '.join(cfg.models)} on each task setting, {cfg.n_trials} trials of at most "
        f"{cfg.train.max_epochs} epochs unless a task overrides it, sampler {cfg.sampler.name}) ran once unpruned per sampler "
        f"seed {cfg.sampler_seeds}; each pruner was replayed over the recorded curves (exact for the same trials). "
        f"Pruners: {pruners}.",
        "",
        "| task | pruner | epochs / seed | seconds / seed (est.) | saved | best kept (within margin) | max regret | saved at equal best | "
        + " | ".join(f"best {m}" for m in cfg.models) + " | tuned verdict | changed |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(cfg.models) + "---|---|",
    ]
    for r in summary.to_dict("records"):
        lines.append(
            f"| {r['task']} | {r['pruner']} | {r['epochs']:.0f} | {r['seconds']:.0f} | {_pct(r['saved'])} | "
            f"{r['equal_best']}/{r['studies']} (±{_fmt(r['margin'])}) | {_fmt(r['max_regret'])} | {_pct(r['saved_at_equal_best'])} | "
            + " | ".join(_fmt(r.get(f"best_{m}", math.nan)) for m in cfg.models)
            + f" | {r['verdict']} | {'**yes**' if r['verdict_changed'] else 'no'} |"
        )
    lines += ["", "| pruner | epochs / seed (all tasks) | saved | best kept | verdicts changed |", "|---|---|---|---|---|"]
    for r in overall.to_dict("records"):
        lines.append(f"| {r['pruner']} | {r['epochs']:.0f} | {_pct(r['saved'])} | {r['equal_best']} | {r['verdicts_changed']} |")
    lines += [
        "",
        f"**Recommended pruner: {choice or 'none qualifies'}** (most epochs saved with no verdict changed).",
        "",
        "Best values: mean over sampler seeds of each study's best validation value. Regret: pruned best minus "
        "unpruned best of the same study, worse direction positive, the largest over studies. Margin: the task's "
        "equivalence margin (relative for errors, absolute for accuracies). Verdict: paired over sampler seeds "
        f"({cfg.models[0]} vs {cfg.models[1]}, `compare_paired`); with few seeds it is often undecided. "
        "Seconds: each trial's recorded seconds times the share of its epochs kept (an estimate; setup included).",
        "",
        f"Made by `{tracking.command_line()}` on {platform.node()} ({devices.cpu_description()}, "
        f"{torch.get_num_threads()} torch threads), torch {torch.__version__}, optuna {optuna.__version__}, "
        f"commit {tracking.git_commit()}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    return "\n".join(lines)
