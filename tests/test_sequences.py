"""The sequences task: every source format, splits, missing values, normalisation, targets, bad input.

The tests write their own small files (a .ts by hand, npz, CSV/TSV/parquet tables) with values
that are exact in binary and decimal (multiples of 1/8), so a round trip through text is exact.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.config import ConfigError, RunConfig
from benchmark.models import RecurrentNetwork, resolve_architecture
from benchmark.config import ModelConfig
from benchmark.task import OutputKind, create_task
from tasks.sequences.options import SequenceOptions
from tasks.sequences.sources import read

CLASSES = ("a", "b", "c")


def toy(n: int = 12, channels: int = 2, seed: int = 0, shift: float = 0.0) -> tuple[list[np.ndarray], list[str]]:
    """n sequences of 3-9 steps, values k/8, labels cycling a, b, c."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(-80, 80, (int(rng.integers(3, 10)), channels)) / 8 + shift for _ in range(n)]
    return seqs, [CLASSES[i % 3] for i in range(n)]


def write_ts(path, seqs, labels, regression: bool = False):
    channels = seqs[0].shape[1]
    head = ["@problemName toy", "@timeStamps false", f"@missing {str(any(np.isnan(s).any() for s in seqs)).lower()}",
            f"@univariate {str(channels == 1).lower()}", f"@dimensions {channels}", "@equalLength false"]
    head.append("@targetlabel true" if regression else f"@classLabel true {' '.join(CLASSES)}")
    lines = [":".join(",".join("?" if np.isnan(v) else repr(float(v)) for v in s[:, c]) for c in range(channels)) + f":{y}" for s, y in zip(seqs, labels)]
    path.write_text("\n".join([*head, "@data", *lines]) + "\n")
    return path


def write_npz(path, seqs, labels, padded: bool = False, **arrays):
    if padded:
        longest = max(len(s) for s in seqs)
        x = np.zeros((len(seqs), longest, seqs[0].shape[1]))
        for i, s in enumerate(seqs):
            x[i, : len(s)] = s
        np.savez(path, x=x, lengths=np.array([len(s) for s in seqs]), label=np.array(labels), **arrays)
    else:
        np.savez(path, x=np.array(seqs + [None], dtype=object)[:-1], label=np.array(labels, dtype=object), **arrays)
    return path


def long_frame(seqs, labels, seed: int = 0) -> pd.DataFrame:
    rows = [{"id": f"s{i}", "step": t, **{f"f{c}": v for c, v in enumerate(row)}, "label": y}
            for i, (s, y) in enumerate(zip(seqs, labels)) for t, row in enumerate(s)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed)  # row order must not matter


def write_table(path, frame: pd.DataFrame, **kwargs):
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",", **kwargs)
    return path


def wide_frame(seqs, labels) -> pd.DataFrame:
    longest = max(len(s) for s in seqs)
    cells = [list(s[:, 0]) + [np.nan] * (longest - len(s)) for s in seqs]
    return pd.DataFrame(cells, columns=[f"t{i}" for i in range(longest)]).assign(label=labels)


def options(**kw) -> SequenceOptions:
    return SequenceOptions(**kw)


# ----------------------------------------------------------------------------- round trips


def _same(raw, seqs, labels, key=None):
    got = dict(zip(raw.names, zip(raw.sequences, raw.targets)))
    names = raw.names if key is None else [key(i) for i in range(len(seqs))]
    assert len(raw.sequences) == len(seqs)
    for name, s, y in zip(names, seqs, labels):
        out, label = got[name]
        assert out.shape == s.shape and np.array_equal(out, s)
        assert str(label) == y


