"""``make gpu-check``: the GPU path proven in one command, in under 8 minutes on one H100.

    make gpu-check                                # = python -m benchmark.gpu_check, after make setup
    python -m benchmark.gpu_check --out /tmp/gc   # the results folder goes under --out (default results/)
    python -m benchmark.gpu_check --dry-run       # the same parts on the CPU at toy sizes (tests the plumbing)

Five parts run one after another, each a subprocess under its own time limit: the ``cuda`` tests,
``rnnbench speed --preset deepbench`` on DeepBench's batch-32 shapes up to T = 187, ``rnnbench
speed --overhead``, the default suite into its own MLflow store, and its report. At its limit a
part gets SIGINT (pytest and the runs then record what they finished) and SIGKILL ``GRACE_S``
later; a part that fails or runs out of time is reported and the next one still runs. Everything
goes to ``<out>/gpu-check-<gpu>-torch<version>/`` (replaced on a rerun), ending with summary.md.
Exit status: 0 every part passed, 1 some part failed, 2 no CUDA device (before anything runs).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GRACE_S = 8  # after SIGINT, before SIGKILL
OWN_S = 20  # the check's own work around the parts: imports, reading results, the summary
DEADLINE_S = 8 * 60
EXPERIMENT = "gpu-check"
PASSED, FAILED, TIMED_OUT = "passed", "failed", "timed out"


@dataclass(frozen=True)
class Sizes:
    """What the parts run at: the GPU check's sizes, or the dry run's toy sizes on the CPU."""

    device: str
    test_workers: int  # pytest-xdist workers; 0: in the pytest process
    speed: tuple[str, ...]  # `rnnbench speed --preset deepbench` options: which of its shapes, how long
    overhead: tuple[str, ...]
    suite: tuple[str, ...]  # overrides of configs/suites/default.yaml
    limits: dict[str, int]  # seconds per part


GPU = Sizes(
    device="cuda",
    test_workers=8,  # compiling 13 cells' steps dominates; a 16-core machine compiles 8 at once
    speed=("--batch", "32", "--seq-len", "1", "25", "50", "150", "187"),  # 14 shapes, H = 256 ... 4096
    overhead=("--repeats", "3"),
    suite=("jobs=4",),
    limits={"tests": 120, "deepbench": 50, "overhead": 45, "suite": 165, "report": 35},
)
DRY_RUN = Sizes(
    device="cpu",
    test_workers=0,
    speed=("--seq-len", "1", "--threads", "1", "--min-run-time", "0.01"),  # (512, 32, 1) only
    overhead=("--steps", "3", "--repeats", "1", "--batch", "8", "--seq-len", "8", "--threads", "1"),
    suite=("tasks=[{name: adding, seq_len: 8, train_size: 64, val_size: 32, test_size: 32}]", "seeds=[0,1]",
           "until_decided=false", "max_seeds=null", "train.max_epochs=1", "model.param_budget=1000", "jobs=1"),  # fmt: skip
    limits={"tests": 300, "deepbench": 300, "overhead": 300, "suite": 300, "report": 300},
)


@dataclass(frozen=True)
class Part:
    name: str
    argv: tuple[str, ...]  # after `python -m`
    limit_s: int

    @property
    def command(self) -> str:
        """As a person would type it."""
        head = ("rnnbench",) if self.argv[0] == "benchmark" else ("python", "-m", self.argv[0])
        return shlex.join(head + self.argv[1:])


@dataclass
class Outcome:
    part: Part
    status: str
    seconds: float
    returncode: int | None = None
    detail: str = ""


@dataclass
class Findings:
    """What the parts' files say, read after all of them ran."""

    tests: dict = field(default_factory=dict)
    ratios: list[dict] = field(default_factory=list)  # LSTM/GRU time per DeepBench shape and mode
    speed_rows: int = 0
    speed_na: list[str] = field(default_factory=list)
    overhead: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)  # MLflow status -> runs
    verdicts: list[str] = field(default_factory=list)


