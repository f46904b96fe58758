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
