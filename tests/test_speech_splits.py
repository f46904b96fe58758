"""Speech splits: predefined (lists, a split column, hub splits, a file-name rule), by speaker with
some speakers unknown, and the Speech Commands 12-class recipe on a tiny fake Speech Commands folder.

Every test writes its own audio with soundfile (0.25 s at 8 kHz).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmark.config import ConfigError
from benchmark.task import create_task
from tasks.speech.audio import DataWarning

RATE = 8000
FAST = dict(sample_rate=RATE, duration_s=0.25, win_ms=32, hop_ms=16, n_mels=20, n_mfcc=10, fmin=0.0)
WORDS = ("yes", "no", "up")
OTHERS = ("cat", "dog")
SPEAKERS = [f"{i:08x}" for i in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6)]


def tone(seed: int, n: int = RATE // 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def fake_speech_commands(root: Path, words=WORDS + OTHERS, lists: bool = True, takes: int = 2) -> dict[str, list[str]]:
    """root/<word>/<speaker>_nohash_<k>.wav, a _background_noise_ folder and (optionally) the
    official-style lists: speaker 0 is validation, speaker 1 test. Returns each split's relative paths."""
    split_of = {SPEAKERS[0]: "val", SPEAKERS[1]: "test"}
    listed: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    seed = 0
    for word in words:
        (root / word).mkdir(parents=True, exist_ok=True)
        for speaker in SPEAKERS:
            for k in range(takes):
                rel = f"{word}/{speaker}_nohash_{k}.wav"
                sf.write(root / rel, tone(seed := seed + 1), RATE, subtype="PCM_16")
                listed[split_of.get(speaker, "train")].append(rel)
    (root / "_background_noise_").mkdir()
    for k in range(2):
        sf.write(root / "_background_noise_" / f"noise{k}.wav", tone(1000 + k, n=2 * RATE), RATE, subtype="PCM_16")
    if lists:
        (root / "validation_list.txt").write_text("\n".join(listed["val"]) + "\n")
        (root / "testing_list.txt").write_text("\n".join(listed["test"]) + "\n")
    return listed


def load(**options):
    task = create_task("speech", **FAST, **options)
    task.spec()
    return task


def relative(task, root: Path) -> dict[str, list[str]]:
    return {s: sorted(Path(n).relative_to(root).as_posix() for n in names if n != "_silence_") for s, names in task.data.names.items()}


def test_split_lists_give_exactly_the_listed_files(tmp_path):
    listed = fake_speech_commands(tmp_path / "sc")
    task = load(path=str(tmp_path / "sc"), split="predefined")
    assert task.data.split_by == "predefined (split lists)"
    assert relative(task, tmp_path / "sc") == {s: sorted(v) for s, v in listed.items()}
    assert "_background_noise_" not in task.data.labels  # the noise folder is never a class
    m = task.data.metrics
    assert m["data/val_speakers"] == m["data/test_speakers"] == 1 and m["data/shared_speakers"] == 0


def test_a_list_naming_a_missing_file_is_an_error(tmp_path):
    fake_speech_commands(tmp_path / "sc")
    (tmp_path / "sc" / "testing_list.txt").write_text("yes/deadbeef_nohash_0.wav\n")
    with pytest.raises(ConfigError, match="testing_list.txt' line 1 names 'yes/deadbeef_nohash_0.wav', which is not an utterance"):
        load(path=str(tmp_path / "sc"), split="predefined")
    (tmp_path / "sc" / "testing_list.txt").write_text(f"yes/{SPEAKERS[0]}_nohash_0.wav\n")  # also in validation_list.txt
    with pytest.raises(ConfigError, match="is already in the val split"):
        load(path=str(tmp_path / "sc"), split="predefined")


def test_explicit_lists_and_a_predefined_split_without_validation(tmp_path):
    listed = fake_speech_commands(tmp_path / "sc", lists=False)
    (tmp_path / "sc" / "my_test.txt").write_text("\n".join(listed["test"]) + "\n")
    task = load(path=str(tmp_path / "sc"), split="predefined", split_lists={"test": "my_test.txt"}, val_fraction=0.25)
    got = relative(task, tmp_path / "sc")
    assert got["test"] == sorted(listed["test"])
    assert "validation carved at random" in task.data.split_by
    assert not set(got["val"]) & set(got["train"]) and len(got["val"]) == round(0.25 * (len(got["val"]) + len(got["train"])))