def folder_name(sizes: Sizes) -> str:
    import torch

    version = torch.__version__.split("+")[0]
    if sizes.device == "cuda":
        gpu = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
        return f"gpu-check-{gpu}-torch{version}"
    return f"gpu-check-dry-run-cpu-torch{version}"


def plan(folder: Path, sizes: Sizes) -> list[Part]:
    """The five parts, in order, writing under ``folder`` (named from the repository root, where they run)."""
    folder = shown(folder)
    store = f"sqlite:///{folder / 'mlflow.db'}"
    limit = sizes.limits
    return [
        Part("tests", ("pytest", "-q", "-m", "cuda", "tests/test_cuda.py", "-n", str(sizes.test_workers), "-p", "no:cacheprovider",
                       f"--junitxml={folder / 'tests.xml'}"), limit["tests"]),  # fmt: skip
        Part("deepbench", ("benchmark", "speed", "--preset", "deepbench", "--device", sizes.device, *sizes.speed,
                           "--out", str(folder / "speed")), limit["deepbench"]),  # fmt: skip
        Part("overhead", ("benchmark", "speed", "--overhead", "--device", sizes.device, *sizes.overhead), limit["overhead"]),
        Part("suite", ("benchmark", "suite", "configs/suites/default.yaml", f"tracking.tracking_uri={store}",
                       f"tracking.experiment={EXPERIMENT}", f"results_dir={folder}", f"train.accelerator={sizes.device}",
                       *sizes.suite), limit["suite"]),  # fmt: skip
        Part("report", ("benchmark", "report", "--experiment", EXPERIMENT, "--tracking-uri", store, "--out", str(folder / "report")),
             limit["report"]),  # fmt: skip
    ]


def shown(path: Path) -> Path:
    """``path`` from the repository root when it lies inside, so commands and summaries hold no machine's own paths."""
    try:
        return path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return path.resolve()


def worst_case_s(parts: list[Part]) -> int:
    """Every part at its limit plus its grace period, and the check's own work."""
    return sum(p.limit_s + GRACE_S for p in parts) + OWN_S


def run_part(part: Part, log: Path) -> Outcome:
    """Run one part in its own process group, output to ``log``; at its limit SIGINT, then SIGKILL."""
    env = os.environ | {"PYTHONUNBUFFERED": "1", "COLUMNS": "160"}  # a complete log even when killed; tables unwrapped
    env.pop("RNNBENCH_CUDA_TESTS_DEVICE", None)  # the cuda tests run on CUDA here, or are skipped
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", *part.argv], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # fmt: skip
        try:
            code = proc.wait(timeout=part.limit_s)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGINT)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()
            return Outcome(part, TIMED_OUT, time.perf_counter() - started, proc.returncode, f"stopped at its {part.limit_s} s limit")
        except BaseException:  # Ctrl+C on the check: take the part down with it
            _signal(proc, signal.SIGKILL)
            raise
    return Outcome(part, PASSED if code == 0 else FAILED, time.perf_counter() - started, code, "" if code == 0 else f"exit status {code}")


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the part's own children too: xdist workers, suite workers
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------------- reading what the parts wrote


def read_tests(path: Path) -> dict:
    """Counts and failed test ids from pytest's JUnit XML (written on SIGINT too)."""
    if not path.is_file():
        return {}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failed, reasons = [], set()
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        name = f"{case.get('name')}"
        if "failure" in kinds or "error" in kinds:
            counts["failed" if "failure" in kinds else "errors"] += 1
            failed.append(name)
        elif "skipped" in kinds:
            counts["skipped"] += 1
            reasons.add(case.find("skipped").get("message", ""))
        else:
            counts["passed"] += 1
    return counts | {"failed_ids": failed, "skip_reasons": sorted(reasons)}