@pytest.mark.parametrize("fmt", ["ts", "npz", "npz-padded", "long.csv", "long.parquet"])
def test_multivariate_formats_round_trip(tmp_path, fmt):
    seqs, labels = toy(channels=3)
    if fmt == "ts":
        path = write_ts(tmp_path / "x.ts", seqs, labels)
    elif fmt.startswith("npz"):
        path = write_npz(tmp_path / "x.npz", seqs, labels, padded=fmt == "npz-padded")
    else:
        path = write_table(tmp_path / f"x.{fmt.split('.')[1]}", long_frame(seqs, labels))
    raw = read(path, options(path=str(path)))
    _same(raw, seqs, labels, key=(lambda i: f"id 's{i}'") if fmt.startswith("long") else None)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_wide_tables_round_trip_with_trailing_cells_as_shorter_sequences(tmp_path, suffix):
    seqs, labels = toy(channels=1)
    path = write_table(tmp_path / f"w{suffix}", wide_frame(seqs, labels))
    raw = read(path, options(path=str(path)))
    _same(raw, seqs, labels)
    assert [len(s) for s in raw.sequences] == [len(s) for s in seqs]


def test_headerless_tsv_is_the_ucr_layout(tmp_path):
    seqs, labels = toy(channels=1)
    frame = wide_frame(seqs, labels)
    frame = frame[["label", *frame.columns[:-1]]]
    path = write_table(tmp_path / "x_TRAIN.tsv", frame, header=False, na_rep="NaN")
    raw = read(path, options(path=str(path), header=False))
    _same(raw, seqs, labels)


def test_the_task_serves_the_same_sequences_padded_with_their_lengths(tmp_path):
    train, val, test = (toy(n, seed=s) for n, s in ((12, 0), (4, 1), (5, 2)))
    paths = [write_npz(tmp_path / f"{k}.npz", *d) for k, d in (("train", train), ("val", val), ("test", test))]
    task = create_task("sequences", path=str(paths[0]), val_path=str(paths[1]), test_path=str(paths[2]), normalize="none")
    spec = task.spec()
    assert spec.output_kind is OutputKind.SEQUENCE_CLASSIFICATION and spec.input_size == 2 and spec.num_outputs == 3
    for stage, (seqs, labels) in zip(("train", "val", "test"), (train, val, test)):
        split = task.data.splits[stage]
        assert split.lengths.tolist() == [len(s) for s in seqs]
        for i, s in enumerate(seqs):
            assert torch.equal(split.inputs[i, : len(s)], torch.tensor(s, dtype=torch.float32))
            assert torch.all(split.inputs[i, len(s) :] == 0)
        assert [CLASSES[j] for j in split.targets.tolist()] == labels
    # the majority class of train (a: 4, b: 4, c: 4 -> the first, a) scored on test
    assert spec.baseline.values["accuracy"] == pytest.approx(test[1].count("a") / 5)


def test_ucr_names_find_the_test_file_and_the_split_column_is_honoured(tmp_path):
    seqs, labels = toy(n=12)
    train = write_ts(tmp_path / "Toy_TRAIN.ts", seqs, labels)
    write_ts(tmp_path / "Toy_TEST.ts", *toy(n=6, seed=3))
    task = create_task("sequences", path=str(train))
    assert task.label == "sequences[Toy]"
    assert len(task.data.splits["test"].lengths) == 6 and task.spec().extra["test_from"].endswith("Toy_TEST.ts'")
    split = np.array(["train"] * 8 + ["validation"] * 2 + ["test"] * 2)
    npz = write_npz(tmp_path / "s.npz", seqs, labels, split=split)
    data = create_task("sequences", path=str(npz)).data
    assert [len(s.lengths) for s in data.splits.values()] == [8, 2, 2]


def test_carved_splits_are_stratified_seeded_and_the_same_for_every_training_seed(tmp_path):
    seqs, labels = toy(n=60)
    path = write_npz(tmp_path / "x.npz", seqs, labels)
    one, two = (create_task("sequences", path=str(path)).data for _ in range(2))
    for stage in ("train", "val", "test"):
        assert torch.equal(one.splits[stage].inputs, two.splits[stage].inputs)
        counts = np.bincount(one.splits[stage].targets.numpy(), minlength=3)
        assert counts.min() == counts.max()  # 20 per class: 12 / 4 / 4
    assert [len(s.lengths) for s in one.splits.values()] == [36, 12, 12]
    other = create_task("sequences", path=str(path), split_seed=7).data
    assert not torch.equal(one.splits["test"].inputs, other.splits["test"].inputs)
    # the datamodule's training seed changes the batch order, never the split
    a, b = (create_task("sequences", path=str(path)).datamodule(8, seed) for seed in (0, 1))
    assert torch.equal(next(iter(a.val_dataloader())).inputs, next(iter(b.val_dataloader())).inputs)
    assert not torch.equal(next(iter(a.train_dataloader())).targets, next(iter(b.train_dataloader())).targets)


