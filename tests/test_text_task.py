"""The text task: loading through ``datasets`` from local files, checks, caching, batching, and
padding-invariance of every registered model variant."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from benchmark import metrics
from benchmark.config import ConfigError, RunConfig
from benchmark.models import MODELS, RecurrentNetwork
from benchmark.models.network import Architecture
from benchmark.task import Batch, InputKind, Metric, OutputKind, TaskSpec, create_task
from tasks.text import processed, source
from tasks.text.batching import BucketBatchSampler, EncodedDataset

# --------------------------------------------------------------------------- padding invariance

TOKENS_SPEC = TaskSpec(
    name="tokens", version="1", input_kind=InputKind.TOKENS, input_size=20,
    output_kind=OutputKind.SEQUENCE_CLASSIFICATION, num_outputs=3, loss=metrics.cross_entropy_loss,
    metrics=(Metric("accuracy", metrics.accuracy, True),), main_metric="accuracy", padding_idx=0,
)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("model", MODELS.names())
def test_output_alone_equals_output_inside_padded_batch(model, pooling):
    """The sequence's logits must not depend on its batch mates or on what fills its padding."""
    variant = MODELS.get(model)
    arch = Architecture(variant.cell, hidden_size=8, num_layers=variant.num_layers,
                        bidirectional=variant.bidirectional, embedding_dim=6, pooling=pooling)
    torch.manual_seed(0)
    net = RecurrentNetwork(TOKENS_SPEC, arch).eval()
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, 20, (5,), generator=g)
    lengths = torch.tensor([9, 5, 7, 3])
    batch = torch.randint(1, 20, (4, 9), generator=g)  # garbage beyond each length, not just [PAD]
    batch[1, :5] = seq
    with torch.no_grad():
        alone = net(seq[None], None)[0]
        inside = net(batch, lengths)[1]
    assert alone.shape == (3,)
    torch.testing.assert_close(inside, alone, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- data the tests write

WORDS = {0: "alpha beta gamma delta eps zeta".split(), 1: "one two three four five six".split(), 2: "red green blue".split()}


def rows(n: int, seed: int, classes=(0, 1)) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = classes[i % len(classes)]
        words = [rng.choice(WORDS[y]) for _ in range(rng.randint(2, 12))] + [rng.choice("the a of".split())]
        out.append({"text": " ".join(words), "label": y})
    return out


def write(path, records: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix in (".csv", ".tsv"):
        import csv

        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0]), delimiter="\t" if suffix == ".tsv" else ",")
            w.writeheader()
            w.writerows(records)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    return str(path)


def local_task(tmp_path, train=None, test=None, suffix=".csv", **options):
    files = {
        "train": write(tmp_path / f"d/train{suffix}", train if train is not None else rows(120, 0)),
        "test": write(tmp_path / f"d/test{suffix}", test if test is not None else rows(40, 1)),
    }
    return create_task("text", data_files=files, cache_dir=str(tmp_path / "cache"), **options)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_local_files_load_through_datasets(tmp_path, suffix):
    task = local_task(tmp_path, suffix=suffix, val_fraction=0.25)
    spec = task.spec()
    data = task.data
    assert spec.input_kind is InputKind.TOKENS and spec.padding_idx == processed.PAD_ID == 0
    assert spec.num_outputs == 2 and data.label_names == ["0", "1"]
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 90, "val": 30, "test": 40}
    assert data.stats["data/val_carved"] == 1.0
    # vocabulary from the words of the text: 12 class words + 3 fillers + [PAD], [UNK]
    assert spec.input_size == 17
    assert spec.baseline.values["accuracy"] == pytest.approx(0.5)


def test_string_labels_map_through_label_names_and_caps_are_seeded(tmp_path):
    names = ["greek", "number", "colour"]
    named = [dict(r, label=names[r["label"]]) for r in rows(150, 0, classes=(0, 1, 2))]
    kwargs = dict(label_names=names, max_train_examples=50, max_eval_examples=20, split_seed=7)
    a = local_task(tmp_path, train=named, test=[dict(r, label=names[r["label"]]) for r in rows(60, 1, (0, 1, 2))], **kwargs)
    data = a.data
    assert a.spec().num_outputs == 3
    assert {k: len(s) for k, s in data.splits.items()} == {"train": 50, "val": 15, "test": 20}
    assert set(data.splits["train"].labels.tolist()) == {0, 1, 2}
    b = create_task("text", **a.options.model_dump() | {"cache_dir": str(tmp_path / "other-cache")})
    assert np.array_equal(b.data.splits["val"].ids, data.splits["val"].ids)  # same seed, same carve
    c = create_task("text", **a.options.model_dump() | {"split_seed": 8})
    assert not np.array_equal(c.data.splits["val"].labels, data.splits["val"].labels) or not np.array_equal(
        c.data.splits["val"].offsets, data.splits["val"].offsets
    )