def read_speed(folder: Path) -> tuple[list[dict], int, list[str]]:
    """LSTM/GRU ratios per shape and mode, configurations timed, and those reported n/a."""
    ratios, rows, na = [], 0, []
    for path in folder.glob("*-lstm-over-gru.csv"):
        with path.open() as fh:
            ratios += [r for r in csv.DictReader(fh)]
    for path in folder.glob("speed-*.csv"):
        if path.name.endswith(("-lstm-over-gru.csv", "-scaling.csv", "-loop-over-scan.csv")):
            continue
        with path.open() as fh:
            for r in csv.DictReader(fh):
                rows += 1
                if r["note"]:
                    na.append(f"{r['model']} H={r['hidden']} B={r['batch']} T={r['seq_len']} {r['mode']}: {r['note']}")
    return ratios, rows, na


def read_overhead(log: Path) -> list[str]:
    """The ratio lines of ``rnnbench speed --overhead``."""
    if not log.is_file():
        return []
    keep = ("throughput ratio framework/plain:", "  training CPU time ratio", "framework overhead:")
    return [line.strip() for line in log.read_text().splitlines() if line.startswith(keep)]


def read_runs(folder: Path) -> dict[str, int]:
    """MLflow statuses of the suite's training runs (not its parent run)."""
    if not (folder / "mlflow.db").is_file():
        return {}
    from benchmark import record, tracking

    mlflow = tracking.client(f"sqlite:///{folder / 'mlflow.db'}")
    exp_id = tracking.experiment_id(mlflow, EXPERIMENT, create=False)
    counts: dict[str, int] = {}
    for run in tracking.search_all(mlflow, exp_id, f"tags.`{record.Tag.KIND}` = '{record.RunKind.RUN}'") if exp_id else []:
        counts[run.info.status] = counts.get(run.info.status, 0) + 1
    return counts


def read_verdicts(path: Path) -> list[str]:
    """The report's pooled GRU-vs-LSTM answers, one line each."""
    if not path.is_file():
        return []
    with path.open() as fh:
        return [f"{r['question']} {r['reason']}" for r in csv.DictReader(fh)]


def read_findings(folder: Path) -> Findings:
    found = Findings(tests=read_tests(folder / "tests.xml"))
    found.ratios, found.speed_rows, found.speed_na = read_speed(folder / "speed")
    found.overhead = read_overhead(folder / "overhead-output.txt")
    found.runs = read_runs(folder)
    found.verdicts = read_verdicts(folder / "report" / "overall.csv")
    return found


def judge(outcomes: list[Outcome], found: Findings, sizes: Sizes) -> None:
    """A part that exited 0 still fails if its files say so (a failed run, an n/a shape, no result)."""
    checks = {
        "tests": lambda: "no JUnit XML" if not found.tests else (
            "every test skipped on a CUDA machine" if sizes.device == "cuda" and not found.tests["passed"] else
            f"{found.tests['failed'] + found.tests['errors']} failed" if found.tests["failed"] + found.tests["errors"] else ""),
        "deepbench": lambda: "no LSTM/GRU ratios written" if not found.ratios else (f"{len(found.speed_na)} configuration(s) n/a" if found.speed_na else ""),
        "overhead": lambda: "" if any(line.startswith("throughput ratio") for line in found.overhead) else "no ratio printed",
        "suite": lambda: "" if set(found.runs) == {"FINISHED"} else f"runs: {_counts(found.runs) or 'none'}",
        "report": lambda: "" if found.verdicts else "no pooled answer in overall.csv",
    }  # fmt: skip
    for o in outcomes:
        problem = checks[o.part.name]()
        if problem and o.status == PASSED:
            o.status, o.detail = FAILED, problem
        elif problem:
            o.detail = f"{o.detail}; {problem}"


def _counts(runs: dict[str, int]) -> str:
    return ", ".join(f"{n} {status.lower()}" for status, n in sorted(runs.items()))


# ----------------------------------------------------------------------------- the summary


