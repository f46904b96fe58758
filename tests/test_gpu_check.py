"""`make gpu-check` on a machine without a GPU: it stops at once with one line; its orchestration (time
limits, findings, summary), dry-run on the CPU at toy sizes."""

from __future__ import annotations

import csv
import os
import shutil
import statistics
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark import gpu_check, speed
from benchmark.cli import build_parser
from tests.conftest import REPO_ROOT

no_gpu_here = pytest.mark.skipif(
    torch.cuda.is_available() or shutil.which("nvidia-smi") is not None, reason="a GPU is present: the check would run for minutes"
)


@no_gpu_here
def test_without_cuda_the_check_stops_at_once_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmark.gpu_check", "--out", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("rnnbench: error: no CUDA device found: torch ") and done.stderr.count("\n") == 1
    assert "--dry-run" in done.stderr and not list(tmp_path.iterdir())  # nothing written


@no_gpu_here
def test_make_gpu_check_stops_at_once_with_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # not a sub-make of `make test`
    done = subprocess.run(["make", "-s", "gpu-check"], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and done.stdout == ""
    assert lines[0].startswith("rnnbench: error: no CUDA device found (nvidia-smi lists no GPU")
    assert all(line.startswith("make: ") for line in lines[1:]) and "Traceback" not in done.stderr  # only make's own "Error 2" after it


def test_the_gpu_parts_fit_in_eight_minutes_with_their_grace_periods(tmp_path):
    parts = gpu_check.plan(tmp_path, gpu_check.GPU)
    assert [p.name for p in parts] == ["tests", "deepbench", "overhead", "suite", "report"]
    assert gpu_check.worst_case_s(parts) == sum(p.limit_s for p in parts) + 5 * gpu_check.GRACE_S + gpu_check.OWN_S
    assert gpu_check.worst_case_s(parts) < gpu_check.DEADLINE_S == 480
    # the DeepBench subset, as the speed command reads its options: batch 32, T up to 187, every hidden size from 256 to 4096
    args = build_parser().parse_args(["speed", "--preset", "deepbench", *gpu_check.GPU.speed])
    shapes = speed.select(speed.PRESETS["deepbench"]["shapes"], args.hidden, args.batch, args.seq_len)
    assert len(shapes) == 14 and {s.batch for s in shapes} == {32} and max(s.seq_len for s in shapes) == 187
    assert min(s.hidden for s in shapes) == 256 and max(s.hidden for s in shapes) == 4096
    suite = next(p for p in parts if p.name == "suite")
    assert "configs/suites/default.yaml" in suite.argv and "train.accelerator=cuda" in suite.argv
    assert f"tracking.tracking_uri=sqlite:///{tmp_path.resolve() / 'mlflow.db'}" in suite.argv  # its own store, not ./mlflow.db


def test_a_part_past_its_limit_is_stopped_and_the_next_still_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "GRACE_S", 1)
    sleeper = ("timeit", "-n", "1", "-r", "1", "import time; time.sleep(60)")
    deaf = ("timeit", "-n", "1", "-r", "1", "-s", "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)", "import time; time.sleep(60)")
    parts = [gpu_check.Part("slow", sleeper, 1), gpu_check.Part("deaf", deaf, 1), gpu_check.Part("ok", ("timeit", "-n", "1", "-r", "1", "pass"), 60),
             gpu_check.Part("bad", ("json.tool", str(tmp_path / "missing.json")), 60)]  # fmt: skip
    outcomes = [gpu_check.run_part(p, tmp_path / f"{p.name}.txt") for p in parts]
    assert [o.status for o in outcomes] == [gpu_check.TIMED_OUT, gpu_check.TIMED_OUT, gpu_check.PASSED, gpu_check.FAILED]
    assert outcomes[0].returncode != 0 and outcomes[1].returncode == -9  # SIGINT stopped the first; the second needed SIGKILL
    assert outcomes[3].detail == f"exit status {outcomes[3].returncode}" and "missing.json" in (tmp_path / "bad.txt").read_text()


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_cuda" name="test_a[gru]" time="0.1"/>
<testcase classname="tests.test_cuda" name="test_a[lstm]" time="0.1"><failure message="assert 1e-3 &lt;= 1e-5">...</failure></testcase>
<testcase classname="tests.test_cuda" name="test_b" time="0.0"><skipped type="pytest.skip" message="needs triton"/></testcase>
<testcase classname="tests.test_cuda" name="test_c" time="0.0"><error message="fixture failed"/></testcase>
</testsuite></testsuites>"""


def test_findings_fail_a_part_that_exited_zero(tmp_path):
    (tmp_path / "tests.xml").write_text(JUNIT)
    tests = gpu_check.read_tests(tmp_path / "tests.xml")
    assert {k: tests[k] for k in ("passed", "failed", "errors", "skipped")} == {"passed": 1, "failed": 1, "errors": 1, "skipped": 1}
    assert tests["failed_ids"] == ["test_a[lstm]", "test_c"] and tests["skip_reasons"] == ["needs triton"]
    found = gpu_check.Findings(tests=tests, ratios=[{"mode": "forward", "lstm_over_gru": "1.3"}], speed_na=["lstm H=4096 ...: n/a: OutOfMemoryError"],
                               overhead=["throughput ratio framework/plain: 0.9"], runs={"FINISHED": 3, "FAILED": 1}, verdicts=[])  # fmt: skip
    outcomes = [gpu_check.Outcome(p, gpu_check.PASSED, 1.0, 0) for p in gpu_check.plan(tmp_path, gpu_check.GPU)]
    gpu_check.judge(outcomes, found, gpu_check.GPU)
    assert {o.part.name: (o.status, o.detail) for o in outcomes} == {
        "tests": (gpu_check.FAILED, "2 failed"),
        "deepbench": (gpu_check.FAILED, "1 configuration(s) n/a"),
        "overhead": (gpu_check.PASSED, ""),
        "suite": (gpu_check.FAILED, "runs: 1 failed, 3 finished"),
        "report": (gpu_check.FAILED, "no pooled answer in overall.csv"),
    }


@pytest.mark.slow
def test_dry_run_runs_every_part_on_the_cpu_and_summarises(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    folder = tmp_path / f"gpu-check-dry-run-cpu-torch{torch.__version__.split('+')[0]}"
    summary = printed[printed.index("") + 1 :]  # the one-screen summary after the parts' progress lines
    assert len(summary) <= 25 and summary[-1].startswith("5 of 5 parts passed in ")
    assert [line.split()[:1] + line.split()[3:4] for line in summary[1:6]] == [[n, "passed"] for n in ("tests", "deepbench", "overhead", "suite", "report")]
    # tests: every cuda test collected and skipped, saying why
    tests = gpu_check.read_tests(folder / "tests.xml")
    assert tests["skipped"] > 50 and tests["passed"] == tests["failed"] == tests["errors"] == 0
    assert tests["skip_reasons"] == ["no CUDA device (torch.cuda.is_available() is False): `make gpu-check` runs these on a GPU machine"]
    assert f"tests: 0 passed, 0 failed, 0 errors, {tests['skipped']} skipped (no CUDA device" in "\n".join(summary)
    # deepbench: its (512, 32, 1) shape; the printed ratio is the CSV's
    (ratios_csv,) = (folder / "speed").glob("speed-deepbench-cpu-*-lstm-over-gru.csv")
    with ratios_csv.open() as fh:
        ratios = {r["mode"]: float(r["lstm_over_gru"]) for r in csv.DictReader(fh)}
    assert set(ratios) == set(speed.MODES)
    assert f"forward+backward median {statistics.median([ratios['forward+backward']]):.2f} (range" in "\n".join(summary)
    assert any(line.startswith("overhead: throughput ratio framework/plain: ") for line in summary)
    # suite: its own store and experiment, 2 models x 2 seeds; the report's pooled answers printed
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gpu-check").experiment_id], "tags.kind = 'run'")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert any(line.startswith("suite: ") and line.endswith("s, runs 4 finished") for line in summary)
    assert (folder / "default" / "summary.md").is_file() and (folder / "report" / "report.html").is_file()
    assert sum(line.startswith("verdict: ") for line in summary) == 2
    # summary.md: the printed block, each part's command, the machine, torch, date and commit
    md = (folder / "summary.md").read_text()
    assert all(line in md for line in summary)
    for part in gpu_check.plan(folder, gpu_check.DRY_RUN):
        assert f"`{part.command}`" in md and (folder / f"{part.name}-output.txt").is_file()
    assert f"torch: {torch.__version__}" in md and "- commit: " in md and "- date: " in md