def test_bundled_japanese_vowels_loads_offline():
    task = create_task("sequences", path="aeon:JapaneseVowels")
    spec = task.spec()
    facts = spec.extra
    assert (facts["train_sequences"], facts["val_sequences"], facts["test_sequences"]) == (216, 54, 370)
    assert spec.input_size == facts["channels"] == 12 and spec.num_outputs == facts["classes"] == 9
    assert (facts["length_min"], facts["length_max"]) == (7, 29)
    assert facts["train_class_counts"] == ",".join(f"{c}:24" for c in range(1, 10))
    assert task.label == "sequences[JapaneseVowels]"


# ----------------------------------------------------------------------------- cleaning


def test_normalisation_statistics_come_from_train_only(tmp_path):
    train, test = toy(n=30, seed=0), toy(n=10, seed=1, shift=10.0)
    paths = [write_npz(tmp_path / f"{k}.npz", *d) for k, d in (("train", train), ("test", test))]
    common = dict(path=str(paths[0]), test_path=str(paths[1]))
    raw = create_task("sequences", normalize="none", **common).data  # the same split: it does not depend on normalize
    z = create_task("sequences", **common).data

    def steps(split) -> np.ndarray:
        return np.concatenate([split.inputs[i, :n].double().numpy() for i, n in enumerate(split.lengths.tolist())])

    kept = steps(raw.splits["train"])  # train after validation was carved off
    mean, std = kept.mean(0), kept.std(0)
    for stage in ("train", "val", "test"):
        assert np.allclose(steps(z.splits[stage]), (steps(raw.splits[stage]) - mean) / std, atol=1e-5)
    with_val = np.concatenate([kept, steps(raw.splits["val"])])
    assert not np.allclose(with_val.mean(0), mean, atol=1e-3)  # so the check above could fail
    assert steps(z.splits["test"]).mean() > 1  # 10 / std 5.8: the shifted test split stays shifted: not re-centred on itself


def test_sequence_normalisation_centres_and_scales_each_sequence(tmp_path):
    seqs, labels = toy(n=9)
    path = write_npz(tmp_path / "x.npz", seqs, labels)
    split = create_task("sequences", path=str(path), normalize="sequence").data.splits["train"]
    for i, n in enumerate(split.lengths.tolist()):
        x = split.inputs[i, :n].double()
        assert torch.allclose(x.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-6)
        assert torch.allclose(x.std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("ffill", [[1, 5], [1, 5], [3, 6], [3, 6]]),
        ("zero", [[1, 0], [0, 5], [3, 6], [0, 0]]),
    ],
)
def test_missing_values_are_filled_by_the_stated_rule(tmp_path, rule, expected):
    holey = np.array([[1, np.nan], [np.nan, 5], [3, 6], [np.nan, np.nan]])
    seqs, labels = toy(n=6)
    seqs[0] = holey
    path = write_ts(tmp_path / "x.ts", seqs, labels)
    test = write_ts(tmp_path / "t.ts", *toy(n=3, seed=5))
    data = create_task("sequences", path=str(path), test_path=str(test), missing=rule, normalize="none", val_fraction=0.01).data
    train = data.splits["train"]
    first = next(i for i, n in enumerate(train.lengths.tolist()) if n == 4 and train.inputs[i, 2, 0] == 3 and train.inputs[i, 2, 1] == 6)
    assert train.inputs[first, :4].tolist() == expected
    assert data.metrics["data/missing_filled"] == 4


def test_missing_mean_fill_uses_the_train_channel_mean(tmp_path):
    train = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, np.nan]]), np.array([[0.5, 0.5], [0.5, 0.5]])]
    test = [np.array([[np.nan, 1.0], [2.0, 2.0]])]
    a = write_npz(tmp_path / "a.npz", train, ["a", "b", "a"])
    b = write_npz(tmp_path / "b.npz", test, ["a"])
    v = write_npz(tmp_path / "v.npz", [np.array([[1.0, 1.0]])], ["b"])
    data = create_task("sequences", path=str(a), test_path=str(b), val_path=str(v), missing="mean", normalize="none").data
    means = np.nanmean(np.concatenate(train), 0)
    assert data.splits["train"].inputs[1, 0].tolist() == pytest.approx([5.0, means[1]])
    assert data.splits["test"].inputs[0, 0].tolist() == pytest.approx([means[0], 1.0])


