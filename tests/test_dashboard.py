"""What MLflow's UI shows: run names, suite parent runs, sources, descriptions, data sets, config artifacts, epochs."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from rich.console import Console

from benchmark import record, tracking
from benchmark.cli import main
from benchmark.config import load_run_config, load_suite_config
from benchmark.dashboard import log_datasets, short_labels
from benchmark.record import RunKind, Tag
from benchmark.report.screenshot import find_browser, mlflow_runs
from benchmark.runner import execute_run
from benchmark.suite import run_suite
from benchmark.task import create_task, fingerprint
from tasks.sequences import Sequences

TINY = {"train_size": 64, "val_size": 32, "test_size": 32}


def write_suite(tmp_path, mlflow_uri, **fields):
    path = tmp_path / "suite.yaml"
    cfg = {
        "name": "tiny",
        "tasks": [{"name": "adding", "seq_len": 8, **TINY}, {"name": "adding", "seq_len": 12, **TINY}],
        "models": ["gru", "lstm"],
        "seeds": [0],
        "model": {"hidden_size": 6},
        "train": {"batch_size": 32, "max_epochs": 2},
        "tracking": {"tracking_uri": mlflow_uri, "experiment": "dash"},
        "results_dir": str(tmp_path / "results"),
        **fields,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def runs_of(mlflow_uri, experiment="dash"):
    client = MlflowClient(mlflow_uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_short_labels_name_the_data_and_only_the_options_that_differ():
    adding = [create_task("adding", seq_len=16), create_task("adding", seq_len=128)]
    assert short_labels(adding) == ["adding seq_len=16", "adding seq_len=128"]
    assert short_labels([create_task("adding"), create_task("copy_memory")]) == ["adding", "copy_memory"]
    speech = create_task("speech", path="/data/audio/spoken_digits", features="logmel")
    assert short_labels([speech]) == ["speech/spoken_digits"]  # the folder's name, not its path
    two_folders = [create_task("speech", path="/a/digits"), create_task("speech", path="/b/words")]
    assert short_labels(two_folders) == ["speech/digits", "speech/words"]  # the names differ: no path=...
    same_name = [create_task("speech", path="/a/clips"), create_task("speech", path="/b/clips")]
    assert short_labels(same_name) == ["speech/clips path=clips", "speech/clips path=clips"]
    text = create_task("text", data_files={"train": "corpora/reviews/train.csv"})
    assert short_labels([text]) == ["text/reviews"]


def test_fingerprint_is_equal_for_equal_data_and_differs_otherwise():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert fingerprint(a, ["x", "y"]) == fingerprint(a.copy(), ["x", "y"])
    changed = a.copy()
    changed[2, 3] += 1e-3
    assert fingerprint(changed, ["x", "y"]) != fingerprint(a, ["x", "y"])
    assert fingerprint(a.astype(np.float64), ["x", "y"]) != fingerprint(a, ["x", "y"])  # same values, other dtype
    assert fingerprint(a.reshape(4, 3), ["x", "y"]) != fingerprint(a, ["x", "y"])
    assert fingerprint(a, ["y", "x"]) != fingerprint(a, ["x", "y"])
    with pytest.raises(TypeError):
        fingerprint(np.array([a, a[:2]], dtype=object))


def test_generated_data_sets_are_the_generator_its_options_and_data_seed():
    first, again = create_task("adding", seq_len=8).dataset_info(), create_task("adding", seq_len=8).dataset_info()
    assert first == again and first.source_type == "generator" and first.name == "adding"
    assert set(first.splits) == {"train", "val", "test"} and first.splits["val"].size == 1000
    other_seed = create_task("adding", seq_len=8, data_seed=7).dataset_info()
    assert all(other_seed.splits[s].digest != first.splits[s].digest for s in first.splits)
    assert create_task("adding", seq_len=9).dataset_info().splits["test"].digest != first.splits["test"].digest


def _datasets(mlflow_uri, run_id) -> dict[str, tuple[str, str]]:
    """context -> (name, digest) of a run's logged data sets."""
    run = MlflowClient(mlflow_uri).get_run(run_id)
    out = {}
    for d in run.inputs.dataset_inputs:
        context = next(t.value for t in d.tags if t.key == Tag.DATA_CONTEXT)
        out[context] = (d.dataset.name, d.dataset.digest)
    return out