def test_partly_unknown_speakers_split_by_speaker_and_are_counted(tmp_path):
    fake_speech_commands(tmp_path / "sc", words=WORDS, lists=False)
    for k in range(9):  # speakerless clips, as the Speech Commands test set's _silence_ files are named
        sf.write(tmp_path / "sc" / "yes" / f"{k}.wav", tone(500 + k), RATE)
    with pytest.warns(UserWarning, match="9 of 45 utterances name no speaker: they are split at random, the others by speaker"):
        task = load(path=str(tmp_path / "sc"))
    assert task.data.split_by == "speaker"
    assert task.data.metrics["data/speakerless_utterances"] == 9
    speakers = {s: {Path(n).name.split("_")[0] for n in names if "_nohash_" in n} for s, names in task.data.names.items()}
    assert not speakers["train"] & speakers["val"] and not speakers["train"] & speakers["test"] and not speakers["val"] & speakers["test"]
    assert task.data.metrics["data/shared_speakers"] == 0
    placed = {s: sum("_nohash_" not in n for n in names) for s, names in task.data.names.items()}
    assert sum(placed.values()) == 9 and min(placed.values()) >= 1  # the speakerless go to every split, at random


def test_free_spoken_digit_preset_puts_recordings_0_to_4_in_test(tmp_path):
    from benchmark.config import load_run_config
    from tests.conftest import REPO_ROOT

    (tmp_path / "recordings").mkdir()  # the data set's layout: one flat folder
    for digit in range(3):
        for speaker in ("jackson", "theo", "nicolas"):
            for idx in range(8):
                sf.write(tmp_path / "recordings" / f"{digit}_{speaker}_{idx}.wav", tone(digit * 100 + idx), RATE)
    cfg = load_run_config(REPO_ROOT / "configs/tasks/fsdd.yaml", [f"task.path={tmp_path / 'recordings'}"])
    task = create_task(cfg.task.name, **{**cfg.task.options, **FAST})
    task.spec()
    assert task.data.labels == ["0", "1", "2"]  # from the file names
    index = {s: sorted(int(Path(n).stem.split("_")[2]) for n in names) for s, names in task.data.names.items()}
    assert set(index["test"]) == {0, 1, 2, 3, 4} and len(index["test"]) == 3 * 3 * 5
    assert set(index["train"] + index["val"]) == {5, 6, 7} and len(index["val"]) >= 1
    for stage, names in task.data.names.items():  # each row's label is its file's digit
        digits = [int(Path(n).stem.split("_")[0]) for n in names]
        assert task.data.splits[stage].tensors[2].tolist() == digits