# ----------------------------------------------------------------------------- padding


@pytest.mark.parametrize("model, target", [("gru", "classification"), ("bilstm", "classification"), ("lstm-2l", "forecast")])
def test_padding_never_changes_an_output(tmp_path, model, target):
    seqs, labels = toy(n=24)
    path = write_npz(tmp_path / "x.npz", seqs, labels)
    task = create_task("sequences", path=str(path), target=target)
    spec = task.spec()
    torch.manual_seed(0)
    net = RecurrentNetwork(spec, resolve_architecture(spec, ModelConfig(name=model, hidden_size=6, pooling="mean"))).eval()
    batch = next(iter(task.datamodule(batch_size=8, seed=0).train_dataloader()))
    assert batch.lengths is not None and len(set(batch.lengths.tolist())) > 1
    garbage = batch.inputs.clone()
    for i, n in enumerate(batch.lengths.tolist()):
        garbage[i, n:] = 1e3 * torch.randn_like(garbage[i, n:])
    with torch.no_grad():
        out, out_garbage = net(batch.inputs, batch.lengths), net(garbage, batch.lengths)
        for i, n in enumerate(batch.lengths.tolist()):
            alone = net(batch.inputs[i : i + 1, :n], None)[0]
            mine = (lambda o: o[i, :n]) if spec.output_kind.per_step else (lambda o: o[i])
            assert torch.allclose(alone, mine(out), atol=1e-5)
            assert torch.allclose(alone, mine(out_garbage), atol=1e-5)


# ----------------------------------------------------------------------------- targets that train


def run(tmp_path, mlflow_uri, path, **task):
    from benchmark.runner import execute_run

    cfg = RunConfig.model_validate({
        "task": {"name": "sequences", "path": str(path), **task},
        "model": {"name": "gru", "hidden_size": 16},
        "train": {"batch_size": 16, "max_epochs": 25, "lr": 1e-2},
        "tracking": {"tracking_uri": mlflow_uri, "experiment": "sequences"},
    })
    result = execute_run(cfg)
    assert result.status == "FINISHED", result.failure
    return result.metrics


def walks(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (int(rng.integers(6, 16)), 1)) for _ in range(n)]


@pytest.mark.slow
def test_regression_beats_the_train_mean_and_its_baseline_is_exact(tmp_path, mlflow_uri):
    paths = {}
    for stage, (n, seed) in {"train": (160, 0), "val": (40, 1), "test": (40, 2)}.items():
        seqs = walks(n, seed)
        y = np.array([3 * s[:, 0].mean() + 1 for s in seqs])
        paths[stage] = (write_npz(tmp_path / f"{stage}.npz", seqs, y), y)
    files = dict(val_path=str(paths["val"][0]), test_path=str(paths["test"][0]), target="regression")
    m = run(tmp_path, mlflow_uri, paths["train"][0], **files)
    baseline = float(((paths["test"][1] - paths["train"][1].mean()) ** 2).mean())
    spec = create_task("sequences", path=str(paths["train"][0]), **files).spec()
    assert spec.baseline.values["mse"] == pytest.approx(baseline, rel=1e-9)
    assert spec.baseline.values["mae"] == pytest.approx(float(np.abs(paths["test"][1] - paths["train"][1].mean()).mean()), rel=1e-9)
    assert m["test/mse"] < 0.5 * baseline


