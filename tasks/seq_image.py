"""Images read as sequences: sequential and permuted MNIST, and the same for any image data set.

    rnnbench run configs/tasks/digits8x8.yaml model=gru              # offline: scikit-learn's 8x8 digits, T = 64
    rnnbench run configs/tasks/seqmnist.yaml model=lstm              # ylecun/mnist from the hub, T = 784
    rnnbench run configs/tasks/pmnist.yaml model=gru                 # the same, pixels in a fixed random order

``order=pixel`` feeds one pixel per step (T = H*W, Le et al. 2015; Bai et al. 2018), ``order=row``
one row per step (T = H). ``permute`` shuffles the steps with one fixed permutation drawn from
``permutation_seed`` alone, so every model and seed reads the same pixel order. Pixels are scaled
to [0, 1] and, with ``normalize=standard``, standardised with the training split's mean and std
(MNIST: 0.1307, 0.3081, the values of Bai et al.'s code). Images are kept as uint8 on the host; a
batch becomes a float sequence on the training device.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from pydantic import Field
from torch.utils.data import DataLoader, TensorDataset

from benchmark import hub, metrics
from benchmark.config import ConfigError
from benchmark.registry import did_you_mean
from benchmark.task import (
    Baseline, Batch, DataSplit, DatasetInfo, InputKind, Metric, OutputKind, Task, TaskOptions, TaskSpec, fingerprint,
    register_task,
)  # fmt: skip

STAGES = ("train", "val", "test")


class SeqImageOptions(TaskOptions):
    dataset: str = Field(
        "digits",
        description="digits: scikit-learn's bundled 8x8 digits (offline); else a datasets.load_dataset name: "
        "a hub id (ylecun/mnist), 'parquet' with data_files, or 'imagefolder' with data_dir",
    )
    dataset_config: str | None = Field(None, description="the hub data set's config name")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(None, description="local files for the builder, e.g. {train: a.parquet, test: b.parquet}")
    data_dir: str | None = Field(None, description="imagefolder: <data_dir>/[<split>/]<label>/<image>")
    cache_dir: str | None = Field(None, description="datasets cache folder")
    image_column: str = "image"
    label_column: str = "label"
    train_split: str = "train"
    test_split: str = "test"
    val_split: str | None = Field(None, description="default: 'validation' if present, else carved from train")
    channels: Literal[1, 3] = Field(1, description="1: grayscale (MNIST), 3: RGB (one step carries 3 values per pixel)")
    # the sequence
    order: Literal["pixel", "row"] = Field("pixel", description="pixel: one pixel per step (T = H*W); row: one row per step (T = H)")
    permute: bool = Field(False, description="read the steps in one fixed random order (permuted MNIST)")
    permutation_seed: int = Field(1234, description="seed of the permutation; the same for every model and training seed")
    normalize: Literal["unit", "standard"] = Field("standard", description="unit: pixels in [0, 1]; standard: then the training split's mean 0 and std 1")
    # splits and caps
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train carved off when there is no validation split")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of the data held out when the source has no test split (digits)")
    split_seed: int = Field(1234, description="seed of the carved splits and the caps")
    max_train_examples: int | None = Field(None, gt=0, description="seeded random cap on training images")
    max_eval_examples: int | None = Field(None, gt=0, description="seeded random cap on validation and test images")


@dataclass
class ImageSplits:
    images: dict[str, torch.Tensor]  # (N, H, W, C) uint8
    labels: dict[str, torch.Tensor]  # (N,) int64
    classes: list[str]
    pixel_max: float  # the value of a white pixel: 255, or 16 for the 8x8 digits


def sequence_of(images: torch.Tensor, order: str, permutation: torch.Tensor | None) -> torch.Tensor:
    """(B, H, W, C) -> (B, T, F): pixel order T = H*W, F = C; row order T = H, F = W*C; then the
    steps reordered by ``permutation`` (a fixed index over T) if given."""
    b, h, w, c = images.shape
    seq = images.reshape(b, h * w, c) if order == "pixel" else images.reshape(b, h, w * c)
    return seq if permutation is None else seq[:, permutation.to(seq.device)]


def permutation_for(steps: int, seed: int) -> torch.Tensor:
    """One fixed order of the steps, from ``seed`` alone (on the CPU generator: the same everywhere)."""
    return torch.randperm(steps, generator=torch.Generator().manual_seed(seed))


def _decode(value, channels: int) -> np.ndarray:
    """An image cell (encoded bytes, a PIL image, or nested lists) -> (H, W, C) uint8."""
    from PIL import Image

    if isinstance(value, dict):
        value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") is not None else Image.open(value["path"])
    if isinstance(value, Image.Image):
        value = np.asarray(value.convert("L" if channels == 1 else "RGB"))
    array = np.asarray(value)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] != channels:
        raise ValueError(f"{array.shape[-1]} channel(s), not {channels}")
    return array.astype(np.uint8)


def _from_digits() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], float]:
    from sklearn.datasets import load_digits

    digits = load_digits()  # 1,797 images of 8x8 pixels, values 0..16, bundled with scikit-learn
    return {"all": (digits.images.astype(np.uint8)[..., None], digits.target.astype(np.int64))}, [str(c) for c in digits.target_names], 16.0


def _from_datasets(o: SeqImageOptions) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], float]:
    datasets = hub.datasets()
    kwargs = {"name": o.dataset_config, "revision": o.revision, "data_files": o.data_files, "data_dir": o.data_dir, "cache_dir": o.cache_dir}
    try:
        loaded = datasets.load_dataset(o.dataset, **{k: v for k, v in kwargs.items() if v is not None})
    except (FileNotFoundError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as e:
        raise ConfigError(
            f"task.dataset '{o.dataset}': cannot load the data set ({str(e).splitlines()[0][:200]}); without network use "
            "task.dataset=digits, or local files: task.dataset=parquet task.data_files=... or task.dataset=imagefolder task.data_dir=..."
        ) from None
    except ValueError as e:
        raise ConfigError(f"task.dataset '{o.dataset}': {str(e).splitlines()[0]}") from None
    wanted = [o.train_split, o.test_split, o.val_split or ("validation" if "validation" in loaded else None)]
    out, classes = {}, None
    for split in filter(None, wanted):
        if split not in loaded:
            if split == o.test_split:
                continue  # no test split: carved below
            raise ConfigError(f"split '{split}' not found in '{o.dataset}'; its splits: {', '.join(loaded)}")
        ds = loaded[split]
        for key, column in (("image_column", o.image_column), ("label_column", o.label_column)):
            if column not in ds.column_names:
                raise ConfigError(f"task.{key} '{column}' is not a column of '{o.dataset}'.{did_you_mean(column, ds.column_names)} Columns: {', '.join(ds.column_names)}")
        if isinstance(ds.features[o.image_column], datasets.Image):
            ds = ds.cast_column(o.image_column, datasets.Image(decode=False))  # decoded below, with PIL
        feature = ds.features[o.label_column]
        if classes is None and isinstance(feature, datasets.ClassLabel):
            classes = list(feature.names)
        images = []
        for row, value in enumerate(ds[o.image_column]):
            try:
                images.append(_decode(value, o.channels))
            except Exception as e:  # PIL raises several kinds for a file that is not an image
                raise ConfigError(f"row {row} of split '{split}', column '{o.image_column}': not a readable image ({e})") from None
            if images[-1].shape != images[0].shape:
                raise ConfigError(f"row {row} of split '{split}' is {images[-1].shape[:2]} pixels, row 0 {images[0].shape[:2]}: images must share one size")
        labels = np.asarray(ds[o.label_column])
        if not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError(f"column '{o.label_column}' of split '{split}' must hold integer labels (or a ClassLabel), not {labels.dtype}")
        stage = "train" if split == o.train_split else "test" if split == o.test_split else "val"
        out[stage] = (np.stack(images) if images else np.zeros((0, 1, 1, o.channels), np.uint8), labels.astype(np.int64))
    if "train" in out and "test" in out and out["train"][0].shape[1:] != out["test"][0].shape[1:]:
        raise ConfigError("the train and test images differ in size")
    n_classes = max(int(y.max()) for _, y in out.values() if len(y)) + 1
    return out, classes or [str(i) for i in range(n_classes)], 255.0


def _carve(images: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator):
    order = rng.permutation(len(labels))
    n = max(1, round(len(labels) * fraction))
    held, kept = np.sort(order[:n]), np.sort(order[n:])
    return (images[kept], labels[kept]), (images[held], labels[held])


def load_images(o: SeqImageOptions) -> ImageSplits:
    """Load, carve the missing splits (seeded), apply the caps; one ConfigError line per mistake."""
    parts, classes, pixel_max = _from_digits() if o.dataset == "digits" else _from_datasets(o)
    rng = np.random.default_rng(o.split_seed)
    if "all" in parts:
        parts["train"], parts["test"] = _carve(*parts.pop("all"), o.test_fraction, rng)
    if "test" not in parts:
        parts["train"], parts["test"] = _carve(*parts["train"], o.test_fraction, rng)
    if "val" not in parts:
        parts["train"], parts["val"] = _carve(*parts["train"], o.val_fraction, rng)
    for stage, cap in (("train", o.max_train_examples), ("val", o.max_eval_examples), ("test", o.max_eval_examples)):
        if cap is not None and cap < len(parts[stage][1]):
            keep = np.sort(rng.permutation(len(parts[stage][1]))[:cap])
            parts[stage] = (parts[stage][0][keep], parts[stage][1][keep])
    for stage in STAGES:
        if len(parts[stage][1]) == 0:
            raise ConfigError(f"the {stage} split of '{o.dataset}' is empty")
    bad = [(s, int(y.min()), int(y.max())) for s, (_, y) in parts.items() if y.min() < 0 or y.max() >= len(classes)]
    if bad:
        raise ConfigError(f"labels of the {bad[0][0]} split run {bad[0][1]}..{bad[0][2]}, outside the classes 0..{len(classes) - 1}")
    return ImageSplits(
        {s: torch.from_numpy(np.ascontiguousarray(x)) for s, (x, _) in parts.items()},
        {s: torch.from_numpy(y) for s, (_, y) in parts.items()},
        classes,
        pixel_max,
    )


class SeqImageDataModule(L.LightningDataModule):
    """uint8 images on the host; on the device: scaled, standardised, read as a sequence."""

    def __init__(self, data: ImageSplits, batch_size: int, seed: int, order: str, permutation: torch.Tensor | None, mean: float, std: float):
        super().__init__()
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.order, self.permutation, self.mean, self.std = order, permutation, mean, std

    def _loader(self, stage: str, shuffle: bool = False) -> DataLoader:
        ds = TensorDataset(self.data.images[stage], self.data.labels[stage])
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=generator)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def pipeline_metrics(self) -> dict[str, float]:
        """The split sizes and the standardisation applied, logged with the run."""
        sizes = {f"data/{s}_images": float(len(y)) for s, y in self.data.labels.items()}
        return sizes | {"data/pixel_mean": self.mean, "data/pixel_std": self.std}

    def on_after_batch_transfer(self, batch, dataloader_idx: int) -> Batch:
        images, labels = batch
        x = (images.float() / self.data.pixel_max - self.mean) / self.std
        return Batch(sequence_of(x, self.order, self.permutation), labels)


@register_task
class SeqImage(Task):
    """Classify an image read step by step; accuracy against the majority class of train."""

    name = "seq_image"
    version = "1"
    description = "images as pixel or row sequences, optionally permuted: sequential / permuted MNIST (accuracy)"
    Options = SeqImageOptions
    label_options = ("dataset", "order", "permute")

    data_options = (
        "dataset", "dataset_config", "revision", "data_files", "data_dir", "cache_dir", "image_column", "label_column",
        "train_split", "test_split", "val_split", "channels", "max_train_examples", "max_eval_examples",
    )  # fmt: skip
    _data: ImageSplits | None = None

    @classmethod
    def smoke_options(cls, workdir) -> dict:
        return {"order": "row", "max_train_examples": 64, "max_eval_examples": 32}

    @property
    def data(self) -> ImageSplits:
        if self._data is None:
            self._data = load_images(self.options)
        return self._data

    @property
    def data_name(self) -> str:
        o = self.options
        if o.data_dir:
            return Path(o.data_dir).name or o.data_dir
        return Path(o.dataset).name or o.dataset  # ylecun/mnist -> mnist; digits

    def dataset_info(self) -> DatasetInfo:
        """Digests of the images (uint8, as loaded) and labels per split; order and permutation are the task's, not the data's."""
        o, data = self.options, self.data
        if o.dataset == "digits":
            source_type, source = "local", {"bundled": "sklearn.datasets.load_digits"}
        elif o.data_dir or o.data_files:
            source_type, source = "local", {"builder": o.dataset, "data_dir": o.data_dir, "data_files": o.data_files}
        else:
            source_type, source = "hub", {"hub": o.dataset, "config": o.dataset_config, "revision": o.revision}
        source |= {"split_seed": o.split_seed, "max_train_examples": o.max_train_examples, "max_eval_examples": o.max_eval_examples}
        splits = {s: DataSplit(fingerprint(data.classes, data.images[s], data.labels[s]), len(data.labels[s])) for s in data.labels}
        return DatasetInfo(self.data_name, source_type, source, splits)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.images["train"].shape[1:])

    def steps(self) -> int:
        h, w, _ = self.image_shape
        return h * w if self.options.order == "pixel" else h

    def permutation(self) -> torch.Tensor | None:
        return permutation_for(self.steps(), self.options.permutation_seed) if self.options.permute else None

    def moments(self) -> tuple[float, float]:
        """(mean, std) subtracted and divided after scaling to [0, 1]: the training split's, or (0, 1)."""
        if self.options.normalize == "unit":
            return 0.0, 1.0
        # from the histogram of the uint8 pixel values: exact, and no float copy of the whole split
        counts = torch.bincount(self.data.images["train"].flatten().long(), minlength=256).double()
        values = torch.arange(len(counts), dtype=torch.float64) / self.data.pixel_max
        n = counts.sum()
        mean = float((counts * values).sum() / n)
        var = float((counts * (values - mean) ** 2).sum() / (n - 1))
        return mean, var**0.5

    def spec(self) -> TaskSpec:
        data, o = self.data, self.options
        h, w, c = self.image_shape
        train, test = data.labels["train"], data.labels["test"]
        majority = int(torch.bincount(train).argmax())
        return TaskSpec(
            name=self.name,
            version=self.version,
            input_kind=InputKind.CONTINUOUS,
            input_size=c if o.order == "pixel" else w * c,
            output_kind=OutputKind.SEQUENCE_CLASSIFICATION,
            num_outputs=len(data.classes),
            loss=metrics.cross_entropy_loss,
            metrics=(Metric("accuracy", metrics.accuracy, higher_is_better=True),),
            main_metric="accuracy",
            baseline=Baseline(f"majority class of train ({data.classes[majority]})", {"accuracy": float((test == majority).float().mean())}),
            extra={"seq_len": self.steps(), "image": f"{h}x{w}x{c}", "train_size": len(train)},
            perturbations=("gaussian",),
        )

    def datamodule(self, batch_size: int, seed: int) -> SeqImageDataModule:
        mean, std = self.moments()
        return SeqImageDataModule(self.data, batch_size, seed, self.options.order, self.permutation(), mean, std)
