"""The comparative report, built from a real MLflow store that a tiny real suite filled."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console
from scipy import stats

from benchmark import cli, record
from benchmark.config import ConfigError, RunConfig, SuiteConfig
from benchmark.record import RunKind, RunMetric, StudyMetric, Tag
from benchmark.report import build_report
from benchmark.report.collect import collect
from benchmark.report.plots import pareto_front
from benchmark.report.screenshot import dump_dom, find_browser, screenshot
from benchmark.runner import execute_run
from benchmark.suite import run_suite

LENGTHS = (4, 8)
TINY_TASK = {"name": "adding", "train_size": 128, "val_size": 32, "test_size": 32}
# published numbers named for the first length only (values no run of ours can produce exactly)
REFERENCES = [
    {"source": "Bai et al. 2018, Table 1", "setup": "T = 600, about 70K parameters", "metric": "mse", "value": 0.164, "model": "LSTM"},
    {"source": "Someone 2020, Table 9", "setup": "their own split", "metric": "mae", "value": 0.0123, "model": "GRU"},
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Suite gru x lstm x 2 seeds x 2 lengths, one failed run, one deleted run, one sweep; then the report."""
    root = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking = {"tracking_uri": uri, "experiment": "tiny"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow's artifact folder goes under the working directory
        suite = SuiteConfig.model_validate(
            {
                "name": "tiny",
                "tasks": [{**TINY_TASK, "seq_len": n, "references": REFERENCES if n == LENGTHS[0] else []} for n in LENGTHS],
                "models": ["gru", "lstm"],
                "seeds": [0, 1],
                "model": {"hidden_size": 4},
                "train": {"batch_size": 32, "max_epochs": 2},
                "tracking": tracking,
            }
        )
        summary = run_suite(suite, Console(quiet=True)).summary
        # a run that fails inside the runner (no such accelerator here) is recorded FAILED
        bad = RunConfig.model_validate(
            {"task": {**TINY_TASK, "seq_len": 4}, "model": {"name": "rnn", "hidden_size": 4},
             "train": {"accelerator": "mps"}, "tracking": tracking}  # fmt: skip
        )
        assert execute_run(bad).status == "FAILED"
        mlflow = MlflowClient(uri)
        exp = mlflow.get_experiment_by_name("tiny").experiment_id
        query = f"tags.{Tag.TASK_LABEL} = 'adding[seq_len=8]' and tags.{Tag.MODEL} = 'lstm' and tags.{Tag.SEED} = '1'"
        deleted = mlflow.search_runs([exp], query)
        mlflow.delete_run(deleted[0].info.run_id)
        _fake_sweep(mlflow, exp, root)
        out = root / "results" / "tiny"
        written = build_report(uri, "tiny", out)
    finished = mlflow.search_runs([exp], f"attributes.status = '{record.FINISHED}' and tags.{Tag.KIND} = '{RunKind.RUN}'")
    return SimpleNamespace(uri=uri, out=out, written=written, finished=finished, md=(out / "report.md").read_text(),
                           summary=summary.markdown("tiny"))


def _fake_sweep(mlflow: MlflowClient, exp: str, root: Path) -> None:
    """A sweep parent and its trials, recorded as ``benchmark.record`` says a sweep records them."""
    study = "tiny-adding-gru"
    tags = {Tag.STUDY_NAME: study, Tag.TASK: "adding", Tag.TASK_LABEL: "adding[seq_len=4]", Tag.MODEL: "gru",
            Tag.MAIN_METRIC: "mse", Tag.HIGHER_IS_BETTER: record.flag(False)}  # fmt: skip
    parent = record.create_run(mlflow, exp, RunKind.SWEEP, study, tags)
    for number, value in enumerate([0.5, 0.3, 0.4]):
        trial = {Tag.TRIAL_NUMBER: str(number), Tag.STUDY_NAME: study}
        child = record.create_run(mlflow, exp, RunKind.TRIAL, f"trial {number}", trial, parent_run_id=parent)
        mlflow.log_metric(child, record.best_val("mse"), value)
        record.end_run(mlflow, child, record.FINISHED)
    mlflow.log_metric(parent, StudyMetric.BEST_VALUE, 0.3)
    mlflow.log_param(parent, f"{record.BEST_PREFIX}train.lr", "0.003")
    path = root / record.IMPORTANCES_ARTIFACT
    path.write_text(json.dumps({"train.lr": 0.7, "model.hidden_size": 0.3}))
    mlflow.log_artifact(parent, str(path))
    record.end_run(mlflow, parent, record.FINISHED)


# ----------------------------------------------------------------------------- statistics on known numbers


def test_pareto_front():
    cost = np.array([1.0, 2.0, 3.0, 2.5])
    mse = np.array([0.5, 0.2, 0.1, 0.3])  # the last is beaten by the second on both
    assert pareto_front(cost, mse, higher=False).tolist() == [True, True, True, False]


# ----------------------------------------------------------------------------- the report itself


def test_tables_match_the_recorded_metrics(report):
    table = pd.read_csv(report.out / "models.csv")
    recorded = pd.DataFrame(
        {
            "task_label": [r.data.tags[Tag.TASK_LABEL] for r in report.finished],
            "model": [r.data.tags[Tag.MODEL] for r in report.finished],
            "value": [r.data.metrics[record.on_test("mse")] for r in report.finished],
            "params": [int(r.data.tags[Tag.PARAM_COUNT]) for r in report.finished],
            "seq_s": [r.data.metrics[RunMetric.THROUGHPUT] for r in report.finished],
        }
    )
    assert len(table) == 4 and len(recorded) == 7  # 2 lengths x 2 models; 8 runs less the deleted one
    for row in table.itertuples():
        mine = recorded[(recorded.task_label == row.task_label) & (recorded.model == row.model)]
        assert row.n == len(mine)
        assert row.center == pytest.approx(stats.gmean(mine.value))  # mse is an error: ratio scale, geometric mean
        assert row.scale == "ratio" and (math.isnan(row.ci_low) or 0 < row.ci_low <= row.center <= row.ci_high)
        assert row.param_count == mine.params.iloc[0]
        assert row.throughput_seq_per_s == pytest.approx(mine.seq_s.mean())
        assert row.baseline == pytest.approx(1 / 6)
        assert f"| {row.model} |" in report.md or f"| **{row.model}** |" in report.md
    for label, t in table.groupby("task_label"):
        assert (t.status == "best").sum() == 1
        best = t[t.status == "best"].iloc[0]
        assert (t["center"] >= best["center"]).all()  # mse: lower is better
    lone = table[(table.task_label == "adding[seq_len=8]") & (table.model == "lstm")].iloc[0]
    assert lone.n == 1 and math.isnan(lone.ci_low)
    assert "TOST" in report.md and "Holm" in report.md and "geometric mean" in report.md


def test_published_references_go_config_to_run_to_report_table_and_nowhere_else(report):
    """Each run of the first length carries the config's references as one tag; the summary and the report show them
    in that setting's table, marked with source and setup; no table, decision, verdict or plot of ours reads them."""
    for run in report.finished:
        named = record.read_references(run.data.tags.get(Tag.REFERENCES))
        assert named == (REFERENCES if run.data.tags[Tag.TASK_LABEL] == "adding[seq_len=4]" else [])
        assert not any(k.startswith("references") for k in run.data.params)
    first, second = report.md.split("### adding[seq_len=4]")[1].split("### adding[seq_len=8]")
    assert "| *LSTM (published, other setup)* | 0.164 |" in first
    assert "| *GRU (published, other setup)* | mae 0.0123 |" in first and "Someone 2020, Table 9: their own split |" in first
    assert "Bai et al. 2018, Table 1: T = 600, about 70K parameters" in first
    assert "published" not in second.split("##")[0]
    assert "| adding[seq_len=4] | *LSTM (published, other setup)* | - | mse 0.164 | Bai et al. 2018, Table 1: T = 600" in report.summary
    assert report.summary.count("published, other setup") == 2
    refs = pd.read_csv(report.out / "references.csv")
    assert refs[["task_label", "model", "metric", "value"]].values.tolist() == [
        ["adding[seq_len=4]", "LSTM", "mse", 0.164], ["adding[seq_len=4]", "GRU", "mae", 0.0123]]
    assert set(pd.read_csv(report.out / "models.csv").model) == {"gru", "lstm"}
    for name in ("models.csv", "decisions.csv", "overall.csv", "verdicts.csv", "lengths.csv"):  # runs.csv: the raw tags
        text = (report.out / name).read_text()
        assert "0.164" not in text and "0.0123" not in text and "Someone 2020" not in text, name
    verdicts = report.md.split("## Verdicts")[1].split("## Results per task setting")[0]
    assert "published" not in verdicts and "Bai et al." not in verdicts


def test_failed_and_missing_runs_are_listed(report):
    excluded = pd.read_csv(report.out / "excluded_runs.csv")
    failed = excluded[excluded.status == "FAILED"]
    assert failed.model.tolist() == ["rnn"] and "mps" in failed.reason.iloc[0].lower()
    missing = excluded[excluded.status == "MISSING"]
    assert {(r.task_label, r.model, r.seed) for r in missing.itertuples()} == {
        ("adding[seq_len=8]", "lstm", 1),
        ("adding[seq_len=4]", "rnn", 1),
    }
    section = report.md.split("## Runs not counted")[1]
    assert "FAILED" in section and section.count("MISSING") == 2


def test_verdicts_answer_with_numbers(report):
    verdicts = pd.read_csv(report.out / "verdicts.csv").set_index("question")
    answers = verdicts.answer.to_dict()
    assert len(answers) == 7
    params = verdicts.loc["Does GRU have fewer parameters than LSTM at equal hidden size?"]
    assert params.answer.startswith("Yes") and "0.75x" in params.answer
    assert "ratio" in params.evidence
    lengths = answers["Which handles longer dependencies?"]
    assert "does not vary" not in lengths  # the suite ran two lengths
    assert "train.lr (0.70)" in answers["Which hyperparameters matter most?"]
    assert answers["Does bidirectionality or depth help?"].startswith("Not asked here: ")  # no such pair ran
    assert answers["Which gates and activations matter? (each cell variant against its family's vanilla)"].startswith("Not asked here: ")


def test_parameter_verdict_reads_the_counts_the_runs_logged(report):
    from benchmark.config import ModelConfig
    from benchmark.models import parameter_count, resolve_architecture
    from benchmark.task import create_task

    spec = create_task("adding").spec()  # counted here independently of the runs (hidden 4, one layer, one direction)
    gru, lstm = (parameter_count(spec, resolve_architecture(spec, ModelConfig(name=c, hidden_size=4))) for c in ("gru", "lstm"))
    evidence = pd.read_csv(report.out / "verdicts.csv").set_index("question").evidence
    line = evidence["Does GRU have fewer parameters than LSTM at equal hidden size?"]
    assert line == (f"adding (hidden 4, whole network with input layer and head): GRU {gru:,} vs LSTM {lstm:,} "
                    f"parameters, ratio {gru / lstm:.4f}")  # fmt: skip


def test_parameter_verdict_leaves_out_runs_that_logged_no_counts():
    from benchmark.report.verdicts import Evidence, parameters

    old = pd.DataFrame([{"task": "t", "cell": "gru", "layers": "1", "bidirectional": "false", "hidden": "8"}])
    v = parameters(Evidence(old, pd.DataFrame(), []))
    assert v.evidence == ["t: its runs do not record per-cell parameter counts (recorded before rnnbench logged them); left out"]
    assert "whole networks" not in v.answer


def test_length_axis_comes_from_the_logged_facts(report):
    runs = pd.read_csv(report.out / "runs.csv")
    assert set(runs[Tag.LENGTH_FACT]) == {"seq_len"} and sorted(set(runs["fact.seq_len"])) == list(LENGTHS)
    lengths = pd.read_csv(report.out / "lengths.csv")
    assert set(lengths.axis) == {"seq_len"} and sorted(set(lengths.length)) == list(LENGTHS)


def test_length_axis_rules():
    from benchmark.report.collect import LengthAxis, length_axis

    base = {"task": "t", "task.train_size": "64"}
    # a length fact named by the runs wins over any option that varies
    new = pd.DataFrame([{**base, "length_fact": "delay", "fact.delay": d, "task.delay": d, "task.train_size": n}
                        for d, n in (("5", "64"), ("10", "128"))])  # fmt: skip
    assert length_axis(new) == LengthAxis("fact.delay", "delay")
    assert length_axis(new.iloc[:1]) is None  # one length: nothing to plot
    # runs recorded before facts were logged: a varying numeric task option, length names first
    old = pd.DataFrame([{**base, "task.seq_len": t, "task.train_size": n} for t, n in (("8", "64"), ("16", "128"))])
    assert length_axis(old) == LengthAxis("task.seq_len", "seq_len")
    assert length_axis(old.drop(columns="task.seq_len")) == LengthAxis("task.train_size", "train_size")
    # a task that names no length fact has no length axis, whatever else varies
    none = pd.DataFrame([{**base, "length_fact": "", "fact.vocab_size": v, "task.vocab_size": v} for v in ("10", "20")])
    assert length_axis(none) is None
    assert length_axis(none.drop(columns="length_fact")) == LengthAxis("task.vocab_size", "vocab_size")  # as old runs


def test_sweeps_are_read_without_polluting_the_runs(report):
    c = collect(report.uri, "tiny")
    assert set(c.runs.kind) == {"run"}
    (sweep,) = c.sweeps
    assert sweep.best_value == 0.3 and sweep.best_params == {"train.lr": "0.003"}
    assert sweep.trials.value.tolist() == [0.5, 0.3, 0.4]
    assert (report.out / "plots" / "importance_tiny-adding-gru.png").is_file()


def test_outputs_are_self_contained(report):
    html = (report.out / "report.html").read_text()
    pngs = sorted((report.out / "plots").glob("*.png"))
    assert len(pngs) >= 6  # curves and cost per setting, length, sweep importance and history
    assert html.count("src='data:image/png;base64,") == len(pngs)
    assert "http://" not in html and "https://" not in html
    for png in pngs:
        assert f"(plots/{png.name})" in report.md
    assert {p.name for p in report.out.glob("*.csv")} >= {"runs.csv", "models.csv", "excluded_runs.csv", "lengths.csv"}


def test_unknown_and_empty_experiments_are_one_line_errors(mlflow_uri, capsys):
    MlflowClient(mlflow_uri).create_experiment("empty")
    with pytest.raises(ConfigError, match="holds no runs"):
        build_report(mlflow_uri, "empty", Path("out"))
    assert cli.main(["report", "--experiment", "nope", "--tracking-uri", mlflow_uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnbench: error: experiment 'nope' not found") and "empty" in err and "\n" not in err


class _Page(HTMLParser):
    """Headings, bold text and images of a DOM, as the browser built it."""

    def __init__(self):
        super().__init__()
        self.headings, self.bold, self.images, self._open = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3", "strong"):
            self._open, self._text = tag, ""
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        if self._open:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._open:
            (self.bold if tag == "strong" else self.headings).append(self._text)
            self._open = None


# Marks each image with the size the browser decoded: 0x0 (or no mark) means it did not load.
LOAD_PROBE = (
    "<script>window.addEventListener('load', () => { for (const img of document.images) "
    "img.dataset.decoded = img.naturalWidth + 'x' + img.naturalHeight; });</script>"
)


@pytest.mark.skipif(find_browser() is None, reason="no headless Chromium here (apt-get install -y chromium)")
def test_html_shows_the_verdicts_and_every_figure_in_headless_chromium(report, tmp_path):
    page = tmp_path / "report.html"
    page.write_text((report.out / "report.html").read_text().replace("</body>", LOAD_PROBE + "</body>"))
    dom = _Page()
    dom.feed(dump_dom(page))
    assert dom.headings[:2] == ["rnnbench report: tiny", "Verdicts"]
    assert {"Results per task setting", "adding: metric vs seq_len", "Sweeps", "Runs not counted"} <= set(dom.headings)
    questions = pd.read_csv(report.out / "verdicts.csv").question
    assert all(q in dom.bold for q in questions) and len(questions) == 7
    assert len(dom.images) == len(list((report.out / "plots").glob("*.png")))
    for img in dom.images:
        assert img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 1000, img.get("alt")
        width, height = map(int, img["data-decoded"].split("x"))
        assert width > 100 and height > 100, img.get("alt")
    png = screenshot(page, tmp_path / "shot.png", width=900, height=1200)  # the screenshot helper still works
    assert png.is_file()


def test_depth_and_direction_verdict_on_known_numbers():
    from benchmark.report.verdicts import Evidence, structure

    rows = [
        {"task_label": "t[x=1]", "task": "t", "model": m, "cell": "gru", "layers": layers, "bidirectional": bi,
         "seed": seed, "value": v, "higher_is_better": False, "main_metric": "mse"}  # fmt: skip
        for m, layers, bi, values in [
            ("gru", "1", "false", [0.5, 0.6, 0.55]),
            ("bigru", "1", "true", [0.1, 0.13, 0.11]),  # clearly better on every seed (by a ratio that varies)
            ("gru-2l", "2", "false", [0.5, 0.61, 0.56]),  # about the same
        ]
        for seed, v in enumerate(values)
    ]
    v = structure(Evidence(pd.DataFrame(rows), pd.DataFrame(), []))
    assert v.answer == ("Helps: bigru vs gru on t[x=1]; equivalent within the margin: gru-2l vs gru on t[x=1]; "
                        "undecided in the other 0 of 2.")  # fmt: skip
    assert "equivalent within ±10 %" in v.evidence[1]  # mse ratio 1.01 on every seed: inside the default margin
    strict = structure(Evidence(pd.DataFrame(rows), pd.DataFrame(), [], margins={"mse": 0.0}))
    assert strict.answer.endswith("undecided in the other 1 of 2.") and "seeds would likely decide it" in strict.evidence[1]


def test_speed_verdict_names_the_settled_direction_on_known_numbers():
    from benchmark.report.verdicts import Evidence, speed

    def rows(label, gru, lstm):
        return [
            {"task_label": label, "task": "t", "model": m, "cell": m, "layers": "1", "bidirectional": "false",
             "seed": seed, "throughput": v, "hidden": 8, "device": "cpu"}  # fmt: skip
            for m, values in (("gru", gru), ("lstm", lstm))
            for seed, v in enumerate(values)
        ]

    clear = rows("t[x=1]", [600, 640, 620], [1000, 1010, 990])  # LSTM faster on every seed
    noisy = rows("t[x=2]", [600, 1400, 900], [1000, 700, 1100])  # ratio's CI spans 1
    v = speed(Evidence(pd.DataFrame(clear + noisy), pd.DataFrame(), []))
    assert v.answer.startswith("On cpu: 1 layer, unidirectional (gru vs lstm): lstm faster: pooled effect")
    assert "per setting 0 won, 0 equivalent, 1 lost, 1 undecided." in v.answer
    assert v.evidence[0].startswith("t[x=1], gru vs lstm (training seq/s, hidden 8 vs 8): lstm faster: ratio 0.62")
    assert "undecided" in v.evidence[1] and v.evidence[1].endswith("more than 1000 seeds would be needed")  # ratio 0.99, wide
    alone = speed(Evidence(pd.DataFrame(noisy), pd.DataFrame(), []))
    assert ": undecided: pooled effect" in alone.answer and "0 won, 0 equivalent, 0 lost, 1 undecided" in alone.answer
    faster = rows("t[x=3]", [1000, 1010, 990], [600, 640, 620])
    split = speed(Evidence(pd.DataFrame(clear + faster), pd.DataFrame(), [])).answer
    assert "1 won, 0 equivalent, 1 lost" in split and "it depends on the task" in split
