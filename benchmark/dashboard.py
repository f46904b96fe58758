"""What a person reads of a run in MLflow's UI: its name, its description, its data sets, its config.

Run names start with what tells runs apart in a table or a chart legend: the model and the seed,
then a short task label (``bilstm · s1 · speech/spoken_digits``); the full label stays in the
``task_label`` tag. Trials read ``gru · trial 7``, under their study's parent run; a suite's parent
run reads ``suite default``. The names of tags, artifacts and kinds are in ``benchmark.record``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import yaml
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from benchmark import record
from benchmark.record import Tag
from benchmark.task import DatasetInfo, Task

SEP = " · "
MAX_VALUE_CHARS = 24  # an option value in a short label is cut to this


def run_name(model: str, seed: int, task_short: str) -> str:
    """``gru · s1 · adding``: an ordinary run's name."""
    return SEP.join([model, f"s{seed}", task_short])


def trial_name(model: str, number: int) -> str:
    """``gru · trial 7``: a sweep trial's name (its parent run names the study)."""
    return SEP.join([model, f"trial {number}"])


def study_run_name(model: str, task_short: str, sweep: str) -> str:
    """``gru · adding · sweep default``: a study's parent run."""
    return SEP.join([model, task_short, f"sweep {sweep}"])


def suite_run_name(suite: str) -> str:
    return f"suite {suite}"


def _short_value(value: Any) -> str:
    if isinstance(value, str) and "/" in value:
        value = Path(value).name or value  # a path: its last part
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def short_labels(tasks: Sequence[Task]) -> list[str]:
    """A label per task, short enough for a runs table: ``name/data`` plus the options that differ between ``tasks``.

    ``speech/spoken_digits``, ``adding seq_len=100``: paths show their last part, and an option
    shows only where tasks of the same name set it differently (data options only when the data
    names do not already differ).
    """
    options = [t.options.model_dump(mode="json") for t in tasks]
    out = []
    for task, mine in zip(tasks, options):
        peers = [o for t, o in zip(tasks, options) if t.name == task.name]
        names_differ = len({t.data_name for t in tasks if t.name == task.name}) > 1
        shown = [
            k for k in mine
            if any(o.get(k) != mine[k] for o in peers) and not (names_differ and k in task.data_options)
        ]  # fmt: skip
        head = task.name + (f"/{task.data_name}" if task.data_name else "")
        out.append(" ".join([head, *(f"{k}={_short_value(mine[k])}" for k in shown)]))
    return out


def log_datasets(mlflow: MlflowClient, run_id: str, data: DatasetInfo, attempts: int = 5) -> None:
    """One MLflow data set per split (name, digest, source, size), context train/val/test: the UI's Dataset column.

    MLflow keeps one row per (experiment, name, digest): when parallel runs insert the same new
    data set at once, all but one fail on that key, and their retry links the row that won.
    """
    source = json.dumps(data.source, default=str)
    inputs = [
        DatasetInput(
            Dataset(data.name, split.digest, data.source_type, source, profile=json.dumps({"num_rows": split.size})),
            [InputTag(Tag.DATA_CONTEXT, name)],
        )
        for name, split in data.splits.items()
    ]
    for attempt in range(attempts):
        try:
            mlflow.log_inputs(run_id, inputs)
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def log_yaml(mlflow: MlflowClient, run_id: str, content: dict, name: str, header: str = "") -> None:
    """``content`` as a YAML artifact ``name`` at the root of the run's artifacts (``header``: comment lines on top)."""
    with tempfile.TemporaryDirectory(prefix="rnnbench-artifact-") as tmp:
        path = Path(tmp) / name
        path.write_text(header + yaml.safe_dump(content, sort_keys=False))
        mlflow.log_artifact(run_id, str(path))
