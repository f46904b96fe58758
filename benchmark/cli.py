"""Command line: ``rnnbench`` (or ``python -m benchmark``).

    rnnbench list
    rnnbench run task=adding model=lstm seed=1 train.max_epochs=5
    rnnbench suite configs/suites/default.yaml seeds=[0,1,2]

Heavy imports (torch, lightning, mlflow) happen inside the commands, so ``--help`` is instant.
A user's mistake ends with one ``rnnbench: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from benchmark.config import HELD, ConfigError
from benchmark.registry import UnknownNameError

USER_ERRORS = (ConfigError, UnknownNameError)


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from benchmark.config import ModelConfig
    from benchmark.models import CELLS, MODELS, parameter_count, resolve_architecture
    from benchmark.runner import make_console
    from benchmark.task import TASKS, create_task

    console = make_console()
    tasks = Table("task", "version", "description", title="tasks")
    for name, cls in TASKS.items():
        tasks.add_row(name, cls.version, cls.description)
    console.print(tasks)

    spec = create_task(args.task).spec()
    sizing = f"param_budget={args.param_budget:,}" if args.param_budget else f"hidden_size={args.hidden_size}"
    models = Table("model", "cell", "layers", "bidirectional", "hidden", "params", title=f"models (on task '{args.task}', {sizing})")
    used = []
    for name in MODELS.names(args.models):
        used.append(MODELS.get(name).cell)
        cfg = ModelConfig(name=name, **({"param_budget": args.param_budget} if args.param_budget else {"hidden_size": args.hidden_size}))
        arch = resolve_architecture(spec, cfg)
        models.add_row(name, arch.cell, str(arch.num_layers), str(arch.bidirectional), str(arch.hidden_size), f"{parameter_count(spec, arch):,}")
    console.print(models)
    cells = Table("cell", "family", "model.impl (default first)", "equations (benchmark/models/cells.py)", title="cells")
    for name, cell in CELLS.items():
        if name in used:
            cells.add_row(name, cell.family, " ".join(cell.impls), cell.summary)
    console.print(cells)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.config import load_run_config
    from benchmark.models import implementation
    from benchmark.task import create_task

    items = list(args.overrides)
    config = items.pop(0) if items and "=" not in items[0] else None
    cfg = load_run_config(config, items)
    create_task(cfg.task.name, **cfg.task.options), implementation(cfg.model)  # fail fast on bad names/options
    from benchmark.runner import check_trainer, execute_run, make_console, print_result, progress_bar

    check_trainer(cfg.train)

    console = make_console()
    with progress_bar(console) as progress:
        task_id = progress.add_task(f"{cfg.task.name}/{cfg.model.name}/seed{cfg.seed}", total=None, info="")
        result = execute_run(cfg, progress=progress, progress_task=task_id)
    print_result(console, result)
    console.print(f"MLflow run {result.run_id} in experiment '{cfg.tracking.experiment}' at {cfg.tracking.tracking_uri}")
    return 0 if result.status == "FINISHED" else 1


def cmd_suite(args: argparse.Namespace) -> int:
    from benchmark.config import load_suite_config
    from benchmark.models import implementation
    from benchmark.task import create_task

    runs = None
    args.overrides += ["until_decided=true"] * args.until_decided + [f"max_seeds={args.max_seeds}"] * (args.max_seeds is not None)
    if args.from_sweep:  # each study's best config, rerun over fresh seeds as an ordinary suite
        from benchmark.sweep import load_sweep_config, tuned_suite

        suite, runs = tuned_suite(load_sweep_config(args.from_sweep, [*filter(None, [args.config]), *args.overrides]))
    elif args.config:
        suite = load_suite_config(args.config, args.overrides)
    else:
        raise ConfigError("give a suite config, or --from-sweep SWEEP_CONFIG")
    for t in suite.tasks:  # validate every name and option before the first run starts
        create_task(t.name, **t.options)
    for model in {run.model.model_dump_json(): run.model for run in runs or suite.runs()}.values():
        implementation(model)
    from benchmark import record, until_decided
    from benchmark.runner import check_trainer, make_console

    for train in {run.train.model_dump_json(): run.train for run in runs or suite.runs()}.values():
        check_trainer(train)

    until_decided.check_suite(suite)
    console = make_console()
    outcome = until_decided.run(suite, console, runs)
    console.print(outcome.summary.rich_table())
    written = outcome.summary.write(Path(suite.results_dir) / suite.name, f"Suite '{suite.name}'")
    outcome.attach(written)
    failed = [r for r in outcome.executed if r.status in (record.FAILED, record.KILLED)]  # RUNNING: live elsewhere
    console.print(f"summary written to {', '.join(map(str, written))}")
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed; they are recorded in MLflow and will run again on resume.[/]")
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from benchmark.models import implementation
    from benchmark.runner import check_trainer, make_console
    from benchmark.sweep import load_sweep_config, outcome_table, run_sweep

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {args.workers})")
    sweep = load_sweep_config(args.config, args.overrides)
    for model in {run.model.model_dump_json(): run.model for run in sweep.as_suite(sweep.name, [sweep.seed]).runs()}.values():
        implementation(model)  # before any study starts
    check_trainer(sweep.train)
    if args.storage:
        sweep = sweep.model_copy(update={"storage": args.storage})
    console = make_console()
    outcomes = run_sweep(sweep, args.workers, console)
    console.print(outcome_table(outcomes, sweep))
    for o in outcomes:
        for note in o.notes:
            console.print(f"{o.plan.name}: {note}", markup=False, highlight=False)
    short = [o for o in outcomes if not o.reached_target]
    if short:
        console.print(f"[red]{len(short)} stud(ies) gave up short of {sweep.n_trials} finished trials (too many failures).[/]")
    if failed := sum(o.failed for o in outcomes):
        console.print(f"[red]{failed} trial(s) failed (reasons in MLflow and the trials' user attrs).[/]")
    return 1 if short or failed else 0


def cmd_sweep_efficiency(args: argparse.Namespace) -> int:
    from benchmark.runner import make_console
    from benchmark.sweep.efficiency import load_efficiency_config, run

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {args.workers})")
    run(load_efficiency_config(args.config, args.overrides), args.workers, make_console())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.report import attach_report, build_report

    from benchmark.decide.margins import parse

    out = Path(args.out or Path("results") / args.experiment)
    written = build_report(args.tracking_uri, args.experiment, out, parse(args.margin), args.interval)
    print(f"report written to {out}/ ({len(written)} files): {out / 'report.md'}, {out / 'report.html'}")
    if parents := attach_report(args.tracking_uri, args.experiment, out, written):
        print(f"attached to {len(parents)} suite run(s) in MLflow (artifacts report/): {', '.join(parents)}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from benchmark import robustness
    from benchmark.runner import make_console

    levels = [float(v) for v in args.levels]
    noise_dir = Path(args.noise_dir) if args.noise_dir else None
    n = robustness.run(args.tracking_uri, args.experiment, args.run_id, args.task, args.kind, levels, args.seed, noise_dir, make_console())
    print(f"logged robust/{robustness.kind_label(args.kind, noise_dir)}/<level>/<metric> on {n} run(s) at {args.tracking_uri}")
    return 0


def cmd_gates(args: argparse.Namespace) -> int:
    from benchmark import gates
    from benchmark.runner import make_console

    n = gates.run(args.tracking_uri, args.experiment, args.run_id, args.task, make_console())
    print(f"logged gates/<layer>/<direction>/<gate>/<stat> and the gates/ artifacts on {n} run(s) at {args.tracking_uri}")
    return 0


def _level(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number (inf for +inf dB)") from None


def cmd_speed(args: argparse.Namespace) -> int:
    import torch

    from benchmark.models import MODELS
    from benchmark.runner import make_console

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch")
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    console = make_console()
    models = _model_names(MODELS, args.cells) if args.cells else None
    for flag, values in (("--hidden", args.hidden), ("--batch", args.batch), ("--seq-len", args.seq_len)):
        if values and min(values) < 1:
            raise ConfigError(f"{flag} values must be positive integers (got {min(values)})")
    if args.overhead:
        from benchmark.overhead import measure_overhead, summary_lines

        if args.steps < 1 or args.repeats < 1:
            raise ConfigError(f"--steps and --repeats must be at least 1 (got {args.steps}, {args.repeats})")
        model = models[0] if models else "gru"
        batch = args.batch[0] if args.batch else 64
        options = {"seq_len": args.seq_len[0] if args.seq_len else 50}
        result = measure_overhead("adding", model, batch, args.steps, args.repeats, options, device=device)
        lines = summary_lines(result, f"adding T={options['seq_len']}", model, batch, args.steps, threads)
        print("\n".join(lines))
        return 0

    from benchmark import speed, speed_report

    preset = speed.PRESETS[args.preset]
    models = models or list(preset["cells"])
    if args.preset == "deepbench" and (args.hidden or args.batch or args.seq_len):  # a subset of its fixed shapes
        shapes = list(speed.select(preset["shapes"], args.hidden, args.batch, args.seq_len))
        if not shapes:
            values = " ".join(f"{flag} {' '.join(map(str, sorted({getattr(s, axis) for s in preset['shapes']})))}"
                              for flag, axis in (("--hidden", "hidden"), ("--batch", "batch"), ("--seq-len", "seq_len")))  # fmt: skip
            raise ConfigError(f"--preset deepbench has no shape with these --hidden/--batch/--seq-len values. Its values: {values}")
    elif args.hidden or args.batch or args.seq_len:
        axes = [given or sorted({getattr(s, a) for s in preset["shapes"]}) for given, a in ((args.hidden, "hidden"), (args.batch, "batch"), (args.seq_len, "seq_len"))]
        shapes = list(speed.grid(*axes))
    else:
        shapes = list(preset["shapes"])
    impls = args.impls or list(preset["impls"])
    total = len(speed.plan(models, shapes, impls)) * len(speed.MODES)  # a model with none of the impls: error here
    done = []

    def progress(row):
        done.append(row)
        console.print(f"[dim]{len(done)}/{total} {row.impl} {row.model} H={row.hidden} B={row.batch} T={row.seq_len} {row.mode}: "
                      + (f"{row.median_ms:.3g} ms" if row.runs else row.note) + "[/]", highlight=False)

    rows = speed.run_grid(models, shapes, impls, device, threads, args.min_run_time, not args.no_memory, progress, args.clock, args.compile_budget)
    written = speed_report.report(rows, device, threads, Path(args.out), console, args.preset)
    console.print(f"written: {', '.join(map(str, written))}")
    if args.track:
        n = speed_report.track(rows, device, args.tracking_uri, args.experiment)
        console.print(f"{n} MLflow runs in experiment '{args.experiment}' at {args.tracking_uri}")
    return 0


def _model_names(registry, patterns: list[str]) -> list[str]:
    names = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found = registry.names(pattern)
        else:
            registry.get(pattern)  # an unknown name raises with "did you mean"
            found = [pattern]
        if not found:
            raise ConfigError(f"--cells '{pattern}' matches no model. Valid choices: {', '.join(registry.names())}")
        names += [n for n in found if n not in names]
    return names


def _add_run_selection(p: argparse.ArgumentParser) -> None:
    """The finished runs a command re-evaluates from their checkpoints (robustness, gates)."""
    p.add_argument("--experiment", help="every finished run of this MLflow experiment")
    p.add_argument("--task", help="with --experiment: only the runs of this task (e.g. speech)")
    p.add_argument("--run-id", action="append", default=[], help="only this run (repeatable)")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store or server (default: %(default)s)")


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
    p.add_argument("config", nargs="?", help="suite config YAML (configs/suites/*.yaml)")
    p.add_argument(
        "--from-sweep",
        metavar="SWEEP_CONFIG",
        help="rerun each study's best config of this sweep over its `seeds` (suite '<sweep>-tuned')",
    )
    p.add_argument("overrides", nargs="*", help=overrides_help + " seeds=[0,1,2]")
    p.add_argument("--until-decided", action="store_true",
                   help="after the planned seeds, add seeds to the GRU-vs-LSTM pairs still undecided (sequential design)")
    p.add_argument("--max-seeds", type=int, metavar="N", help="--until-decided: the most seeds a pair gets (default: max(10, planned))")
    p.set_defaults(func=cmd_suite)

    p = sub.add_parser("sweep", help="Optuna studies per task x model: tune each variant fairly; resumable")
    p.add_argument("config", help="sweep config YAML (configs/sweeps/*.yaml)")
    p.add_argument("overrides", nargs="*", help=overrides_help + " n_trials=30 pruner=hyperband")
    p.add_argument("--workers", type=int, default=1, help="local worker processes on the same studies")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///optuna/<sweep>.db), e.g. postgresql://...")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("sweep-efficiency", help="each pruner replayed over unpruned sweeps: epochs saved, regret, verdicts")
    p.add_argument("config", help="efficiency config YAML (configs/sweeps/efficiency.yaml)")
    p.add_argument("overrides", nargs="*", help=overrides_help + " sampler_seeds=[0,1]")
    p.add_argument("--workers", type=int, default=1, help="local worker processes per sweep")
    p.set_defaults(func=cmd_sweep_efficiency)

    p = sub.add_parser("report", help="comparative report (Markdown + HTML) of an experiment's runs and sweeps")
    p.add_argument("--experiment", required=True, help="MLflow experiment, e.g. default-suite")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="MLflow store or server (default: %(default)s)")
    p.add_argument("--out", help="output folder (default: results/<experiment>)")
    p.add_argument("--margin", action="append", default=[], metavar="[TASK.]METRIC=VALUE",
                   help="equivalence margin over the suite's, e.g. mse=0.2 (relative for errors and throughput, "
                        "absolute for accuracies); repeatable")  # fmt: skip
    p.add_argument("--interval", default="t", help="per-variant intervals: t (default) or bootstrap (where n >= 5)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("robustness", help="re-evaluate finished runs' checkpoints on perturbed test inputs; logs robust/<kind>/<level>/<metric>")
    _add_run_selection(p)
    p.add_argument("--kind", required=True, help="perturbation: gaussian, distractor, snr, substitute, delete (the task says which it supports)")
    p.add_argument("--levels", nargs="+", type=_level, required=True, help="levels: std, markers, dB (inf: none) or rates, e.g. inf 30 20 10 5 0")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations, the same for every run (default: %(default)s)")
    p.add_argument("--noise-dir", help="snr: mix random windows of these recordings instead of white noise (e.g. _background_noise_)")
    p.set_defaults(func=cmd_robustness)

    p = sub.add_parser("gates", help="gate activations and saturation of finished runs' checkpoints on their test sets")
    _add_run_selection(p)
    p.set_defaults(func=cmd_gates)

    p = sub.add_parser("speed", help="forward/backward time of the cells over shapes; --overhead: framework vs plain loop")
    p.add_argument("--cells", nargs="+", metavar="MODEL", help="model variants or globs (default: the preset's), e.g. gru lstm 'bi*'")
    p.add_argument("--hidden", nargs="+", type=int,
                   help="hidden sizes (replace the preset's shapes with a grid; with --preset deepbench, keep its shapes with these values)")
    p.add_argument("--batch", nargs="+", type=int, help="batch sizes")
    p.add_argument("--seq-len", nargs="+", type=int, help="sequence lengths")
    p.add_argument("--preset", choices=("cpu", "cells", "scan", "deepbench"), default="cpu",
                   help="cpu: small grid of rnn/gru/lstm forms (default); cells: every cell at H=128, B=32, T=32; "
                   "scan: minGRU/minLSTM scan vs step loop, T=64..4096; deepbench: DeepBench's RNN training shapes (GPU)")
    p.add_argument("--impls", nargs="+", choices=("auto", "torch", "loop", "compiled", "scan"),
                   help="each where the cell has it: torch (cuDNN/ATen), loop (step loop over the cell's equations), "
                   "compiled (torch.compile of its step), scan (minGRU/minLSTM); auto: the cell's training default")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's, from OMP_NUM_THREADS or the cores)")
    p.add_argument("--min-run-time", type=float, default=0.1, help="seconds of timing per configuration (default: %(default)s)")
    p.add_argument("--compile-budget", type=float, default=60.0, help="seconds of torch.compile warm-ups after which compiled rows are skipped as n/a (default: %(default)s)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time (default) or process CPU time (for a shared, busy CPU)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--out", default="results/speed", help="folder for the CSVs and plot (default: %(default)s)")
    p.add_argument("--track", action="store_true", help="also log one MLflow run per model x shape x impl")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", default="speed")
    p.add_argument("--overhead", action="store_true", help="framework vs a plain PyTorch loop on adding T=50 (gru, batch 64)")
    p.add_argument("--steps", type=int, default=100, help="--overhead: training steps per run (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="--overhead: alternating repeats (default: %(default)s)")
    p.set_defaults(func=cmd_speed)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    from benchmark.record import COMMAND_ENV

    os.environ[COMMAND_ENV] = shlex.join(["rnnbench", *argv])  # MLflow's source of every run this command makes
    try:
        with HELD:
            if args.func not in (cmd_run, cmd_suite, cmd_sweep):
                HELD.release()
            return args.func(args)
    except USER_ERRORS as e:
        print(f"rnnbench: error: {e}{HELD.folded()}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit) as e:
        if isinstance(e, SystemExit) and e.code in (None, 0):
            raise
        # Lightning turns Ctrl+C and SIGTERM into SystemExit; the interrupted runs are already marked KILLED.
        print("rnnbench: interrupted; runs in progress are marked KILLED in MLflow. Rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