@pytest.mark.slow
def test_step_classification_and_step_regression_beat_their_baselines(tmp_path, mlflow_uri):
    seqs = walks(160, 1)
    sign = np.array([(np.cumsum(s[:, 0]) > 0).astype(int) for s in seqs], dtype=object)
    running = np.array([np.cumsum(s[:, 0]) / np.sqrt(np.arange(1, len(s) + 1)) for s in seqs], dtype=object)
    np.savez(tmp_path / "c.npz", x=np.array(seqs, dtype=object), label=sign)
    np.savez(tmp_path / "r.npz", x=np.array(seqs, dtype=object), label=running)
    cls = run(tmp_path, mlflow_uri, tmp_path / "c.npz", target="step_classification")
    task = create_task("sequences", path=str(tmp_path / "c.npz"), target="step_classification")
    assert task.spec().output_kind is OutputKind.STEP_CLASSIFICATION
    assert cls["test/accuracy"] > task.spec().baseline.values["accuracy"] + 0.2
    reg = run(tmp_path, mlflow_uri, tmp_path / "r.npz", target="step_regression")
    task = create_task("sequences", path=str(tmp_path / "r.npz"), target="step_regression")
    assert reg["test/mse"] < 0.5 * task.spec().baseline.values["mse"]


@pytest.mark.slow
def test_forecasting_beats_persistence(tmp_path, mlflow_uri):
    rng = np.random.default_rng(2)
    seqs = [np.sin(rng.uniform(0.6, 1.6) * np.arange(int(rng.integers(10, 20))) + rng.uniform(0, 6))[:, None] for _ in range(160)]
    path = write_npz(tmp_path / "f.npz", seqs, ["x"] * 160)
    m = run(tmp_path, mlflow_uri, path, target="forecast")
    spec = create_task("sequences", path=str(path), target="forecast").spec()
    assert spec.causal and spec.output_kind is OutputKind.STEP_REGRESSION
    assert m["test/mse"] < 0.5 * spec.baseline.values["mse"]


def test_step_baselines_are_exact(tmp_path):
    seqs = [np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [3.0]])]
    np.savez(tmp_path / "s.npz", x=np.array(seqs, dtype=object), label=np.array([np.array([1, 1, 0]), np.array([0, 1])], dtype=object))
    tests = [np.array([[1.0], [1.0], [4.0]]), np.array([[2.0], [2.0]])]
    np.savez(tmp_path / "t.npz", x=np.array(tests, dtype=object), label=np.array([np.array([1, 0, 0]), np.array([1, 1])], dtype=object))
    common = dict(path=str(tmp_path / "s.npz"), test_path=str(tmp_path / "t.npz"), val_path=str(tmp_path / "t.npz"), normalize="none")
    # train step labels 1,1,0,0,1: majority 1; test: 1/3 for the first sequence, 2/2 for the second
    cls = create_task("sequences", target="step_classification", **common).spec()
    assert cls.baseline.values["accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    # persistence on test: errors (0, 3) then (0): per-sequence MSE 4.5 and 0
    fc = create_task("sequences", target="forecast", **common).spec()
    assert fc.baseline.values == pytest.approx({"mse": (4.5 + 0) / 2, "mae": (1.5 + 0) / 2})
    # predicting the train step-target mean (0.6) on test step targets
    reg = create_task("sequences", target="step_regression", **common).spec()
    per_seq = [np.mean((np.array(t) - 0.6) ** 2) for t in ([1, 0, 0], [1, 1])]
    assert reg.baseline.values["mse"] == pytest.approx(np.mean(per_seq))


def test_regression_metrics_are_in_the_original_units(tmp_path):
    seqs = [np.zeros((3, 1))] * 4
    path = write_npz(tmp_path / "r.npz", seqs, np.array([10.0, 20.0, 30.0, 40.0]))
    task = create_task("sequences", path=str(path), target="regression", val_path=str(path), test_path=str(path))
    spec = task.spec()
    split = task.data.splits["test"]
    from benchmark.task import Batch

    batch = Batch(split.inputs, split.targets, split.lengths)
    predict_mean = torch.zeros(4, 1)
    assert spec.metric("mse").fn(predict_mean, batch).mean().item() == pytest.approx(125.0)  # var of 10..40
    assert spec.baseline.values["mse"] == pytest.approx(125.0)
    assert spec.metric("mae").fn(predict_mean, batch).mean().item() == pytest.approx(10.0)


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path) -> dict[str, tuple[list[str], str]]:
    seqs, labels = toy(n=12)
    good = write_npz(tmp_path / "good.npz", seqs, labels)
    ragged = write_npz(tmp_path / "ragged.npz", seqs[:-1] + [np.zeros((4, 3))], labels)
    unknown = write_npz(tmp_path / "unknown.npz", toy(n=3)[0], ["a", "b", "z"])
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.empty(0, dtype=object), label=np.empty(0, dtype=str))
    holey = [s.copy() for s in seqs]
    holey[4][1, 0] = np.nan
    nan = write_npz(tmp_path / "nan.npz", holey, labels)
    (tmp_path / "notes.txt").write_text("1,2,3\n")
    long = write_table(tmp_path / "long.csv", long_frame(seqs, labels).drop(columns=["id"]))
    return {
        "missing file": ([f"task.path={tmp_path / 'nowhere.npz'}"], "does not exist"),
        "unknown format": ([f"task.path={tmp_path / 'notes.txt'}"], "unknown format '.txt'"),
        "unknown bundled set": (["task.path=aeon:JapaneseVowel"], "Did you mean 'aeon:JapaneseVowels'?"),
        "ragged channels": ([f"task.path={ragged}"], "has 3 channel(s)"),
        "unknown label": ([f"task.path={good}", f"task.test_path={unknown}"], "label 'z' of sequence 2 of"),
        "empty split": ([f"task.path={good}", f"task.test_path={empty}"], "the test split is empty"),
        "nan without a rule": ([f"task.path={nan}"], "missing value (NaN) at step 1, channel 0"),
        "text as regression": ([f"task.path={good}", "task.target=regression"], "has target 'a', not a number"),
        "sequence labels as step targets": ([f"task.path={write_npz(tmp_path / 'padded.npz', seqs, labels, padded=True)}", "task.target=step_classification"], "holds one value per sequence"),
        "missing column": ([f"task.path={long}", "task.format=long"], "has no column 'id' (task.id_column)"),
        "bidirectional forecast": ([f"task.path={good}", "task.target=forecast", "model=bigru"], "is bidirectional"),
        "unknown option": (["task.normalise=none"], "Did you mean 'task.normalize'?"),
    }


