"""seq_image: images read as pixel or row sequences, the fixed permutation, loading from a tiny
parquet of PNG images the test writes, scikit-learn's 8x8 digits, bad input, a short run."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from benchmark.task import create_task
from tasks.seq_image import permutation_for, sequence_of


def test_pixel_and_row_order_and_permutation_on_a_tiny_image():
    image = torch.arange(6).reshape(1, 2, 3, 1)  # rows [0 1 2], [3 4 5]
    assert sequence_of(image, "pixel", None).flatten().tolist() == [0, 1, 2, 3, 4, 5]
    assert sequence_of(image, "pixel", None).shape == (1, 6, 1)
    assert sequence_of(image, "row", None).tolist() == [[[0, 1, 2], [3, 4, 5]]]
    perm = permutation_for(6, seed=5)
    assert sorted(perm.tolist()) == list(range(6)) and perm.tolist() != list(range(6))
    assert sequence_of(image, "pixel", perm).flatten().tolist() == perm.tolist()  # step t reads pixel perm[t]
    assert torch.equal(permutation_for(6, seed=5), perm) and not torch.equal(permutation_for(6, seed=6), perm)
    rgb = torch.arange(12).reshape(1, 2, 2, 3)
    assert sequence_of(rgb, "row", None).shape == (1, 2, 6) and sequence_of(rgb, "pixel", None).shape == (1, 4, 3)


def test_the_permutation_is_the_same_for_every_model_and_seed():
    task = create_task("seq_image", permute=True, max_train_examples=64, max_eval_examples=32)
    a, b = task.datamodule(16, seed=0), task.datamodule(16, seed=1)
    raw = next(iter(a.val_dataloader()))
    x_a, x_b = a.on_after_batch_transfer(raw, 0).inputs, b.on_after_batch_transfer(raw, 0).inputs
    assert torch.equal(x_a, x_b)
    again = create_task("seq_image", permute=True, max_train_examples=64, max_eval_examples=32).permutation()
    assert torch.equal(again, task.permutation())
    plain = create_task("seq_image", max_train_examples=64, max_eval_examples=32).datamodule(16, seed=0)
    unpermuted = plain.on_after_batch_transfer(raw, 0).inputs
    assert torch.equal(x_a, unpermuted[:, task.permutation()])


def test_digits_preset_offline_sizes_and_standardisation():
    task = create_task("seq_image")
    spec = task.spec()
    sizes = {s: len(y) for s, y in task.data.labels.items()}
    assert sum(sizes.values()) == 1797 and sizes["test"] == round(0.2 * 1797)
    assert spec.input_size == 1 and spec.extra["seq_len"] == 64 and spec.num_outputs == 10
    dm = task.datamodule(2000, seed=0)
    train = dm.on_after_batch_transfer(next(iter(dm._loader("train"))), 0).inputs
    assert abs(float(train.mean())) < 1e-4 and abs(float(train.std()) - 1) < 1e-3  # standardised with train statistics
    unit = create_task("seq_image", normalize="unit").datamodule(2000, seed=0)
    x = unit.on_after_batch_transfer(next(iter(unit._loader("train"))), 0).inputs
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # 16 (white in the 8x8 digits) -> 1


def write_png_parquet(path, images: np.ndarray, labels: list[int]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    cells = [{"bytes": png(a), "path": None} for a in images]
    pq.write_table(pa.table({"image": cells, "label": labels}), path)  # the layout of ylecun/mnist's parquet files
    return str(path)


def test_local_parquet_of_png_images(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (30, 4, 5), dtype=np.uint8)
    test = rng.integers(0, 256, (10, 4, 5), dtype=np.uint8)
    files = {
        "train": write_png_parquet(tmp_path / "train.parquet", train, [i % 3 for i in range(30)]),
        "test": write_png_parquet(tmp_path / "test.parquet", test, [i % 3 for i in range(10)]),
    }
    task = create_task("seq_image", dataset="parquet", data_files=files, cache_dir=str(tmp_path / "hf"), normalize="unit", val_fraction=0.2)
    spec = task.spec()
    assert spec.extra["seq_len"] == 20 and spec.input_size == 1 and spec.num_outputs == 3
    assert {s: len(y) for s, y in task.data.labels.items()} == {"train": 24, "val": 6, "test": 10}
    # the test split is the source's own, in order, pixels exact after decoding
    assert torch.equal(task.data.images["test"][..., 0], torch.from_numpy(test))
    dm = task.datamodule(10, seed=0)
    batch = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    torch.testing.assert_close(batch.inputs[:, :, 0], torch.from_numpy(test.reshape(10, 20)).float() / 255)
    rows = create_task("seq_image", dataset="parquet", data_files=files, cache_dir=str(tmp_path / "hf"), order="row")
    assert rows.spec().input_size == 5 and rows.spec().extra["seq_len"] == 4


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"image_column": "img"}, "task.image_column 'img' is not a column of 'parquet'. Did you mean 'image'?"),
        ({"order": "column"}, "invalid value for 'task.order'"),
        ({"dataset": "nowhere-xyz/none", "data_files": None}, "task.dataset 'nowhere-xyz/none': cannot load the data set"),
    ],
)
def test_bad_input_stops_with_one_line_before_any_run(tmp_path, capsys, options, expected, monkeypatch):
    import datasets
    import huggingface_hub.constants

    from benchmark.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here anyway: fail at once instead of timing out
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    images = np.zeros((6, 2, 2), dtype=np.uint8)
    files = {"train": write_png_parquet(tmp_path / "train.parquet", images, [0, 1] * 3)}
    base = {"dataset": "parquet", "data_files": files, "cache_dir": str(tmp_path / "hf")}
    args = [f"task.{k}={json.dumps(v)}" for k, v in {**base, **options}.items() if v is not None]
    db = tmp_path / "m.db"
    code = main(["run", "task=seq_image", *args, f"tracking.tracking_uri=sqlite:///{db}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rnnbench: error: ") and expected in err[0], err
    assert not db.exists()


def test_short_run_on_digits_rows_learns(mlflow_uri):
    from benchmark.config import load_run_config
    from benchmark.runner import execute_run

    cfg = load_run_config(None, [
        "task=seq_image", "task.order=row", "model=gru", "model.hidden_size=32", "train.batch_size=64",
        "train.max_epochs=4", "train.lr=1e-2", f"tracking.tracking_uri={mlflow_uri}", "tracking.experiment=seq-image",
    ])
    result = execute_run(cfg)
    assert result.status == "FINISHED", result.failure
    assert result.metrics["test/accuracy"] > 0.6  # chance is 0.1
    assert result.metrics["data/test_images"] == round(0.2 * 1797)