def test_named_validation_split_is_used_not_carved(tmp_path):
    files = {s: write(tmp_path / f"{s}.csv", rows(n, i)) for i, (s, n) in enumerate([("train", 60), ("validation", 20), ("test", 20)])}
    task = create_task("text", data_files=files, cache_dir=str(tmp_path / "c"))
    assert {k: len(s) for k, s in task.data.splits.items()} == {"train": 60, "val": 20, "test": 20}
    assert task.data.stats["data/val_carved"] == 0.0


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_tokenizer_pads_truncates_and_marks_unknown_words(tmp_path, kind):
    test = [{"text": "qqq alpha beta", "label": 0}] + rows(10, 1)  # no "q" anywhere in train
    task = local_task(tmp_path, test=test, tokenizer=kind, max_length=6, min_frequency=1, vocab_size=60)
    split = task.data.splits["test"]
    assert split.lengths.max() <= 6 and split.lengths.min() >= 1
    first = split.ids[split.offsets[0] : split.offsets[1]].tolist()
    assert first[0] == processed.UNK_ID
    assert processed.PAD_ID not in split.ids.tolist()  # [PAD] only ever appears as padding


# --------------------------------------------------------------------------- bad input


def bad_cases():
    good = rows(20, 0)
    return {
        "missing text column": ({"train": [{"body": r["text"], "label": r["label"]} for r in good]}, {}, "no column 'text'"),
        "missing label column": ({"train": [{"text": r["text"], "y": r["label"]} for r in good]}, {}, "no column 'label'"),
        "empty text": ({"train": good[:5] + [{"text": "   ", "label": 1}] + good[5:]}, {}, "empty or missing text at row 5"),
        "non-integer label": ({"test": [{"text": "a b", "label": 1.5}] + good[:3]}, {}, "non-integer label at row 0: 1.5"),
        "string labels without names": ({"train": [dict(r, label=f"c{r['label']}") for r in good]}, {}, "task.label_names"),
        "string label not in names": ({"test": [{"text": "a", "label": "x"}]}, {"label_names": ["0", "1"]}, "not one of task.label_names"),
        "label unseen in train": ({"test": [{"text": "a b", "label": 2}] + good[:3]}, {"label_names": ["a", "b", "c"]}, "never occurs in the training split"),
        "negative label": ({"test": [{"text": "a b", "label": -1}] + good[:3]}, {}, "outside the classes 0..1"),
        "missing split": ({}, {"test_split": "held_out"}, "split 'held_out' not found (task.test_split); the data has: train, test"),
    }


@pytest.mark.parametrize("case", list(bad_cases()))
def test_bad_input_is_one_clear_line(tmp_path, case):
    replaced, options, expected = bad_cases()[case]
    task = local_task(tmp_path, train=replaced.get("train"), test=replaced.get("test"), suffix=".jsonl", **options)
    with pytest.raises(ConfigError) as err:
        task.spec()
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "test.csv").write_text("text,label\n")
    task = create_task("text", data_files={"train": write(tmp_path / "train.csv", rows(20, 0)), "test": str(tmp_path / "test.csv")})
    with pytest.raises(ConfigError, match="split 'test' is empty"):
        task.spec()


def test_source_errors(tmp_path):
    with pytest.raises(ConfigError, match="exactly one data source"):
        create_task("text").spec()
    with pytest.raises(ConfigError, match="does not exist"):
        create_task("text", data_files={"train": "nope.csv", "test": "nope2.csv"}).spec()
    with pytest.raises(ConfigError, match="unknown key 'task.text_col'"):
        create_task("text", dataset="x", text_col="t")


