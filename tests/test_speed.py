"""`rnnbench speed` on tiny grids: what it prints and writes (never how fast anything is)."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark import speed
from benchmark.cli import main
from benchmark.config import load_run_config
from benchmark.models import CELLS
from benchmark.runner import execute_run
from benchmark.task import TASKS, Batch
from tasks.synthetic import Adding

TINY = ["--hidden", "8", "--batch", "2", "--seq-len", "2", "3", "4", "--threads", "1", "--min-run-time", "0.005"]


def _rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_speed_writes_table_csvs_and_plot(tmp_path, capsys):
    out = tmp_path / "speed"
    assert main(["speed", "--cells", "gru", "lstm", "--impls", "torch", "loop", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "rnnbench speed" in printed and "LSTM time / GRU time" in printed

    stem = speed.file_stem(torch.device("cpu"), 1)
    assert stem == f"speed-cpu-1threads-torch{torch.__version__.split('+')[0]}"
    rows = _rows(out / f"{stem}.csv")
    assert len(rows) == 2 * 3 * 2 * 2  # cells x shapes x impls x modes
    assert {"impl", "model", "hidden", "batch", "seq_len", "mode", "median_ms", "iqr_ms", "seq_per_s", "peak_memory_mb", "threads"} <= set(rows[0])
    assert {(r["impl"], r["mode"]) for r in rows} == {(i, m) for i in ("torch", "loop") for m in speed.MODES}
    assert all(math.isfinite(float(r["median_ms"])) and float(r["median_ms"]) > 0 for r in rows)
    assert all(float(r["peak_memory_mb"]) > 0 for r in rows if r["mode"] == "forward+backward" and r["impl"] == "torch")

    fits = _rows(out / f"{stem}-scaling.csv")
    along_t = [f for f in fits if f["axis"] == "seq_len"]
    assert len(along_t) == 2 * 2 * 2 and all(0 <= float(f["r2"]) <= 1 for f in along_t)
    ratios = _rows(out / f"{stem}-lstm-over-gru.csv")
    assert len(ratios) == 3 * 2 * 2 and all(float(r["lstm_over_gru"]) > 0 for r in ratios)
    assert (out / f"{stem}.png").stat().st_size > 10_000
    assert (out / f"{stem}.md").read_text().count("\n| lstm | 8 | 2 |") == 3  # one table row per shape


def test_scan_preset_writes_loop_over_scan_ratios(tmp_path, capsys):
    out = tmp_path / "speed"
    argv = ["speed", "--preset", "scan", "--cells", "mingru", "minlstm", "cifg", "--hidden", "8", "--batch", "2", "--seq-len", "3", "16",
            "--threads", "1", "--min-run-time", "0.005", "--out", str(out)]
    assert main(argv) == 0
    assert "step loop time / scan time" in capsys.readouterr().out
    stem = speed.file_stem(torch.device("cpu"), 1, "scan")
    assert stem.startswith("speed-scan-cpu-1threads-torch")
    rows = _rows(out / f"{stem}.csv")
    # cifg has no scan: only its loop rows; the min cells both
    assert sorted({(r["model"], r["impl"]) for r in rows}) == [("cifg", "loop"), ("mingru", "loop"), ("mingru", "scan"), ("minlstm", "loop"), ("minlstm", "scan")]
    assert all(math.isfinite(float(r["peak_memory_mb"])) for r in rows if r["impl"] == "scan" and r["mode"] == "forward+backward")
    ratios = _rows(out / f"{stem}-loop-over-scan.csv")
    assert len(ratios) == 2 * 2 * 2  # min cells x lengths x modes
    for r in ratios:
        assert float(r["loop_over_scan"]) == pytest.approx(float(r["loop_ms"]) / float(r["scan_ms"]))
    assert (out / f"{stem}-scan.png").stat().st_size > 10_000


def test_one_shape_is_plotted_as_bars_per_implementation(tmp_path):
    out = tmp_path / "speed"
    argv = ["speed", "--preset", "cells", "--cells", "gru", "mingru", "--impls", "torch", "scan", "--no-memory", "--out", str(out), *TINY[:4], "--seq-len", "3", *TINY[-4:]]
    assert main(argv) == 0
    stem = speed.file_stem(torch.device("cpu"), 1, "cells")
    assert {(r["model"], r["impl"]) for r in _rows(out / f"{stem}.csv")} == {("gru", "torch"), ("mingru", "scan")}
    assert (out / f"{stem}.png").stat().st_size > 10_000 and not (out / f"{stem}-scan.png").exists()


def test_every_cell_has_a_plan_in_every_preset():
    """Each preset times every cell in the implementations it has; deepbench takes each cell's default."""
    for name, preset in speed.PRESETS.items():
        for impl, model, _ in speed.plan(sorted(CELLS.names()), list(preset["shapes"])[:1], list(preset["impls"])):
            assert impl in CELLS.get(model).impls, (name, model, impl)
    plan = speed.plan(["gru", "cifg", "mingru"], [speed.Shape(8, 2, 3)], ["auto"])
    assert {(m, i) for i, m, _ in plan} == {("gru", "torch"), ("cifg", "loop"), ("mingru", "scan")}
    assert speed.PRESETS["cells"]["cells"] == tuple(sorted(CELLS.names()))