def test_logged_data_sets_have_equal_digests_for_equal_data_and_differ_when_data_differ(tmp_path, mlflow_uri, tiny_overrides):
    path = Sequences.smoke_options(tmp_path / "data")["path"]
    overrides = ["task=sequences", f"task.path={path}", "model=gru", "model.hidden_size=4", "train.max_epochs=1",
                 *[o for o in tiny_overrides if not o.startswith(("task.", "train.max_epochs"))]]  # fmt: skip
    first = execute_run(load_run_config(None, overrides))
    second = execute_run(load_run_config(None, [*overrides, "seed=1"]))  # same data, another training seed
    with np.load(path, allow_pickle=True) as z:
        x, labels = z["x"], z["label"]
    x[5] = x[5] + 0.5  # one sequence changes
    np.savez(path, x=x, label=labels)
    third = execute_run(load_run_config(None, [*overrides, "seed=2"]))
    logged = [_datasets(mlflow_uri, r.run_id) for r in (first, second, third)]
    assert set(logged[0]) == {"train", "val", "test"}
    assert {name for name, _ in logged[0].values()} == {"sequences-smoke"}
    assert logged[0] == logged[1]
    assert logged[2] != logged[0]  # (train statistics normalise every split, so all three may change)
    sizes = [yaml.safe_load(d.dataset.profile)["num_rows"] for d in MlflowClient(mlflow_uri).get_run(first.run_id).inputs.dataset_inputs]
    assert sum(sizes) == 24 and min(sizes) > 0  # every sequence of the file in exactly one split


def test_parallel_runs_logging_the_same_new_data_set_all_get_it(mlflow_uri):
    """MLflow keeps one row per data set: racing inserts collide on it, and the losers must still link it."""
    import threading

    client = MlflowClient(mlflow_uri)
    exp_id = client.create_experiment("race")
    info = create_task("adding", seq_len=31).dataset_info()
    run_ids = [client.create_run(exp_id).info.run_id for _ in range(6)]
    barrier, errors = threading.Barrier(len(run_ids)), []

    def log(run_id):
        barrier.wait()
        try:
            log_datasets(MlflowClient(mlflow_uri), run_id, info)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=log, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    digests = [sorted(d.dataset.digest for d in client.get_run(r).inputs.dataset_inputs) for r in run_ids]
    assert len(digests[0]) == 3 and all(d == digests[0] for d in digests)


