"""Configs: typed, validated, overridable; a user's mistake is one line and exit code 2."""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.config import ConfigError, apply_overrides, load_run_config, load_suite_config
from tests.conftest import REPO_ROOT


def test_overrides_are_parsed_as_yaml_and_nested():
    data = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=3e-3", "seeds=[0, 1]", "task=adding", "model.bidirectional=true"])
    assert data == {"train": {"lr": 3e-3}, "seeds": [0, 1], "task": {"name": "adding"}, "model": {"bidirectional": True}}


def test_run_config_defaults_and_types():
    cfg = load_run_config(None, ["task=adding", "model=lstm", "train.lr=0.01", "seed=3", "task.seq_len=20"])
    assert cfg.model.name == "lstm" and cfg.train.lr == 0.01 and cfg.seed == 3
    assert cfg.task.options == {"seq_len": 20}


def test_run_key_changes_with_what_changes_results_only():
    base = load_run_config(None, ["task=adding"])
    assert base.run_key() == load_run_config(None, ["task=adding", "tracking.experiment=other"]).run_key()
    assert base.run_key() != load_run_config(None, ["task=adding", "seed=1"]).run_key()
    assert base.run_key() != load_run_config(None, ["task=adding", "task.seq_len=10"]).run_key()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=adding", "train.lrr=1"], r"unknown key 'train.lrr'. Did you mean 'train.lr'\?"),
        (["task=adding", "train.lr=abc"], r"invalid value for 'train.lr'"),
        (["task=adding", "train.lr=-1"], r"invalid value for 'train.lr'"),
        (["task=adding", "model.pooling=median"], r"invalid value for 'model.pooling'"),
        ([], r"missing required key 'task'"),
        (["task=adding", "bogus"], r"not of the form key=value"),
    ],
)
def test_config_errors_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_run_config(None, overrides)
    assert "\n" not in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_suite_config(bad)


def test_suite_expands_tasks_models_seeds_with_task_train_overrides():
    suite = load_suite_config(REPO_ROOT / "configs/suites/default.yaml", ["seeds=[0,1,2]"])
    runs = suite.runs()
    assert len(runs) == len(suite.tasks) * len(suite.models) * 3
    assert len({r.run_key() for r in runs}) == len(runs)
    assert {r.model.name for r in runs} == set(suite.models)
    assert all(r.model.param_budget == suite.model.param_budget for r in runs)


def test_every_shipped_config_loads():
    for path in sorted((REPO_ROOT / "configs/suites").glob("*.yaml")):
        assert load_suite_config(path).runs()
    for path in sorted((REPO_ROOT / "configs/tasks").glob("*.yaml")):
        assert load_run_config(path).task.name


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "task=addin"], "unknown task 'addin'. Did you mean 'adding'? Valid choices: "),
        (["run", "task=adding", "model=grux"], "unknown model 'grux'. Did you mean 'gru'? Valid choices: "),
        (["run", "task=adding", "task.seq_le=3"], "unknown key 'task.seq_le'. Did you mean 'task.seq_len'?"),
        (["run", "task=adding", "train.max_epochs=zero"], "invalid value for 'train.max_epochs'"),
        (["suite", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["list", "--task", "nope"], "unknown task 'nope'"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_suite_with_unknown_model_fails_before_any_run(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ntasks: [{{name: adding}}]\nmodels: [gru, lsmt]\ntracking: {{tracking_uri: 'sqlite:///{tmp_path}/m.db'}}\n")
    assert main(["suite", str(suite)]) == 2
    assert "unknown model 'lsmt'. Did you mean 'lstm'?" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


def test_a_suite_task_may_override_model_keys():
    suite = load_suite_config(REPO_ROOT / "configs/suites/bai2018.yaml")
    budgets = {(r.task.name, r.model.name): r.model.param_budget for r in suite.runs()}
    assert budgets[("copy_memory", "gru")] == 16000 and budgets[("adding", "gru")] == 70000  # the paper's sizes
    with pytest.raises(ConfigError, match=r"unknown key 'tasks\[adding\].model.param_budjet'. Did you mean 'tasks\[adding\].model.param_budget'"):
        load_suite_config(REPO_ROOT / "configs/suites/default.yaml", ["tasks=[{name: adding, model: {param_budjet: 5}}]"]).runs()


REFERENCE = {"source": "Bai et al. 2018, Table 1", "setup": "T = 600, their sizes", "metric": "mse", "value": 0.164, "model": "LSTM"}


def test_references_are_typed_and_change_no_run_key():
    cfg = load_run_config(None, ["task=adding", f"references=[{REFERENCE}]"])
    assert cfg.references[0].value == 0.164 and cfg.references[0].model == "LSTM"
    assert cfg.run_key() == load_run_config(None, ["task=adding"]).run_key()  # published numbers change no result
    suite = load_suite_config(REPO_ROOT / "configs/suites/default.yaml", [f"tasks=[{{name: adding, references: [{REFERENCE}]}}]"])
    assert all(r.references == cfg.references for r in suite.runs()) and "references" not in suite.tasks[0].options


def test_an_unknown_key_in_a_reference_is_a_one_line_error_naming_the_valid_keys(tmp_path, capsys):
    bad = {**REFERENCE, "url": "x"}
    with pytest.raises(ConfigError, match=r"unknown key 'tasks.0.references.0.url'. Valid keys: tasks.0.references.0.source, "):
        load_suite_config(REPO_ROOT / "configs/suites/default.yaml", [f"tasks=[{{name: adding, references: [{bad}]}}]"])
    misspelt = {k if k != "model" else "modle": v for k, v in REFERENCE.items()}  # unknown and missing: the unknown key is named
    preset = tmp_path / "p.yaml"
    preset.write_text(f"task: {{name: adding}}\nreferences: [{misspelt}]\ntracking: {{tracking_uri: 'sqlite:///{tmp_path}/m.db'}}\n")
    assert main(["run", str(preset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnbench: error: unknown key 'references.0.modle'. Did you mean 'references.0.model'?") and err.count("\n") == 1
    assert not (tmp_path / "m.db").exists()
    with pytest.raises(ConfigError, match=r"invalid value for 'references.0.setup': .*one line"):
        load_run_config(None, ["task=adding", 'references=[{source: s, setup: "two\\nlines", metric: mse, value: 1, model: LSTM}]'])
