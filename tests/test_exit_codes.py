"""Exit codes a scheduler can trust: 0 all runs finished, 1 some failed (summary still written), 2 bad input
(one ``rnnbench: error:`` line, nothing created), 130 interrupted."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
import yaml

from benchmark.cli import main

TINY_TASK = {"name": "adding", "seq_len": 8, "train_size": 64, "val_size": 32, "test_size": 32}
NO_GPU = not torch.cuda.is_available()


def write(tmp_path, kind: str, **fields) -> str:
    cfg = {
        "name": "tiny",
        "tasks": [TINY_TASK],
        "models": ["gru"],
        "model": {"hidden_size": 6},
        "train": {"batch_size": 32, "max_epochs": 1},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "exit-test"},
        "results_dir": str(tmp_path / "results"),
        **({"n_trials": 2, "storage_dir": str(tmp_path / "optuna"),
            "search_space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}} if kind == "sweep" else {}),  # fmt: skip
        **fields,
    }
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


BAD = [  # (command, arguments after the config for suite/sweep, words the error line must hold)
    ("run", ["task=adding", "seed=-1"], "'seed'"),
    ("suite", ["seeds=[1,-1]"], "'seeds"),
    ("sweep", ["seed=-1"], "'seed'"),
    ("run", ["task=adding", "tracking.tracking_uri=foo://bar"], "valid schemes: sqlite"),
    ("suite", ["tracking.tracking_uri=foo://bar"], "valid schemes: sqlite"),
    ("run", ["task=adding", "tracking.experiment="], "'tracking.experiment'"),
    ("suite", ["tracking.experiment=''"], "'tracking.experiment'"),
    ("suite", ["name=../../x"], "must be a file name"),
    ("suite", ["name=a/b"], "must be a file name"),
    ("sweep", ["name=../x"], "must be a file name"),
    pytest.param("suite", ["train.accelerator=gpu"], "no GPU found", marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is here")),
    pytest.param("run", ["task=adding", "train.accelerator=cuda"], "no GPU found", marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is here")),
    ("suite", ["train.precision=foo"], "Allowed precision values: ("),
    ("suite", ["train.strategy=foo"], "invalid strategy name"),
    ("suite", ["train.devices=0"], "train.devices=0"),
    ("sweep", ["train.precision=foo"], "Allowed precision values: ("),
]


def corrupt_speech(tmp_path) -> str:
    """A speech folder (two labels) of files that are not audio."""
    for label in ("yes", "no"):
        (tmp_path / "speech" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "speech" / label / f"{i}.wav").write_text("not audio")
    return "speech"


BAD += [  # warnings that lead to the error are folded into its line
    ("run", ["task=speech", "task.path={speech}"], "none of the 6 audio files could be decoded"),
    ("run", ["task=speech", "task.path={speech}"], "(after 2 warning(s): no utterance names its speaker"),
]


@pytest.mark.parametrize("command, args, words", BAD)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys, caplog, command, args, words):
    if any("{speech}" in a for a in args):
        speech = corrupt_speech(tmp_path)
        args = [a.format(speech=speech) for a in args]
    argv = [command, *([write(tmp_path, command)] if command != "run" else []), *args]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("rnnbench: error: ") and err.count("\n") == 1 and words in err, err
    assert "Traceback" not in out + err
    assert not caught and not caplog.records, "warnings belong in the error line"
    made = {p.name for p in tmp_path.iterdir()} - {f"{command}.yaml", "speech"}
    assert not made, f"created before the error: {made}"  # no MLflow store, no Optuna storage, no results


def test_suite_with_a_failed_run_exits_1_and_still_writes_its_summary(tmp_path, capsys, diverging_task):
    path = write(tmp_path, "suite", tasks=[TINY_TASK, {**TINY_TASK, "name": diverging_task}])
    assert main(["suite", path]) == 1
    assert (tmp_path / "results" / "tiny" / "summary.md").exists()
    assert "1 run(s) failed" in capsys.readouterr().out


def test_data_library_log_lines_fold_into_the_error_line(tmp_path, capsys, caplog, monkeypatch):
    """Offline, the hub client logs a line per retry before the load fails: they go in the one error line too."""
    import datasets

    def offline(*args, **kwargs):
        hub = logging.getLogger("huggingface_hub.utils._http")
        for attempt in (1, 2, 3):
            hub.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://huggingface.co/x")
            hub.warning(f"Retrying in {2 ** attempt}s [Retry {attempt}/5].")
        raise ConnectionError("Couldn't reach 'ag_news' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert main(["run", "task=text", "task.dataset=ag_news", "model=gru"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("rnnbench: error: task.dataset: the Hugging Face hub is unreachable") and err.count("\n") == 1, err
    assert "6 log line(s) from huggingface_hub, the last: Retrying in 8s [Retry 3/5]." in err
    assert not out and not caplog.records and not list(tmp_path.iterdir())
    hub = logging.getLogger("huggingface_hub")  # its handlers are back: later log lines show as usual
    assert not any(type(h).__name__ == "_LogHolder" for h in hub.handlers)


def test_held_log_lines_are_shown_once_the_input_is_accepted(caplog):
    from benchmark.config import HeldWarnings

    held = HeldWarnings()
    with caplog.at_level(logging.WARNING), held:
        logging.getLogger("fsspec.local").warning("using the cached copy")
        assert not caplog.records  # held while the input is checked
        held.release()  # the first run is made: the line is shown, in order, and later ones pass through
        logging.getLogger("fsspec.local").warning("later")
    assert [r.getMessage() for r in caplog.records] == ["using the cached copy", "later"]


def test_a_library_that_configures_its_logger_on_import_is_held_too():
    """``datasets`` is imported lazily, inside the held block, and adds its handler then: ``hold_loggers`` takes it over."""
    import io

    from benchmark.config import HeldWarnings

    stream = io.StringIO()
    log = logging.getLogger("huggingface_hub")
    before = log.handlers[:]
    held = HeldWarnings()
    with held:
        late = logging.StreamHandler(stream)
        log.addHandler(late)  # what the library's import does
        held.hold_loggers()  # what benchmark.hub.datasets() does right after importing it
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        assert stream.getvalue() == ""
    assert stream.getvalue() == "Retrying in 1s [Retry 1/5].\n"  # accepted input: shown through the library's handler
    assert log.handlers == [*before, late]
    log.removeHandler(late)
