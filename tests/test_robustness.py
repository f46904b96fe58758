"""Kept checkpoints, perturbed evaluation and gate statistics (benchmark.checkpoint, perturb, robustness, gates)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark import perturb, record
from benchmark.checkpoint import evaluate, load_run
from benchmark.cli import main
from benchmark.config import ConfigError, load_run_config
from benchmark.gates import gate_stats
from benchmark.models.network import set_forget_bias
from benchmark.models.reference import as_reference
from benchmark.runner import execute_run
from benchmark.task import Batch, create_task
from tasks.speech.noise import mix


@pytest.fixture
def adding_run(tiny_overrides):
    """A finished gru run on adding (T=10) with its checkpoint; returns its id."""
    cfg = load_run_config(None, ["task=adding", "task.seq_len=10", "model=gru", "model.hidden_size=6", *tiny_overrides,
                                 "train.max_epochs=1"])  # fmt: skip
    result = execute_run(cfg)
    assert result.status == record.FINISHED
    return result.run_id


def test_checkpoint_rebuilt_from_run_id_gives_the_recorded_test_metric_exactly(adding_run, mlflow_uri):
    recorded = MlflowClient(mlflow_uri).get_run(adding_run).data.metrics[record.on_test("mse")]
    loaded = load_run(adding_run, mlflow_uri)
    assert loaded.cfg.model.name == "gru" and loaded.arch.hidden_size == 6
    assert evaluate(loaded)["mse"] == recorded


def test_bilstm_on_tokens_too(tiny_overrides, mlflow_uri):
    cfg = load_run_config(None, ["task=copy_memory", "task.delay=4", "model=bilstm", "model.hidden_size=5", *tiny_overrides])
    run_id = execute_run(cfg).run_id
    metrics = MlflowClient(mlflow_uri).get_run(run_id).data.metrics
    scores = evaluate(load_run(run_id, mlflow_uri))
    assert scores == {m: metrics[record.on_test(m)] for m in ("cross_entropy", "recall_accuracy")}


def test_clean_levels_reproduce_the_clean_metric_and_noise_changes_it(adding_run, mlflow_uri):
    loaded = load_run(adding_run, mlflow_uri)
    clean = evaluate(loaded)["mse"]
    ctx = perturb.Context(loaded.task, loaded.spec)
    for kind in ("gaussian", "distractor"):
        p = perturb.check(kind, [0, 3], loaded.spec)
        assert evaluate(loaded, **perturb.hooks(p, 0, seed=0, ctx=ctx))["mse"] == clean
        noisy = evaluate(loaded, **perturb.hooks(p, 3, seed=0, ctx=ctx))["mse"]
        assert noisy != clean
        assert evaluate(loaded, **perturb.hooks(p, 3, seed=0, ctx=ctx))["mse"] == noisy  # seeded


def test_perturbations_are_per_example_whatever_the_batching():
    batch = Batch(torch.rand(6, 9, 2), torch.zeros(6, 1))
    spec = create_task("adding", seq_len=9).spec()
    ctx = perturb.Context(None, spec)
    whole = perturb.gaussian(batch, 0.5, perturb.generators(1, "gaussian", 0, 6), ctx)
    halves = [perturb.gaussian(Batch(batch.inputs[s], batch.targets[s]), 0.5, perturb.generators(1, "gaussian", s.start, 3), ctx)
              for s in (slice(0, 3), slice(3, 6))]  # fmt: skip
    assert torch.equal(whole.inputs, torch.cat([h.inputs for h in halves]))


def test_gaussian_noise_has_the_asked_std_and_spares_padding():
    batch = Batch(torch.zeros(4, 2000, 3), torch.zeros(4), torch.tensor([2000, 1000, 10, 1]))
    out = perturb.gaussian(batch, 0.3, perturb.generators(0, "gaussian", 0, 4), perturb.Context(None, None))
    assert out.inputs[0].std().item() == pytest.approx(0.3, rel=0.05)
    assert out.inputs[1, 1000:].abs().sum() == 0 and out.inputs[2, 10:].abs().sum() == 0


def test_distractor_adds_exactly_that_many_markers_and_keeps_the_true_ones():
    task = create_task("adding", seq_len=20)
    batch = task.sample(5, torch.Generator().manual_seed(0), torch.device("cpu"))
    out = perturb.PERTURBATIONS.get("distractor").apply(batch, 4, perturb.generators(0, "distractor", 0, 5), None)
    assert (out.inputs[..., 1].sum(1) == 6).all()
    assert ((out.inputs[..., 1] - batch.inputs[..., 1]) >= 0).all() and torch.equal(out.targets, batch.targets)


def test_token_substitution_and_deletion_rates():
    spec = create_task("copy_memory", delay=5).spec()
    tokens = torch.randint(1, spec.input_size, (50, 400))
    batch = Batch(tokens, torch.zeros(50), torch.full((50,), 400))
    ctx, gens = perturb.Context(None, spec), perturb.generators(0, "x", 0, 50)
    changed = (perturb.substitute(batch, 0.3, gens, ctx).inputs != tokens).float().mean().item()
    assert changed == pytest.approx(0.3 * (1 - 1 / spec.input_size), abs=0.02)  # a draw may pick the same token
    deleted = perturb.delete(batch, 0.25, gens, ctx)
    assert deleted.lengths.float().mean().item() == pytest.approx(300, rel=0.02)
    first = deleted.inputs[0, : deleted.lengths[0]]
    kept = [t for t in tokens[0].tolist()]
    it = iter(kept)
    assert all(any(t == k for k in it) for t in first.tolist())  # a subsequence, in order


@pytest.mark.parametrize("snr_db", [30.0, 10.0, 0.0])
def test_snr_mixture_has_the_asked_signal_to_noise_ratio(snr_db):
    g = torch.Generator().manual_seed(0)
    wave = (3000 * torch.sin(torch.arange(8000) / 7.0)).to(torch.int16)
    mixture = mix(wave, torch.randn(8000, generator=g), snr_db)
    noise = mixture - wave.double()
    measured = 10 * math.log10(wave.double().square().mean() / noise.square().mean())
    assert measured == pytest.approx(snr_db, abs=1e-9)


def test_snr_with_background_recordings_spares_padding(tmp_path):
    import soundfile as sf

    task = create_task("speech", **create_task("speech").smoke_options(tmp_path))  # 8 kHz, 0.25 s: 2000 samples
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", 0.1 * torch.randn(8000).numpy(), 8000)
    waves = (1000 * torch.randn(2, 2000)).to(torch.int16)
    waves[1, 1500:] = 0
    item = (waves, torch.tensor([2000, 1500]), torch.tensor([0, 1]))
    ctx = perturb.Context(task, None, tmp_path / "noise")
    mixed, samples, _ = perturb.PERTURBATIONS.get("snr").apply(item, 10.0, perturb.generators(0, "snr", 0, 2), ctx)
    for i, n in enumerate((2000, 1500)):
        clean = waves[i, :n].double()
        measured = 10 * math.log10(clean.square().mean() / (mixed[i, :n].double() - clean).square().mean())
        assert measured == pytest.approx(10.0, abs=1e-4)  # float32 mixtures
    assert mixed[1, 1500:].abs().sum() == 0


def test_snr_at_inf_db_reproduces_the_clean_speech_metric(tmp_path, mlflow_uri):
    options = create_task("speech").smoke_options(tmp_path)
    options |= {"val_fraction": 0.3, "test_fraction": 0.3, "split": "random"}
    overrides = [f"task.{k}={v}" for k, v in options.items()]
    cfg = load_run_config(None, ["task=speech", *overrides, "model=lstm", "model.hidden_size=4", "train.max_epochs=1",
                                 "train.batch_size=4", f"tracking.tracking_uri={mlflow_uri}"])  # fmt: skip
    run_id = execute_run(cfg).run_id
    recorded = MlflowClient(mlflow_uri).get_run(run_id).data.metrics[record.on_test("accuracy")]
    loaded = load_run(run_id, mlflow_uri)
    ctx = perturb.Context(loaded.task, loaded.spec)
    p = perturb.check("snr", [math.inf, 0], loaded.spec)
    assert evaluate(loaded, **perturb.hooks(p, math.inf, 0, ctx))["accuracy"] == recorded
    assert "raw" in perturb.hooks(p, 0, 0, ctx)


def test_robustness_and_gates_commands_log_on_the_run(adding_run, mlflow_uri, capsys):
    assert main(["robustness", "--experiment", "test", "--kind", "gaussian", "--levels", "0", "0.5",
                 "--tracking-uri", mlflow_uri]) == 0  # fmt: skip
    run = MlflowClient(mlflow_uri).get_run(adding_run)
    assert run.data.metrics["robust/gaussian/0/mse"] == run.data.metrics[record.on_test("mse")]
    assert run.data.metrics["robust/gaussian/0.5/mse"] != run.data.metrics["robust/gaussian/0/mse"]
    assert record.robust_tag("gaussian") in run.data.tags
    assert main(["gates", "--run-id", adding_run, "--tracking-uri", mlflow_uri]) == 0
    run = MlflowClient(mlflow_uri).get_run(adding_run)
    assert 0 < run.data.metrics["gates/l0/fwd/update/mean"] < 1
    names = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(adding_run, record.GATES_ARTIFACTS)}
    assert names == {f"gates/{n}" for n in ("stats.csv", "histograms.png", "heatmap.png")}


BAD_INPUTS = [
    (["robustness", "--run-id", "0123abcd", "--kind", "gaussian", "--levels", "0.1"], "no such run"),
    (["robustness", "--experiment", "test", "--kind", "snr", "--levels", "10"], "its kinds: gaussian, distractor"),
    (["robustness", "--experiment", "test", "--kind", "gaussian", "--levels", "-0.1"], "-0.1 is not a valid gaussian level"),
    (["robustness", "--experiment", "test", "--kind", "distractor", "--levels", "1.5"], "whole numbers"),
    (["robustness", "--experiment", "test", "--kind", "gaussian", "--levels", "1", "--noise-dir", "x"], "--kind snr only"),
    (["gates", "--experiment", "nope"], "experiment 'nope' not found"),
    (["gates", "--experiment", "test", "--task", "speech"], "no finished runs of task 'speech' (its tasks: adding)"),
]


def test_bad_input_is_one_line_and_exit_2(adding_run, mlflow_uri, capsys):
    before = MlflowClient(mlflow_uri).get_run(adding_run).data
    for args, says in BAD_INPUTS:
        assert main([*args, "--tracking-uri", mlflow_uri]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("rnnbench: error:") and says in err[0], err
    after = MlflowClient(mlflow_uri).get_run(adding_run).data
    assert (after.metrics, after.tags) == (before.metrics, before.tags)  # nothing logged


def test_a_run_without_checkpoint_is_a_one_line_error(tiny_overrides, mlflow_uri, capsys):
    cfg = load_run_config(None, ["task=adding", "task.seq_len=6", "model=gru", "model.hidden_size=3", *tiny_overrides,
                                 "tracking.log_checkpoint=false"])  # fmt: skip
    run_id = execute_run(cfg).run_id
    assert not MlflowClient(mlflow_uri).list_artifacts(run_id, "checkpoint")
    assert main(["gates", "--run-id", run_id, "--tracking-uri", mlflow_uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no checkpoint/model.pt" in err[0]


def _lstm(forget_bias: float) -> torch.nn.LSTM:
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
    set_forget_bias(lstm, forget_bias)
    return lstm


def test_gate_statistics_of_a_hand_built_cell():
    x = torch.randn(5, 7, 3)
    stats, _ = gate_stats(as_reference(_lstm(20.0)), [(x, None)])
    table = stats.table().set_index("gate")
    assert table.loc["forget", "right_sat"] == 1.0 and table.loc["forget", "left_sat"] == 0.0
    # zero weights and biases: sigma(0) = 0.5 exactly, never saturated
    assert table.loc["input", "mean"] == 0.5 and table.loc["output", "right_sat"] == 0.0
    assert table.loc["forget", "values"] == 5 * 7 * 4
    left, _ = gate_stats(as_reference(_lstm(-20.0)), [(x, None)])
    assert left.table().set_index("gate").loc["forget", "left_sat"] == 1.0


def test_padding_never_enters_the_gate_statistics():
    torch.manual_seed(0)
    gru = as_reference(torch.nn.GRU(3, 5, batch_first=True, bidirectional=True))
    short, long = torch.randn(1, 4, 3), torch.randn(1, 9, 3)
    padded = torch.cat([torch.cat([short, torch.full((1, 5, 3), 7.0)], 1), long])  # padding of large values
    together, _ = gate_stats(gru, [(padded, torch.tensor([4, 9]))])
    alone, _ = gate_stats(gru, [(short, None), (long, None)])
    a, b = together.table(), alone.table()
    assert (a["values"] == b["values"]).all() and (a["values"] == 13 * 5).all()
    for col in ("mean", "left_sat", "right_sat"):
        assert a[col].tolist() == pytest.approx(b[col].tolist(), abs=1e-6)


def test_check_rejects_unknown_kinds_and_levels():
    spec = create_task("adding").spec()
    with pytest.raises(ConfigError, match="its kinds: gaussian, distractor"):
        perturb.check("substitute", [0.1], spec)
    with pytest.raises(ConfigError, match="from 0 to 1"):
        perturb.check("substitute", [1.5], create_task("copy_memory").spec())


def test_report_shows_the_noise_and_gate_sections(tiny_overrides, mlflow_uri, tmp_path):
    for model in ("gru", "lstm"):
        for seed in (0, 1, 2):
            cfg = load_run_config(None, ["task=adding", "task.seq_len=6", f"model={model}", "model.hidden_size=4",
                                         f"seed={seed}", *tiny_overrides, "train.max_epochs=1"])  # fmt: skip
            assert execute_run(cfg).status == record.FINISHED
    common = ["--experiment", "test", "--tracking-uri", mlflow_uri]
    assert main(["robustness", *common, "--kind", "gaussian", "--levels", "0", "0.2", "0.4"]) == 0
    assert main(["gates", *common]) == 0
    assert main(["report", *common, "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Which degrades less under noise, GRU or LSTM?" in text and "## How do the gates behave?" in text
    assert "gaussian: share of the clean metric retained" in text
    curves = pd.read_csv(tmp_path / "report" / "robustness.csv")
    assert set(curves.level) == {0, 0.2, 0.4} and set(curves.model) == {"gru", "lstm"}
    saturation = pd.read_csv(tmp_path / "report" / "gates.csv")
    assert set(saturation.gate) == {"update", "reset", "input", "forget", "output"}


def test_area_under_the_degradation_curve_is_the_average_over_the_level_range():
    from benchmark.report.noise import summarize

    runs = pd.DataFrame({"value": [1.0, 0.8], "a": [1.0, 0.8], "b": [2.0, 0.9], "c": [3.0, 0.5]})
    out = summarize(runs, {0.0: "a", 0.1: "b", 0.2: "c"})
    assert out.area.tolist() == pytest.approx([2.0, (0.085 + 0.07) / 0.2])  # trapezoids / range
    assert out.retained.tolist() == pytest.approx([2.0, (0.085 + 0.07) / 0.2 / 0.8])
    snr = summarize(runs, {math.inf: "a", 20.0: "b", 0.0: "c"})  # +inf dB is the clean end, not integrated
    assert snr.area.tolist() == pytest.approx([2.5, 0.7])