def test_deepbench_keeps_its_own_shapes_with_the_given_values():
    shapes = speed.PRESETS["deepbench"]["shapes"]
    assert speed.select(shapes, batch=[32], seq_len=[1]) == (speed.Shape(512, 32, 1),)
    picked = speed.select(shapes, batch=[32], seq_len=[1, 25, 50, 150, 187])
    assert len(picked) == 14 and all(s in shapes and s.batch == 32 for s in picked)
    assert speed.select(shapes) == shapes and speed.select(shapes, hidden=[8]) == ()


def test_compiled_without_a_compiler_is_reported_not_raised(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no C++ compiler to be found
    shape = speed.Shape(4, 2, 3)
    rows = speed.run_grid(["gru"], [shape], ["compiled"], torch.device("cpu"), 1, 0.005, memory=False)
    assert len(rows) == 2
    assert all(math.isnan(r.median_ms) and r.note.startswith("n/a: torch.compile on CPU needs a C++ compiler") for r in rows)


def test_speed_tracks_one_mlflow_run_per_model_and_shape(tmp_path, mlflow_uri):
    args = ["speed", "--cells", "rnn", "--impls", "torch", "--no-memory", "--out", str(tmp_path), "--track", "--tracking-uri", mlflow_uri, "--experiment", "spd"]
    assert main(args + TINY) == 0
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("spd").experiment_id])
    assert len(runs) == 3
    run = runs[0]
    assert run.data.tags["kind"] == "speed" and run.data.params["cell"] == "rnn" and run.data.params["hidden"] == "8"
    assert run.data.metrics["fwd_ms"] > 0 and run.data.metrics["fwd_bwd_seq_per_s"] > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cells", "grux"], "unknown model 'grux'"),
        (["--cells", "zz*"], "--cells 'zz*' matches no model"),
        (["--preset", "deepbench", "--hidden", "8"], "--preset deepbench has no shape with these --hidden/--batch/--seq-len values. Its values: --hidden 256 512"),
        (["--cells", "cifg", "--impls", "torch", "scan"], "model 'cifg' has none of them. Its implementations: loop, compiled"),
    ],
)
def test_speed_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["speed", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: ") and message in err and err.count("\n") == 1


def test_overhead_prints_the_throughput_ratio(capsys):
    argv = ["speed", "--overhead", "--steps", "2", "--repeats", "1", "--batch", "4", "--seq-len", "4", "--threads", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    ratio = [line for line in lines if line.startswith("throughput ratio framework/plain: ")]
    assert len(ratio) == 1 and float(ratio[0].split(": ")[1].split()[0]) > 0
    assert any("plain PyTorch loop" in line for line in lines)


class LateNaNAdding(Adding):
    """NaN targets in the fourth training batch only: the sampled per-step check (step 0) misses it."""

    name = "adding_late_nan"

    def sample(self, n, generator, device):
        batch = super().sample(n, generator, device)
        if n == 32:  # training batches (validation/test sets are drawn with n=64)
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 4:
                return Batch(batch.inputs, torch.full_like(batch.targets, float("nan")))
        return batch


def test_nan_between_sampled_checks_still_fails_the_run(tiny_overrides):
    cfg = load_run_config(None, [f"task={LateNaNAdding.name}", "model=gru", "model.hidden_size=4", *tiny_overrides])
    with TASKS.temporarily({LateNaNAdding.name: LateNaNAdding}):
        result = execute_run(cfg)
    assert result.status == "FAILED" and "non-finite training loss in epoch 0" in result.failure
