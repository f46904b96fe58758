"""Command line: ``rnnbench`` (or ``python -m benchmark``).

    rnnbench list
    rnnbench run task=adding model=lstm seed=1 train.max_epochs=5
    rnnbench suite configs/suites/default.yaml seeds=[0,1,2]

Heavy imports (torch, lightning, mlflow) happen inside the commands, so ``--help`` is instant.
A user's mistake ends with one ``rnnbench: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.config import ConfigError
from benchmark.registry import UnknownNameError

USER_ERRORS = (ConfigError, UnknownNameError)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from benchmark.config import ModelConfig
    from benchmark.models import MODELS, parameter_count, resolve_architecture
    from benchmark.task import TASKS, create_task

    console = Console()
    tasks = Table("task", "version", "description", title="tasks")
    for name, cls in TASKS.items():
        tasks.add_row(name, cls.version, cls.description)
    console.print(tasks)

    spec = create_task(args.task).spec()
    sizing = f"param_budget={args.param_budget:,}" if args.param_budget else f"hidden_size={args.hidden_size}"
    models = Table("model", "cell", "layers", "bidirectional", "hidden", "params", title=f"models (on task '{args.task}', {sizing})")
    for name in MODELS.names(args.models):
        cfg = ModelConfig(name=name, **({"param_budget": args.param_budget} if args.param_budget else {"hidden_size": args.hidden_size}))
        arch = resolve_architecture(spec, cfg)
        models.add_row(name, arch.cell, str(arch.num_layers), str(arch.bidirectional), str(arch.hidden_size), f"{parameter_count(spec, arch):,}")
    console.print(models)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from benchmark.config import load_run_config
    from benchmark.models import MODELS
    from benchmark.task import create_task

    items = list(args.overrides)
    config = items.pop(0) if items and "=" not in items[0] else None
    cfg = load_run_config(config, items)
    create_task(cfg.task.name, **cfg.task.options), MODELS.get(cfg.model.name)  # fail fast on bad names/options
    from benchmark.runner import execute_run
    from benchmark.suite import _progress, _report_run

    console = Console()
    with _progress(console) as progress:
        task_id = progress.add_task(f"{cfg.task.name}/{cfg.model.name}/seed{cfg.seed}", total=None, info="")
        result = execute_run(cfg, progress=progress, progress_task=task_id)
    _report_run(console, result)
    console.print(f"MLflow run {result.run_id} in experiment '{cfg.tracking.experiment}' at {cfg.tracking.tracking_uri}")
    return 0 if result.status == "FINISHED" else 1


def cmd_suite(args: argparse.Namespace) -> int:
    from rich.console import Console

    from benchmark.config import load_suite_config
    from benchmark.models import MODELS
    from benchmark.task import create_task

    suite = load_suite_config(args.config, args.overrides)
    for t in suite.tasks:  # validate every name and option before the first run starts
        create_task(t.name, **t.options)
    for m in suite.models:
        MODELS.get(m)
    from benchmark.suite import run_suite

    console = Console()
    outcome = run_suite(suite, console)
    console.print(outcome.summary.rich_table())
    written = outcome.summary.write(Path(suite.results_dir) / suite.name, f"Suite '{suite.name}'")
    failed = [r for r in outcome.executed if r.status != "FINISHED"]
    console.print(f"summary written to {', '.join(map(str, written))}")
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed; they are recorded in MLflow and will run again on resume.[/]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnbench", description="GRU or LSTM: which, when, and at what cost?")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered tasks and model variants with parameter counts")
    p.add_argument("--task", default="adding", help="task whose input/output sizes the parameter counts use")
    p.add_argument("--models", default="*", help="glob over model names, e.g. 'bi*'")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--hidden-size", type=int, default=128)
    size.add_argument("--param-budget", type=int, help="size every model to about this many parameters")
    p.set_defaults(func=cmd_list)

    overrides_help = "key=value overrides, e.g. train.lr=3e-3 model.param_budget=20000"
    p = sub.add_parser("run", help="one task x one model x one seed")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="[CONFIG] KEY=VALUE",
        help="optional run config YAML (configs/tasks/*.yaml), then " + overrides_help + " task=adding model=lstm seed=1",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("suite", help="tasks x models x seeds (the main job); resumable")
    p.add_argument("config", help="suite config YAML (configs/suites/*.yaml)")
    p.add_argument("overrides", nargs="*", help=overrides_help + " seeds=[0,1,2]")
    p.set_defaults(func=cmd_suite)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"rnnbench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
