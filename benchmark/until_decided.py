"""Seeds until decided: ``rnnbench suite CONFIG --until-decided [--max-seeds N]``.

After the planned seeds, each matched GRU-vs-LSTM pair of each task setting (``decide.matched``)
whose main-metric or throughput comparison is still undecided gets more seeds, look by look of a
group-sequential design fixed in advance (``decide.design``: the planned seed count, then doubling,
up to N; the alpha of each look spent by the union bound), and stops at the first look where both
are decided. A pair's decisions come from its finished runs in MLflow alone, so the same state
gives the same next step: a killed suite resumes where it stopped and never runs a seed twice.
Extra seeds are max(planned) + 1, + 2, ...; a look uses the smallest seeds both models finished.

The suite records its margins (always) and its design (with ``--until-decided``) on the MLflow
experiment, where ``rnnbench report`` reads them and reaches the same verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.console import Console
from rich.markup import escape

from benchmark import record, tracking
from benchmark.config import ConfigError, RunConfig, SuiteConfig
from benchmark.decide.design import Design
from benchmark.decide.margins import check, record_margins
from benchmark.decide.matched import QUESTIONS, PairDecision, decide_setting, matched_pairs
from benchmark.models import MODELS
from benchmark.record import ExperimentTag
from benchmark.report.collect import latest_finished, run_table
from benchmark.report.tables import by_label
from benchmark.suite import SuiteOutcome, run_suite
from benchmark.summary import summarize
from benchmark.task import create_task

DEFAULT_MAX_SEEDS = 10


def max_seeds(suite: SuiteConfig) -> int:
    return suite.max_seeds or max(DEFAULT_MAX_SEEDS, len(set(suite.seeds)))


def check_suite(suite: SuiteConfig) -> None:
    """One-line ConfigError for a margin the tasks cannot use or a sequential setting that cannot work."""
    if suite.report.margins:
        metrics: dict[str, set[str]] = {}
        for t in suite.tasks:  # spec() may read data; only when margins need checking
            metrics.setdefault(t.name, set()).update(m.name for m in create_task(t.name, **t.options).spec().metrics)
        check(suite.report.margins, metrics)
    planned = len(set(suite.seeds))
    if not suite.until_decided:
        if suite.max_seeds is not None:
            raise ConfigError(f"--max-seeds (max_seeds={suite.max_seeds}) applies only with --until-decided (until_decided: true)")
        return
    if suite.max_seeds is not None and suite.max_seeds < max(planned, 2):
        raise ConfigError(
            f"--max-seeds (max_seeds) {suite.max_seeds} is below the planned seed count {planned} (seeds: {sorted(set(suite.seeds))})"
            if suite.max_seeds < planned else f"--max-seeds (max_seeds) {suite.max_seeds}: a paired comparison needs at least 2 seeds"
        )  # fmt: skip
    if not matched_pairs(_shapes(suite)):
        raise ConfigError(
            f"--until-decided: models {', '.join(suite.models)} hold no GRU and LSTM variant of the same layers and direction "
            "(e.g. gru and lstm, bigru and bilstm)"
        )


def _shapes(suite: SuiteConfig) -> dict[str, tuple[str, int, bool]]:
    """model -> (cell, layers, bidirectional), the suite's model section overriding the variant's own."""
    shapes = {}
    for name in suite.models:
        v = MODELS.get(name)
        layers = suite.model.num_layers if suite.model.num_layers is not None else v.num_layers
        bidirectional = suite.model.bidirectional if suite.model.bidirectional is not None else v.bidirectional
        shapes[name] = (v.cell, layers, bidirectional)
    return shapes


def design_for(suite: SuiteConfig) -> Design:
    return Design.doubling(len(set(suite.seeds)), max_seeds(suite))


def run(suite: SuiteConfig, console: Console, runs: list[RunConfig] | None = None) -> SuiteOutcome:
    """The suite (its planned ``runs``), then, with ``until_decided``, the sequential phase; margins and design recorded."""
    planned = suite.runs() if runs is None else runs
    mlflow = tracking.client(suite.tracking.tracking_uri)
    exp_id = tracking.experiment_id(mlflow, suite.tracking.experiment)
    record_margins(mlflow, exp_id, suite.report.margins)
    if not suite.until_decided:
        return run_suite(suite, console, planned)
    design = design_for(suite)
    mlflow.set_experiment_tag(exp_id, ExperimentTag.DESIGN, design.to_json())
    console.print(f"until decided: {design.describe()}", highlight=False)
    first = run_suite(suite, console, planned)
    executed, attempted = list(first.executed), set()
    candidates = Candidates(planned, design.max_seeds)
    while True:
        decisions, finished = _decide(mlflow, exp_id, candidates, suite, design)
        todo = candidates.next_runs(decisions, finished, attempted, design)
        if not todo:
            break
        console.print(f"until decided: {len(todo)} more run(s) for the undecided pairs", highlight=False)
        attempted |= {c.run_key() for c in todo}
        executed += run_suite(suite, console, todo).executed
    for d in decisions:
        console.print(escape(f"{d.label}, {d.pair.name}, {d.question.name}: {d.decision.reason}"), highlight=False)
    extra = [c for c in candidates.extra if c.run_key() in finished or c.run_key() in attempted]
    return replace(first, executed=executed, summary=summarize(mlflow, exp_id, planned + extra))


@dataclass
class Candidates:
    """Every run a pair may get: the planned seeds, then max(planned) + 1, ... up to ``limit`` seeds."""

    planned: list[RunConfig]
    limit: int

    def __post_init__(self):
        seeds = sorted({c.seed for c in self.planned})
        self.seeds = seeds + list(range(seeds[-1] + 1, seeds[-1] + 1 + self.limit - len(seeds)))
        self.configs: dict[tuple[str, str], dict[int, RunConfig]] = {}
        self.extra: list[RunConfig] = []
        for cfg in self.planned:
            self.configs.setdefault(self._cell(cfg), {})[cfg.seed] = cfg
        for cell, by_seed in self.configs.items():
            template = by_seed[min(by_seed)]
            for seed in self.seeds:
                if seed not in by_seed:
                    by_seed[seed] = template.model_copy(update={"seed": seed})
                    self.extra.append(by_seed[seed])

    @staticmethod
    def _cell(cfg: RunConfig) -> tuple[str, str]:
        return create_task(cfg.task.name, **cfg.task.options).label, cfg.model.name

    @property
    def keys(self) -> set[str]:
        return {c.run_key() for by_seed in self.configs.values() for c in by_seed.values()}

    def next_runs(self, decisions: list[PairDecision], finished: set[str], attempted: set[str], design: Design) -> list[RunConfig]:
        """The runs that bring each undecided pair to its next look (none tried before in this process)."""
        by_pair: dict[tuple, list[PairDecision]] = {}
        for d in decisions:
            by_pair.setdefault((d.label, d.pair), []).append(d)
        todo = []
        for (label, pair), ds in by_pair.items():
            if all(d.decision.decided for d in ds):
                continue
            runs = (self.configs.get((label, pair.gru), {}), self.configs.get((label, pair.lstm), {}))
            both = [s for s in self.seeds if all(s in r and r[s].run_key() in finished for r in runs)]
            target = design.next_look(len(both))
            if target is None:
                continue
            count = 0
            for seed in self.seeds:
                if count == target:
                    break
                cfgs = [r[seed] for r in runs if seed in r]
                if len(cfgs) < 2:
                    continue
                missing = [c for c in cfgs if c.run_key() not in finished]
                if any(c.run_key() in attempted for c in missing):
                    continue  # failed in this process: the next seed takes its place
                todo += missing
                count += 1
        return list({c.run_key(): c for c in todo}.values())


def _decide(mlflow, exp_id: str, candidates: Candidates, suite: SuiteConfig, design: Design) -> tuple[list[PairDecision], set[str]]:
    """Every question's decisions for every matched pair, from the finished runs of the candidates in MLflow."""
    keys = candidates.keys
    runs = [r for r in tracking.search_all(mlflow, exp_id, f"attributes.status = '{record.FINISHED}'")
            if r.data.tags.get(record.Tag.RUN_KEY) in keys]  # fmt: skip
    finished = latest_finished(run_table(runs))
    decisions = [
        d for _, setting in (by_label(finished) if not finished.empty else [])
        for q in QUESTIONS for d in decide_setting(setting, q, suite.report.margins, design)
    ]  # fmt: skip
    return decisions, {r.data.tags[record.Tag.RUN_KEY] for r in runs}