def test_bad_input_is_one_line_exit_2_and_no_mlflow_run(tmp_path, capsys):
    db = tmp_path / "m.db"
    for case, (overrides, message) in _bad_inputs(tmp_path).items():
        code = main(["run", "task=sequences", *overrides, f"tracking.tracking_uri=sqlite:///{db}"])
        err = capsys.readouterr().err
        assert code == 2, case
        assert err.startswith("rnnbench: error: ") and message in err, (case, err)
        assert err.count("\n") == 1 and "Traceback" not in err, case
        assert not db.exists(), f"{case}: an MLflow store was created"


def test_errors_name_the_file_and_sequence(tmp_path):
    seqs, labels = toy(n=12)
    seqs[7] = seqs[7].copy()
    seqs[7][0, 1] = np.nan
    path = write_ts(tmp_path / "x.ts", seqs, labels)
    with pytest.raises(ConfigError, match=r"case 8 of '.*x\.ts' \((train|val|test) split\) has a missing value"):
        create_task("sequences", path=str(path)).spec()
    bad = tmp_path / "bad.ts"
    bad.write_text("@problemName t\n@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true a b\n@data\n1,2:3,4:a\n1,2:b\n")
    with pytest.raises(ConfigError, match=r"'.*bad\.ts' is not a readable \.ts file: Inconsistent number of dimensions"):
        create_task("sequences", path=str(bad)).spec()


def test_forecast_needs_no_labels_and_regression_reads_ts_targets(tmp_path):
    seqs, _ = toy(n=12, channels=1)
    path = write_ts(tmp_path / "r.ts", seqs, [str(float(i) / 4) for i in range(12)], regression=True)
    spec = create_task("sequences", path=str(path), target="regression").spec()
    assert spec.output_kind is OutputKind.SEQUENCE_REGRESSION and spec.num_outputs == 1
    frame = long_frame(*toy(n=10)).drop(columns=["label"])
    table = write_table(tmp_path / "f.parquet", frame)
    spec = create_task("sequences", path=str(table), target="forecast").spec()
    assert spec.num_outputs == 2 and math.isfinite(spec.baseline.values["mse"])