def machine(sizes: Sizes) -> dict[str, str]:
    import lightning
    import torch

    from benchmark import tracking

    info = {}
    if sizes.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["GPU"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s)"
        driver = _nvidia_smi("driver_version")
        if driver:
            info["driver"] = driver
        rnn = torch.backends.cudnn.rnn.fp32_precision if hasattr(torch.backends.cudnn, "rnn") else f"allow_tf32={torch.backends.cudnn.allow_tf32}"
        info["float32"] = (f"cuDNN RNNs {rnn}, matmul {torch.get_float32_matmul_precision()} (torch's defaults: the speed "
                           "and suite parts ran with them; the tests compare implementations with TF32 off)")  # fmt: skip
    info["CPU"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; host {platform.node()}"
    info["torch"] = (f"{torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
                     f"lightning {lightning.__version__}, Python {platform.python_version()}")  # fmt: skip
    info["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info["commit"] = tracking.git_commit()
    return info


def _nvidia_smi(query: str) -> str:
    if not shutil.which("nvidia-smi"):
        return ""
    done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""


def _ratio_line(ratios: list[dict], mode: str) -> str:
    values = [float(r["lstm_over_gru"]) for r in ratios if r["mode"] == mode]
    if not values:
        return f"{mode}: none"
    shapes = f"{len(values)} shape" + "s" * (len(values) != 1)
    return f"{mode} median {statistics.median(values):.2f} (range {min(values):.2f}-{max(values):.2f}, {shapes})"


def summary_lines(outcomes: list[Outcome], found: Findings, folder: Path, elapsed: float, limit: int) -> list[str]:
    """The one-screen summary (also the top of summary.md)."""
    failed = [o for o in outcomes if o.status != PASSED]
    lines = [f"{'part':<10} {'limit':>6} {'took':>6}  result"]
    for o in outcomes:
        lines.append(f"{o.part.name:<10} {o.part.limit_s:>5}s {o.seconds:>5.0f}s  {o.status}{': ' + o.detail if o.detail else ''}")
    t = found.tests
    if t:
        lines.append(f"tests: {t['passed']} passed, {t['failed']} failed, {t['errors']} errors, {t['skipped']} skipped"
                     + (f" ({'; '.join(t['skip_reasons'])[:120]})" if t["skipped"] else ""))  # fmt: skip
        lines += [f"  failed: {name}" for name in t["failed_ids"][:5]]
    if found.ratios:
        lines.append(f"LSTM/GRU time at the DeepBench shapes ({found.speed_rows} timings): "
                     f"{_ratio_line(found.ratios, 'forward+backward')}; {_ratio_line(found.ratios, 'forward')}")  # fmt: skip
    lines += [f"overhead: {line}" for line in found.overhead if line.startswith("throughput ratio")]
    suite = next((o for o in outcomes if o.part.name == "suite"), None)
    if suite:
        lines.append(f"suite: {suite.seconds:.0f} s, runs {_counts(found.runs) or 'none'}")
    lines += [f"verdict: {v}" for v in found.verdicts]
    lines.append(f"{len(outcomes) - len(failed)} of {len(outcomes)} parts passed in {elapsed:.0f} s (worst case {limit} s). "
                 f"Everything is in {shown(folder)}/ (summary.md)")  # fmt: skip
    return lines


def write_summary(folder: Path, lines: list[str], outcomes: list[Outcome], found: Findings, info: dict[str, str], dry_run: bool) -> Path:
    title = "GPU check (dry run on the CPU, toy sizes)" if dry_run else f"GPU check: {info.get('GPU', '')}"
    made = "`python -m benchmark.gpu_check --dry-run`" if dry_run else "`make gpu-check` (= `python -m benchmark.gpu_check`)"
    md = [f"# {title}", "", f"Made by {made}; the block below is what it printed.", "",
          "```", *lines, "```", "", "## Machine", "", *[f"- {k}: {v}" for k, v in info.items()], "",
          "## Commands", "", "Run from the repository root in this order; each part's output is `<part>-output.txt` here.", "",
          "| part | limit | took | result | command |", "|---|---|---|---|---|"]  # fmt: skip
    md += [f"| {o.part.name} | {o.part.limit_s} s | {o.seconds:.0f} s | {o.status} | `{o.part.command}` |" for o in outcomes]
    if found.ratios:
        md += ["", "## LSTM time / GRU time at the DeepBench shapes", "",
               "`torch.nn.LSTM`/`GRU` (cuDNN on the GPU), input size = hidden size, median of `torch.utils.benchmark` blocked repeats, "
               "CUDA synchronised; files under `speed/`.", "",
               "| hidden | batch | T | mode | GRU ms | LSTM ms | LSTM/GRU |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        md += [f"| {r['hidden']} | {r['batch']} | {r['seq_len']} | {r['mode']} | {float(r['gru_ms']):.3g} | {float(r['lstm_ms']):.3g} "
               f"| {float(r['lstm_over_gru']):.2f} |" for r in found.ratios]  # fmt: skip
    if found.speed_na:
        md += ["", "Configurations reported n/a:", "", *[f"- {line}" for line in found.speed_na]]
    md += ["", "The default suite's summary is under `default/`, its report under `report/` (report.md, report.html, CSVs); "
           "its MLflow store `mlflow.db` is not committed."]  # fmt: skip
    path = folder / "summary.md"
    path.write_text("\n".join(md) + "\n")
    return path


# ----------------------------------------------------------------------------- the command


def cuda_problem() -> str | None:
    """Why there is no CUDA device to check, or None."""
    import torch

    if torch.cuda.is_available():
        return None
    build = "is a CPU-only build" if torch.version.cuda is None else f"(CUDA {torch.version.cuda}) sees no device"
    return (f"no CUDA device found: torch {torch.__version__} {build}. On a GPU machine install a CUDA torch into .venv "
            "(README: Checking a GPU machine); --dry-run runs the same parts on the CPU at toy sizes")  # fmt: skip


def check(out: Path, sizes: Sizes, dry_run: bool, say=print) -> int:
    """Run every part, then read, judge, summarise; returns the exit status."""
    started = time.perf_counter()
    folder = (out / folder_name(sizes)).resolve()
    if folder.exists():
        shutil.rmtree(folder)  # a rerun starts clean: the suite must not resume an earlier check's runs
    folder.mkdir(parents=True)
    parts = plan(folder, sizes)
    say(f"rnnbench gpu-check: {len(parts)} parts, worst case {worst_case_s(parts)} s, into {shown(folder)}/")
    outcomes = []
    for i, part in enumerate(parts, 1):
        say(f"[{i}/{len(parts)}] {part.name} (limit {part.limit_s} s): {part.command}")
        outcomes.append(run_part(part, folder / f"{part.name}-output.txt"))
        say(f"      {outcomes[-1].status} in {outcomes[-1].seconds:.0f} s")
    found = read_findings(folder)
    judge(outcomes, found, sizes)
    lines = summary_lines(outcomes, found, folder, time.perf_counter() - started, worst_case_s(parts))
    write_summary(folder, lines, outcomes, found, machine(sizes), dry_run)
    say("")
    for line in lines:
        say(line)
    return 0 if all(o.status == PASSED for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results", help="folder for gpu-check-<gpu>-torch<version>/ (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="the same parts on the CPU at toy sizes: checks the plumbing, measures nothing")
    args = parser.parse_args(argv)
    if not args.dry_run:
        problem = cuda_problem()
        if problem:
            print(f"rnnbench: error: {problem}", file=sys.stderr)
            return 2
    try:
        return check(Path(args.out), DRY_RUN if args.dry_run else GPU, args.dry_run)
    except KeyboardInterrupt:
        print("rnnbench: interrupted; the part in progress was stopped. Rerun to check again.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
