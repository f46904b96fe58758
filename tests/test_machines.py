"""Sweeps on several machines: distinct trials from the first one, safe first starts, the README recipe as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from benchmark.sweep import SamplerConfig
from tests.conftest import REPO_ROOT

TINY = [  # appended to the README's commands: the same sweep, small enough for a test
    "n_trials=3",
    "tasks=[{name: adding, seq_len: 8, train_size: 64, val_size: 32, test_size: 32}]",
    "train.max_epochs=1",
    "pruner=none",  # one epoch: nothing to prune
    "seeds=[1]",
]


def readme_commands() -> list[str]:
    """The "Several machines" block of the README, one command per entry (continuations joined)."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme.split("**Several machines.**", 1)[1], re.S)
    assert block, "the 'Several machines' section lost its commands"
    text = block.group(1).replace("\\\n", " ")
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_workers_started_together_draw_distinct_trials(tmp_path):
    sampler = SamplerConfig.model_validate("tpe")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=storage, study_name="s")
    # two workers that load the fresh study at the same moment, then ask in turn
    a, b = (optuna.load_study(study_name="s", storage=storage, sampler=sampler.per_trial(0)) for _ in range(2))
    drawn = [study.ask().suggest_float("lr", 1e-4, 1e-1) for study in (a, b, b, a)]
    assert len(set(drawn)) == 4
    # one worker alone on a fresh study is reproducible
    optuna.create_study(storage=storage, study_name="t")
    alone = optuna.load_study(study_name="t", storage=storage, sampler=sampler.per_trial(0))
    assert [alone.ask().suggest_float("lr", 1e-4, 1e-1) for _ in range(4)] == drawn


def test_readme_several_machines_recipe_runs_as_written(tmp_path, postgres):
    """Two machines start the README's sweep command at the same moment on a fresh database."""
    optuna_db, mlflow_store = f"rnnbench_optuna_{uuid.uuid4().hex[:10]}", f"sqlite:///{tmp_path / 'mlflow.db'}"

    def local(command: str) -> list[str]:
        command = command.replace("rnnbench_optuna", optuna_db).replace("http://db-host:5000", mlflow_store)
        argv = shlex.split(command.replace("db-host", "127.0.0.1"))
        return [sys.executable, "-m", "benchmark", *argv[1:], *TINY] if argv[0] == "rnnbench" else argv

    commands = readme_commands()
    createdb = next(c for c in commands if c.startswith("createdb") and "rnnbench_optuna" in c)
    (sweep,) = [c for c in commands if c.startswith("rnnbench sweep")]
    (tuned,) = [c for c in commands if c.startswith("rnnbench suite --from-sweep")]
    assert "postgresql://postgres@db-host:5432/rnnbench_optuna" in sweep  # the URL as users write it
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(local(createdb), check=True, capture_output=True)
    postgres.adopt(optuna_db)

    machines = [subprocess.Popen(local(sweep), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]  # fmt: skip
    outputs = [m.communicate(timeout=600)[0] for m in machines]
    for m, out in zip(machines, outputs):
        assert m.returncode == 0, out[-3000:]
    storage = f"postgresql://postgres@127.0.0.1:5432/{optuna_db}"
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == 3, summary.study_name
        sampled = [tuple(sorted(t.params.items())) for t in trials if t.params]
        assert len(set(sampled)) == len(sampled), f"{summary.study_name}: a trial drawn twice"

    done = subprocess.run(local(tuned), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 runs" in done.stdout  # 2 studies' best configs x seeds=[1]