def test_manifest_split_column_and_hub_splits_are_kept_as_given(tmp_path):
    datasets = pytest.importorskip("datasets")
    listed = fake_speech_commands(tmp_path / "sc", words=WORDS, lists=False)
    with (tmp_path / "sc" / "all.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows((rel, rel.split("/")[0], {"val": "validation"}.get(s, s)) for s, rels in listed.items() for rel in rels)
    task = load(source="manifest", path=str(tmp_path / "sc" / "all.csv"), split="predefined")
    assert task.data.split_by == "predefined (the data set's splits)"
    assert relative(task, tmp_path / "sc") == {s: sorted(v) for s, v in listed.items()}

    files = {}
    for stage, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        rows = listed[stage]
        ds = datasets.Dataset.from_dict(
            {"audio": [{"bytes": (tmp_path / "sc" / r).read_bytes(), "path": r} for r in rows], "label": [r.split("/")[0] for r in rows]}
        )
        files[name] = str(tmp_path / f"{name}.parquet")
        ds.to_parquet(files[name])
    hub = load(source="hub", path="parquet", data_files=files, cache_dir=str(tmp_path / "hf"), split="predefined")
    assert {s: sorted(n) for s, n in hub.data.names.items()} == {s: sorted(v) for s, v in listed.items()}
    pooled = load(source="hub", path="parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert pooled.data.split_by == "speaker"  # without split=predefined the hub's splits are pooled and re-split
    assert sorted(n for v in pooled.data.names.values() for n in v) == sorted(r for v in listed.values() for r in v)


def test_speech_commands_12_class_recipe(tmp_path):
    listed = fake_speech_commands(tmp_path / "sc")
    task = load(
        path=str(tmp_path / "sc"), split="predefined", labels=list(WORDS),
        unknown_labels="sample", unknown_share=0.1, silence_share=0.1,
    )
    assert task.data.labels == ["_silence_", "_unknown_", *WORDS]  # TensorFlow's order
    for stage, rels in listed.items():
        words = sum(r.split("/")[0] in WORDS for r in rels)
        names = task.data.names[stage]
        unknown = [n for n in names if Path(n).parent.name in OTHERS]
        assert names.count("_silence_") == math.ceil(0.1 * words)
        assert len(unknown) == math.ceil(0.1 * words)
        others_here = {f"{tmp_path / 'sc'}/{r}" for r in rels if r.split("/")[0] in OTHERS}
        assert set(unknown) <= others_here  # unknown words are drawn from the split's own files
        targets = task.data.splits[stage].tensors[2]
        assert (targets == 0).sum() == names.count("_silence_") and (targets == 1).sum() == len(unknown)
    waves = task.data.splits["train"].tensors[0][task.data.splits["train"].tensors[2] == 0]
    assert (waves.abs().amax(1) > 0).all()  # silence clips are background noise, not zeros
    again = load(
        path=str(tmp_path / "sc"), split="predefined", labels=list(WORDS), unknown_labels="sample", silence_share=0.1
    )
    assert again.data.names == task.data.names  # seeded: the same clips for every model and seed


def test_speech_commands_preset_on_a_partial_folder_falls_back_and_says_so(tmp_path):
    from benchmark.config import load_run_config
    from tests.conftest import REPO_ROOT

    fake_speech_commands(tmp_path / "sc", words=("yes", "no", "cat"), lists=False)
    cfg = load_run_config(REPO_ROOT / "configs/tasks/speech_commands12.yaml", [f"task.path={tmp_path / 'sc'}"])
    with pytest.warns(DataWarning) as caught:
        task = create_task(cfg.task.name, **{**cfg.task.options, **FAST})
        task.spec()
    messages = " | ".join(str(w.message) for w in caught)
    assert "no split lists" in messages and "splitting by speaker" in messages
    assert "no utterances of up, down, left, right, on, off, stop, go" in messages
    assert task.data.labels == ["_silence_", "_unknown_", "yes", "no"]
    assert task.data.metrics["data/split_fallback"] == 1 and task.data.metrics["data/dropped_labels"] == 8
    assert task.data.split_by == "speaker (no predefined split found)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["task.split=by_file"], "invalid value for 'task.split'"),
        (["task.split=predefined", "task.split_pattern=^(?P<idx>\\d+)$"], "split_pattern '^(?P<idx>\\d+)$' needs a named group (?P<test>"),
        (["task.split_pattern=free_spoken_digit"], "task.split_pattern needs task.split=predefined"),
        (["task.split=predefined", "task.split_lists={test: nowhere.txt}"], "task.split_lists: '"),
        (["task.by_speaker=false"], "task.by_speaker was replaced by task.split: use task.split=speaker (was true) or task.split=random"),
        (["task.split=predefined", "task.split_pattern=^(?P<test>x)$"], "does not assign"),
        (["task.label_pattern=^(?P<word>\\w+)_"], "task.label_pattern '^(?P<word>\\w+)_' needs a named group (?P<label>...)"),
    ],
)
def test_bad_split_options_stop_with_one_line_before_any_run(tmp_path, capsys, args, message):
    from benchmark.cli import main

    fake_speech_commands(tmp_path / "sc", words=WORDS, lists=False, takes=1)
    db = tmp_path / "m.db"
    code = main(["run", "task=speech", f"task.path={tmp_path / 'sc'}", *args, f"tracking.tracking_uri=sqlite:///{db}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rnnbench: error: ")
    assert message in err[0]
    assert not db.exists()