def test_suite_parent_names_sources_notes_configs_and_report(tmp_path, mlflow_uri, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # output to a pipe is LOG_WIDTH wide unless COLUMNS says otherwise
    path = write_suite(tmp_path, mlflow_uri, jobs=2)
    assert main(["suite", str(path)]) == 0
    out = capsys.readouterr().out
    runs = runs_of(mlflow_uri)
    parents = [r for r in runs if r.data.tags[Tag.KIND] == RunKind.SUITE]
    children = [r for r in runs if r.data.tags[Tag.KIND] == RunKind.RUN]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.run_name == "suite tiny" and parent.info.status == record.FINISHED
    assert {r.data.tags[Tag.PARENT_RUN] for r in children} == {parent.info.run_id}
    for r in children:  # names start with the model, then the seed, then the short task label
        tags = r.data.tags
        assert r.info.run_name == f"{tags[Tag.MODEL]} · s0 · adding seq_len={tags[Tag.TASK_LABEL][len('adding[seq_len='):-1]}"
        assert tags[Tag.SOURCE_NAME] == f"rnnbench suite {path}" and tags[Tag.SOURCE_TYPE] == "LOCAL"
        if tracking.git_state() is not None:
            assert tags[Tag.SOURCE_COMMIT] == tracking.git_state()[0] and len(tags[Tag.SOURCE_COMMIT]) == 40
        assert f"**{tags[Tag.MODEL]}** on **{tags[Tag.TASK_LABEL]}**, seed 0" in tags[Tag.NOTE]
        history = MlflowClient(mlflow_uri).get_metric_history(r.info.run_id, record.on_val("mse"))
        assert sorted(m.step for m in history) == [0, 1]  # step = epoch, not the global step
        assert "epoch" not in r.data.metrics
    client = MlflowClient(mlflow_uri)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"suite.yaml", "summary.md", "summary.csv"}
    assert "4 runs" in parent.data.tags[Tag.NOTE]

    # written to a pipe: one line per run, no progress bars, the summary table one row per line
    assert "\x1b[" not in out and "\r" not in out
    assert sum(line.startswith("ok ") for line in out.splitlines()) == 4
    rows = [line for line in out.splitlines() if "adding[seq_len=" in line and "mse ↓" in line]
    assert len(rows) == 4 and all(" gru " in row or " lstm " in row for row in rows)

    # a resumed suite reopens its parent run
    assert main(["suite", str(path)]) == 0
    assert [r.info.run_id for r in runs_of(mlflow_uri) if r.data.tags[Tag.KIND] == RunKind.SUITE] == [parent.info.run_id]

    # the config artifact reruns to the same run key
    child = children[0]
    local = client.download_artifacts(child.info.run_id, record.CONFIG_ARTIFACT, str(tmp_path))
    assert load_run_config(local).run_key() == child.data.tags[Tag.RUN_KEY]
    assert main(["run", local]) == 0
    reruns = [r for r in runs_of(mlflow_uri) if r.data.tags.get(Tag.RUN_KEY) == child.data.tags[Tag.RUN_KEY]]
    assert len(reruns) == 2 and all(r.info.status == record.FINISHED for r in reruns)

    # the report lands on the suite's parent run
    assert main(["report", "--experiment", "dash", "--tracking-uri", mlflow_uri, "--out", str(tmp_path / "report")]) == 0
    report = {a.path for a in client.list_artifacts(parent.info.run_id, record.REPORT_ARTIFACTS)}
    assert {f"{record.REPORT_ARTIFACTS}/report.html", f"{record.REPORT_ARTIFACTS}/report.md", f"{record.REPORT_ARTIFACTS}/plots"} <= report


def test_another_plan_gets_its_own_parent_run(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, mlflow_uri, models=["gru"], tasks=[{"name": "adding", "seq_len": 8, **TINY}])
    run_suite(load_suite_config(path), Console(quiet=True))
    run_suite(load_suite_config(path, ["seeds=[0,1]"]), Console(quiet=True))  # seed 0 is reused, not rerun
    parents = sorted((r for r in runs_of(mlflow_uri) if r.data.tags[Tag.KIND] == RunKind.SUITE), key=lambda r: r.info.start_time)
    assert len(parents) == 2 and parents[0].data.tags[Tag.SUITE_HASH] != parents[1].data.tags[Tag.SUITE_HASH]
    assert len([r for r in runs_of(mlflow_uri) if r.data.tags[Tag.KIND] == RunKind.RUN]) == 2


class _RunNameCells(HTMLParser):
    """The run links' text in the runs table's Run Name cells (ag-grid cells whose col-id names the column)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.names, self._depth, self._in_link = [], 0, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.VOID:
            return
        if self._depth:
            self._depth += 1
            if tag == "a":
                self._in_link = True
                self.names.append("")
        elif "ag-cell" in (attrs.get("class") or "").split() and "Run Name" in (attrs.get("col-id") or ""):
            self._depth = 1

    def handle_endtag(self, tag):
        if tag in self.VOID or not self._depth:
            return
        self._depth -= 1
        if tag == "a":
            self._in_link = False

    def handle_data(self, data):
        if self._in_link:
            self.names[-1] += data


@pytest.mark.skipif(find_browser() is None, reason="no headless Chromium here (apt-get install -y chromium)")
def test_mlflow_ui_shows_the_model_names_in_the_runs_table(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, mlflow_uri, tasks=[{"name": "adding", "seq_len": 8, **TINY}])
    run_suite(load_suite_config(path), Console(quiet=True))
    cells = _RunNameCells()
    cells.feed(mlflow_runs(mlflow_uri, "dash", tmp_path / "runs.png"))
    names = {n.strip() for n in cells.names}
    assert {"suite tiny", "gru · s0 · adding", "lstm · s0 · adding"} <= names
    assert (tmp_path / "runs.png").stat().st_size > 10_000