def test_hub_name_offline_says_so_in_one_line(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as err:
        create_task("text", dataset="stanfordnlp/imdb").spec()
    message = str(err.value)
    assert "hub is unreachable" in message and "task.data_files" in message and "\n" not in message


# --------------------------------------------------------------------------- caching


def test_second_load_reads_the_cache_without_loading_or_tokenizing(tmp_path, monkeypatch):
    first = local_task(tmp_path)
    first_data = first.data
    folder = processed.cache_path(first.options)
    assert (folder / "data.npz").is_file() and (folder / "tokenizer.json").is_file()
    assert first_data.stats["data/cache_hit"] == 0.0 and first_data.stats["data/tokenize_examples_per_s"] > 0

    def forbidden(*args, **kwargs):
        raise AssertionError("tokenized again despite the cache")

    monkeypatch.setattr(processed, "load_splits", forbidden)
    monkeypatch.setattr(processed, "train_tokenizer", forbidden)
    second = create_task("text", **first.options.model_dump())
    assert second.data.stats["data/cache_hit"] == 1.0
    for k, s in first_data.splits.items():
        assert np.array_equal(second.data.splits[k].ids, s.ids) and np.array_equal(second.data.splits[k].labels, s.labels)
    # a changed data file or a changed tokenizer option is a different cache entry
    assert processed.cache_path(first.options.model_copy(update={"vocab_size": 9})) != folder
    write(tmp_path / "d/train.csv", rows(121, 0))
    assert processed.cache_path(first.options) != folder


# --------------------------------------------------------------------------- batching


def test_bucketed_batches_cover_every_sequence_once_and_pad_with_zero(tmp_path):
    split = local_task(tmp_path, train=rows(400, 0)).data.splits["train"]
    sampler = BucketBatchSampler(split.lengths, batch_size=16, shuffle=True, seed=3, bucket_batches=4)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(len(split)))
    assert list(sampler) == epoch0  # seeded
    sampler.set_epoch(1)
    assert list(sampler) != epoch0  # but a new order every epoch
    # bucketing: within a batch, lengths spread less than in a random batch of the same size
    spread = np.mean([np.ptp(split.lengths[b]) for b in epoch0])
    random_spread = np.mean([np.ptp(split.lengths[b]) for b in np.array_split(np.random.default_rng(0).permutation(len(split)), len(epoch0))])
    assert spread < random_spread / 2

    dataset = EncodedDataset(split)
    batch = dataset.__getitems__(epoch0[0])
    assert isinstance(batch, Batch) and batch.inputs.dtype == torch.long and batch.inputs.shape[1] == int(batch.lengths.max())
    for row, i in enumerate(epoch0[0]):
        n = int(batch.lengths[row])
        assert batch.inputs[row, :n].tolist() == split.ids[split.offsets[i] : split.offsets[i + 1]].tolist()
        assert (batch.inputs[row, n:] == processed.PAD_ID).all()
        assert batch.targets[row] == split.labels[i]


# --------------------------------------------------------------------------- runs


def run_config(files: dict, mlflow_uri: str, **task) -> RunConfig:
    return RunConfig.model_validate({
        "task": {"name": "text", "data_files": files, "cache_dir": "cache", **task},
        "model": {"name": "bigru", "hidden_size": 8, "embedding_dim": 8},
        "train": {"batch_size": 16, "max_epochs": 2, "lr": 1e-2},
        "tracking": {"tracking_uri": mlflow_uri, "experiment": "text"},
    })


def test_end_to_end_run_records_accuracy_and_pipeline_throughput(tmp_path, mlflow_uri):
    from benchmark.runner import execute_run

    files = {s: write(tmp_path / f"{s}.parquet", rows(n, i)) for i, (s, n) in enumerate([("train", 160), ("test", 48)])}
    result = execute_run(run_config(files, mlflow_uri))
    assert result.status == "FINISHED", result.failure
    m = result.metrics
    assert m["test/accuracy"] > 0.8  # the classes use disjoint words: easy once tokens are read right
    assert m["data/batching_seq_per_s"] > 0 and m["data/tokenize_examples_per_s"] > 0 and m["throughput_seq_per_s"] > 0
    assert m["data/train_size"] == 144 and 0 <= m["data/padding_fraction"] < 0.5

    import mlflow

    run = mlflow.MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.data.tags["task_label"] == "text[" + tmp_path.name + "]"
    assert "data/batching_seq_per_s" in run.data.metrics and "baseline/accuracy" in run.data.metrics


