"""The speech task: audio sources, decoding, splits, on-device features, bad input, a short training run.

Every test writes its own audio with soundfile: one chirp/tone pattern per class, "speakers" that
differ by pitch, and file names in the free-spoken-digit convention ``<class>_<speaker>_<take>``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmark.config import ConfigError, load_run_config
from benchmark.task import create_task
from tasks.speech.audio import DataWarning
from tasks.speech.features import FeatureExtractor, spec_augment

RATE = 8000
CLASSES = ("rise", "fall", "beep")
SPEAKERS = 5
TAKES = 4
# small, fast features: 0.5 s at 8 kHz, 32 ms windows, 16 ms hop -> 32 frames
FAST = dict(sample_rate=RATE, duration_s=0.5, win_ms=32, hop_ms=16, n_mels=20, n_mfcc=10, fmin=0.0)


def utterance(cls: int, speaker: int, take: int, rate: int = RATE) -> np.ndarray:
    """A rising chirp, a falling chirp or two alternating tones, scaled in pitch by the speaker."""
    rng = np.random.default_rng(cls * 100 + speaker * 10 + take)
    n = int(rate * rng.uniform(0.3, 0.45))
    t = np.arange(n) / rate
    scale = 0.85 + 0.1 * speaker
    if cls == 0:
        freq = np.linspace(300, 1500, n) * scale
    elif cls == 1:
        freq = np.linspace(1500, 300, n) * scale
    else:
        freq = np.where((t * 8).astype(int) % 2 == 0, 500.0, 1800.0) * scale
    wave = 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / rate) + 0.02 * rng.standard_normal(n)
    return np.concatenate([np.zeros(int(rng.uniform(0, 0.05) * rate)), wave]).astype(np.float32)


def write_folder(root: Path, rate: int = RATE) -> list[tuple[Path, str, str]]:
    """root/<class>/<i>_spk<s>_<take>.wav; returns (path, label, speaker) rows."""
    rows = []
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for s in range(SPEAKERS):
            for k in range(TAKES):
                path = root / name / f"{c}_spk{s}_{k}.wav"
                sf.write(path, utterance(c, s, k, rate), rate, subtype="PCM_16")
                rows.append((path, name, f"spk{s}"))
    return rows


@pytest.fixture
def folder(tmp_path) -> Path:
    write_folder(tmp_path / "audio")
    return tmp_path / "audio"


def load(**options):
    task = create_task("speech", **FAST, **options)
    return task, task.spec()


def all_waves(task) -> dict[str, torch.Tensor]:
    return {s: ds.tensors[0] for s, ds in task.data.splits.items()}


# ----------------------------------------------------------------------------- sources


def test_folder_route_labels_speakers_and_splits(folder):
    task, spec = load(path=str(folder))
    assert spec.num_outputs == 3 and spec.input_size == 10
    assert task.data.labels == sorted(CLASSES)
    assert task.data.split_by == "speaker"
    m = task.data.metrics
    assert m["data/utterances"] == len(CLASSES) * SPEAKERS * TAKES
    assert m["data/train_speakers"] + m["data/val_speakers"] + m["data/test_speakers"] == SPEAKERS
    # every label's id matches its folder: the 'beep' class is id 0 in sorted order
    targets = task.data.splits["train"].tensors[2]
    assert set(targets.tolist()) == {0, 1, 2}


def test_speaker_independent_split_has_no_shared_speaker(folder):
    task, _ = load(path=str(folder))
    from tasks.speech.sources import from_folder, speaker_regexes

    items = from_folder(task.options, speaker_regexes("auto"))
    from tasks.speech.splits import as_index, speaker_split

    stages, how, speakerless = speaker_split([it.speaker for it in items], 0.2, 0.2, np.random.default_rng(3))
    assert how == "speaker" and speakerless == 0
    idx = as_index(stages)
    speakers = {s: {items[i].speaker for i in v} for s, v in idx.items()}
    assert not speakers["train"] & speakers["test"] and not speakers["train"] & speakers["val"]
    assert not speakers["val"] & speakers["test"]
    again, _, _ = speaker_split([it.speaker for it in items], 0.2, 0.2, np.random.default_rng(3))
    assert np.array_equal(stages, again)  # the split seed fixes the split
    assert task.data.metrics["data/shared_speakers"] == 0


def test_names_without_speakers_split_at_random(tmp_path):
    for c, name in enumerate(CLASSES):
        (tmp_path / "a" / name).mkdir(parents=True)
        for k in range(8):
            sf.write(tmp_path / "a" / name / f"take{k}.wav", utterance(c, k % 3, k), RATE)
    task, spec = load(path=str(tmp_path / "a"))
    assert task.data.split_by == "random" and spec.extra["split_by"] == "random"
    assert sum(len(ds) for ds in task.data.splits.values()) == 24


def test_csv_and_json_manifests_load_the_same_audio_as_the_folder(folder, tmp_path):
    rows = sorted((p, label, spk) for p, label, spk in ((p, p.parent.name, p.stem.split("_")[1]) for p in folder.rglob("*.wav")))
    # the manifest's labels, not the folder names, are the truth: rename them
    rename = {"beep": "ping", "fall": "sink", "rise": "soar"}  # same sorted order
    with (folder / "list.csv").open("w", newline="") as f:  # relative paths: resolved against the CSV's folder
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker"])
        w.writerows((p.relative_to(folder), rename[label], spk) for p, label, spk in rows)
    (tmp_path / "list.json").write_text(json.dumps([{"file": str(p), "word": rename[label]} for p, label, _ in rows]))

    by_folder, _ = load(path=str(folder))
    by_csv, spec = load(source="manifest", path=str(folder / "list.csv"))
    by_json, _ = load(source="manifest", path=str(tmp_path / "list.json"), path_column="file", label_column="word")
    assert by_csv.data.labels == ["ping", "sink", "soar"] and spec.num_outputs == 3
    assert by_csv.data.split_by == "speaker"  # from the speaker column
    assert by_json.data.split_by == "speaker"  # from the file names
    for task in (by_csv, by_json):
        for stage, waves in all_waves(by_folder).items():
            assert torch.equal(all_waves(task)[stage], waves)
            # the same ids, under the manifest's label names
            assert torch.equal(task.data.splits[stage].tensors[2], by_folder.data.splits[stage].tensors[2])


def test_hub_route_parquet_with_audio_bytes(folder, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = sorted(folder.rglob("*.wav"))
    table = {
        "audio": [{"bytes": p.read_bytes(), "path": p.name} for p in rows],
        "label": [CLASSES.index(p.parent.name) for p in rows],
        "speaker_id": [p.stem.split("_")[1] for p in rows],
    }
    features = datasets.Features(
        audio={"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        label=datasets.ClassLabel(names=list(CLASSES)),
        speaker_id=datasets.Value("string"),
    )
    ds = datasets.Dataset.from_dict(table, features=features).cast_column("audio", datasets.Audio(sampling_rate=RATE, decode=False))
    ds.to_parquet(tmp_path / "train.parquet")  # what a hub parquet copy (e.g. of Speech Commands) holds

    hub, spec = load(source="hub", path="parquet", data_files=str(tmp_path / "train.parquet"), cache_dir=str(tmp_path / "hf"))
    by_folder, _ = load(path=str(folder))
    assert hub.data.labels == sorted(CLASSES)  # ClassLabel ids mapped to their names
    assert hub.data.split_by == "speaker" and spec.num_outputs == 3
    for stage, waves in all_waves(by_folder).items():
        assert torch.equal(all_waves(hub)[stage], waves)
        assert torch.equal(hub.data.splits[stage].tensors[2], by_folder.data.splits[stage].tensors[2])
    with pytest.raises(ConfigError, match="'lable' is not a column.*Did you mean 'label'"):
        load(source="hub", path="parquet", data_files=str(tmp_path / "train.parquet"), cache_dir=str(tmp_path / "hf"), label_column="lable").spec()


def test_decoding_resamples_and_pads(tmp_path):
    for c, name in enumerate(CLASSES[:2]):
        (tmp_path / "a" / name).mkdir(parents=True)
        for s in range(3):
            sf.write(tmp_path / "a" / name / f"{c}_s{s}_0.wav", utterance(c, s, 0, rate=22050), 22050)
    task, _ = load(path=str(tmp_path / "a"))
    assert task.data.metrics["data/resampled"] == 6
    waves = torch.cat(list(all_waves(task).values()))
    assert waves.dtype == torch.int16 and waves.shape[1] == int(0.5 * RATE)
    lengths = torch.cat([ds.tensors[1] for ds in task.data.splits.values()])
    assert (lengths < waves.shape[1]).all()  # shorter than 0.5 s: zero-padded
    assert all((w[n:] == 0).all() for w, n in zip(waves, lengths))
    with pytest.raises(ConfigError, match="22050 Hz, not 8000 Hz.*task.resample=true"):
        load(path=str(tmp_path / "a"), resample=False)


# ----------------------------------------------------------------------------- bad input


def test_missing_folder_and_manifest_columns_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="task.path '.*nowhere' is not a folder"):
        load(path=str(tmp_path / "nowhere"))
    (tmp_path / "m.csv").write_text("file,label\na.wav,x\n")
    with pytest.raises(ConfigError, match="task.path_column 'path' is not a column.*Columns: file, label"):
        load(source="manifest", path=str(tmp_path / "m.csv"))
    (tmp_path / "n.csv").write_text("path,label\na.wav,x\nb.wav,\n")
    with pytest.raises(ConfigError, match="row 2 of '.*n.csv' has no 'label'"):
        load(source="manifest", path=str(tmp_path / "n.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no audio files"):
        load(path=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="task.path 'parquet': cannot load the data set"):
        load(source="hub", path="parquet", data_files=str(tmp_path / "none.parquet"), cache_dir=str(tmp_path / "hf"))


def test_corrupt_file_is_skipped_with_a_counted_warning_or_an_error(folder):
    (folder / "rise" / "0_spk0_9.wav").write_bytes(b"RIFF this is not audio")
    (folder / "fall" / "1_spk1_9.wav").write_bytes(b"")
    with pytest.warns(DataWarning, match="skipped 2 unreadable audio file"):
        task, _ = load(path=str(folder))
    assert task.data.metrics["data/skipped_unreadable"] == 2
    assert task.data.metrics["data/utterances"] == len(CLASSES) * SPEAKERS * TAKES
    with pytest.raises(ConfigError, match="cannot decode '.*_9.wav'.*task.bad_files=skip"):
        load(path=str(folder), bad_files="error")


def test_manifest_row_pointing_nowhere_is_a_counted_skip(folder):
    rows = sorted(folder.rglob("*.wav"))
    lines = ["path,label"] + [f"{p.relative_to(folder)},{p.parent.name}" for p in rows] + ["rise/missing.wav,rise"]
    (folder / "list.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(DataWarning, match="skipped 1 unreadable.*missing.wav"):
        task, _ = load(source="manifest", path=str(folder / "list.csv"))
    assert task.data.metrics["data/skipped_unreadable"] == 1


def test_unknown_label_is_an_error_or_a_counted_skip(folder):
    with pytest.raises(ConfigError, match="label 'rise' of .* is not in task.labels \\(beep, fall\\).*unknown_labels=skip"):
        load(path=str(folder), labels=["beep", "fall"])
    with pytest.warns(DataWarning, match="skipped 20 utterance"):
        task, spec = load(path=str(folder), labels=["fall", "beep"], unknown_labels="skip")
    assert task.data.labels == ["fall", "beep"] and spec.num_outputs == 2  # the given order is the id order
    assert task.data.metrics["data/skipped_unknown_label"] == SPEAKERS * TAKES
    with pytest.raises(ConfigError, match="no utterances of 'siren'"):
        load(path=str(folder), labels=["fall", "beep", "siren"], unknown_labels="skip")


def test_bad_options_are_config_errors(folder):
    with pytest.raises(ConfigError, match="n_mfcc \\(30\\) must not exceed task.n_mels \\(20\\)"):
        create_task("speech", **{**FAST, "n_mfcc": 30}, path=str(folder)).spec()
    with pytest.raises(ConfigError, match="unknown key 'task.n_mel'.*Did you mean 'task.n_mels'"):
        create_task("speech", n_mel=3)
    with pytest.raises(ConfigError, match="speaker_pattern.*needs a named group"):
        load(path=str(folder), speaker_pattern=r"^(\w+)_")


def test_cli_reports_a_bad_folder_before_any_mlflow_run(tmp_path, capsys):
    from benchmark.cli import main

    code = main(["run", "task=speech", f"task.path={tmp_path / 'nowhere'}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}"])
    assert code == 2
    assert "rnnbench: error: task.path" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()  # no store, hence no run, was created


# ----------------------------------------------------------------------------- features


def test_features_match_librosa():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    waves = rng.standard_normal((3, 4000)).astype(np.float32) * 0.1
    ex = FeatureExtractor(RATE, win_length=256, hop_length=128, n_mels=20, n_mfcc=10)
    got = ex(torch.from_numpy(waves))
    assert got.shape == (3, 1 + 4000 // 128, 10) == (3, ex.frames(4000), ex.size)
    for i in range(3):
        mel = librosa.feature.melspectrogram(
            y=waves[i], sr=RATE, n_fft=256, hop_length=128, win_length=256, n_mels=20, center=True, pad_mode="constant", power=2.0
        )
        ref = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=10)  # (mfcc, frames)
        np.testing.assert_allclose(got[i].numpy(), ref.T, rtol=1e-3, atol=2e-2)
    logmel = FeatureExtractor(RATE, 256, 128, n_mels=20)(torch.from_numpy(waves))
    assert logmel.shape == (3, 32, 20)


def test_filterbank_and_dct_matrices():
    ex = FeatureExtractor(16000, win_length=400, hop_length=160, n_mels=40, n_mfcc=13)
    assert ex.n_fft == 512 and ex.mel_fb.shape == (257, 40) and ex.dct.shape == (40, 13)
    # Slaney-normalised triangles: each has support, and wider (higher) bands have lower peaks
    assert (ex.mel_fb.sum(0) > 0).all()
    peaks = ex.mel_fb.max(0).values
    assert peaks[-1] < peaks[0]
    torch.testing.assert_close(ex.dct.T @ ex.dct, torch.eye(13), atol=1e-5, rtol=0)  # orthonormal DCT-II rows


def test_spec_augment_masks_inside_each_utterance():
    feats = torch.ones(4, 50, 20)
    lengths = torch.tensor([50, 30, 10, 40])
    g = torch.Generator().manual_seed(0)
    out = spec_augment(feats, lengths, g, time_masks=2, time_width=5, freq_masks=1, freq_width=3)
    frame_zero = (out == 0).all(2)  # whole frames masked: time masks
    assert frame_zero.sum(1).max() <= 10
    assert not frame_zero[2, 10 + 5 :].any()  # masks start inside the utterance
    band_zero = (out == 0).all(1)  # whole bands masked: frequency masks
    assert band_zero.sum(1).max() <= 3
    assert (out == 0).any()


def test_datamodule_batches_features_lengths_and_train_only_augmentation(folder):
    task, spec = load(path=str(folder), time_masks=2, time_mask_frames=6, normalize="dataset")
    dm = task.datamodule(batch_size=8, seed=0)
    raw = next(iter(dm.val_dataloader()))
    plain = dm.on_after_batch_transfer(raw, 0)
    assert plain.inputs.shape == (8, spec.extra["frames"], spec.input_size) and plain.inputs.dtype == torch.float32
    assert plain.lengths is not None and (plain.lengths <= spec.extra["frames"]).all()
    assert torch.equal(plain.lengths, 1 + raw[1] // task.hop_length)
    again = dm.on_after_batch_transfer(raw, 0)
    assert torch.equal(plain.inputs, again.inputs)  # no trainer, or not training: no masking
    dm.trainer = SimpleNamespace(training=True)
    masked = dm.on_after_batch_transfer(raw, 0)
    assert not torch.equal(masked.inputs, plain.inputs)
    # dataset normalisation: training frames have mean ~0 and std ~1 per feature
    waves, samples, _ = task.data.splits["train"].tensors
    feats, lengths = dm.features(waves, samples)
    valid = torch.arange(feats.shape[1])[None] < lengths[:, None]
    normed = (feats - dm._stats[0]) / dm._stats[1]
    torch.testing.assert_close(normed[valid].mean(0), torch.zeros(10), atol=1e-3, rtol=0)
    torch.testing.assert_close(normed[valid].std(0), torch.ones(10), atol=1e-2, rtol=0)
    metrics = dm.pipeline_metrics()
    assert metrics["data/feature_utt_per_s"] > 0 and metrics["data/decode_utt_per_s"] > 0


# ----------------------------------------------------------------------------- training


def test_short_training_run_learns_the_classes(folder, mlflow_uri):
    import mlflow

    from benchmark.runner import execute_run

    overrides = [f"task.{k}={v}" for k, v in FAST.items()] + [
        "task=speech",
        f"task.path={folder}",
        "model=gru",
        "model.hidden_size=24",
        "model.pooling=mean",
        "train.batch_size=8",
        "train.max_epochs=12",
        "train.lr=1e-2",
        f"tracking.tracking_uri={mlflow_uri}",
        "tracking.experiment=speech-test",
    ]
    result = execute_run(load_run_config(None, overrides))
    assert result.status == "FINISHED", result.failure
    assert result.metrics["test/accuracy"] >= 0.8  # chance is 1/3; the test speaker was never heard
    run = mlflow.MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.data.metrics["data/feature_utt_per_s"] > 0
    assert run.data.metrics["data/test_speakers"] >= 1
    assert run.data.metrics["baseline/accuracy"] < 0.5