def test_bad_data_fails_before_any_mlflow_run_is_created(tmp_path, mlflow_uri):
    import mlflow

    from benchmark.runner import execute_run

    files = {"train": write(tmp_path / "train.csv", rows(20, 0)), "test": write(tmp_path / "test.csv", [{"text": "", "label": 0}])}
    with pytest.raises(ConfigError, match="split 'test'"):
        execute_run(run_config(files, mlflow_uri))
    client = mlflow.MlflowClient(mlflow_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []


# --------------------------------------------------------------------------- header-less files


def write_headerless(path, records: list[tuple]) -> str:
    import csv

    with open(path, "w", newline="") as f:
        csv.writer(f, delimiter="\t" if str(path).endswith(".tsv") else ",").writerows(records)
    return str(path)


def ag_news_like(n: int, seed: int) -> list[tuple]:
    """(class 1..3, title, description) rows, as AG News' CSVs hold them: no header, classes from 1."""
    return [(r["label"] + 1, " ".join(r["text"].split()[:2]), r["text"]) for r in rows(n, seed, classes=(0, 1, 2))]


def test_headerless_tsv_loads_with_column_names(tmp_path):
    files = {s: write_headerless(tmp_path / f"{s}.tsv", [(r["text"], r["label"]) for r in rows(n, i)]) for i, (s, n) in enumerate([("train", 80), ("test", 20)])}
    task = create_task("text", data_files=files, column_names=["text", "label"], cache_dir=str(tmp_path / "c"))
    assert {k: len(s) for k, s in task.data.splits.items()} == {"train": 72, "val": 8, "test": 20}  # every row is data
    without = create_task("text", data_files=files, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError) as err:
        without.spec()
    message = str(err.value)
    first = rows(80, 0)[0]
    assert f"its first row ('{first['text'][:40]}', '{first['label']}') looks like data" in message
    assert "task.column_names" in message and "\n" not in message


def test_several_text_columns_are_joined_and_labels_may_count_from_1(tmp_path):
    train, test = ag_news_like(90, 0), ag_news_like(30, 1)
    files = {"train": write_headerless(tmp_path / "train.csv", train), "test": write_headerless(tmp_path / "test.csv", test)}
    options = dict(data_files=files, column_names=["label", "title", "description"], text_column=["title", "description"], cache_dir=str(tmp_path / "c"))
    task = create_task("text", label_base=1, label_names=["greek", "number", "colour"], max_eval_examples=30, **options)
    splits = source.load_splits(task.options)
    assert splits.texts["test"] == [f"{title} {text}" for _, title, text in test]
    assert splits.labels["test"].tolist() == [y - 1 for y, _, _ in test]
    assert task.spec().num_outputs == 3
    with pytest.raises(ConfigError, match=r"class 0 never occurs in column 'label' of split 'train' \(its labels run 1..3\) \(classes counted from 1\? set task.label_base=1\)"):
        create_task("text", **options).spec()


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"column_names": ["label", "body"]}, "task.text_column 'text' is not in task.column_names (label, body)"),
        ({"column_names": ["text", "label"], "text_column": ["text", "title"]}, "task.text_column 'title' is not in task.column_names (text, label)"),
        ({"column_names": ["text", "text"]}, "task.column_names has a name twice"),
    ],
)
def test_column_names_mistakes_stop_with_one_line_before_any_run(tmp_path, capsys, options, expected):
    from benchmark.cli import main

    files = {s: write_headerless(tmp_path / f"{s}.csv", [(r["text"], r["label"]) for r in rows(20, 0)]) for s in ("train", "test")}
    db = tmp_path / "m.db"
    args = [f"task.{k}={json.dumps(v)}" for k, v in options.items()]
    code = main(["run", "task=text", f"task.data_files={json.dumps(files)}", *args, f"tracking.tracking_uri=sqlite:///{db}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rnnbench: error: ") and expected in err[0]
    assert not db.exists()


# --------------------------------------------------------------------------- the shipped presets' sizes


def text_presets():
    from tests.conftest import REPO_ROOT

    return sorted(p for p in (REPO_ROOT / "configs/tasks").glob("*.yaml") if "name: text" in p.read_text())


@pytest.mark.parametrize("preset", text_presets(), ids=lambda p: p.stem)
def test_text_presets_size_every_model_on_a_full_vocabulary(preset):
    """Each preset's budget, on a vocabulary of its configured size, fits every registered model,
    and GRU and LSTM end up with the same number of parameters in the scope it counts."""
    from benchmark.config import load_run_config
    from benchmark.models import parameter_count, resolve_architecture

    cfg = load_run_config(preset)
    options = cfg.task.options
    classes = len(options.get("label_names") or []) or 4
    spec = TaskSpec(
        name="text", version="1", input_kind=InputKind.TOKENS, input_size=options.get("vocab_size", 10_000),
        output_kind=OutputKind.SEQUENCE_CLASSIFICATION, num_outputs=classes, loss=metrics.cross_entropy_loss,
        metrics=(Metric("accuracy", metrics.accuracy, True),), main_metric="accuracy", padding_idx=0,
    )
    budget, scope = cfg.model.param_budget, cfg.model.budget_scope
    assert scope == "recurrent"  # a text budget that counts the embedding is mostly embedding
    counted = {}
    for name in MODELS.names():
        arch = resolve_architecture(spec, cfg.model.model_copy(update={"name": name}))
        counted[name] = parameter_count(spec, arch, scope)
        assert abs(counted[name] - budget) / budget < 0.02, name
        assert parameter_count(spec, arch) == counted[name] + spec.input_size * cfg.model.embedding_dim
    assert abs(counted["gru"] - counted["lstm"]) / budget < 0.02
