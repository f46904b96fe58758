"""Tokenize the splits once (a vocabulary trained on the training split) and cache the id arrays on disk.

Each split is stored flat: all token ids in one int32 array plus offsets, so a batch is built
with a few vectorised gathers. The cache folder is keyed by the data's identity and every
option that shapes it (``source.identity``), so a second run skips loading and tokenizing.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from tasks.text.options import TextOptions
from tasks.text.source import SPLITS, TextSplits, check_source, identity, load_splits

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1  # the order of SPECIALS fixes these ids
SPECIALS = [PAD, UNK]


@dataclass
class EncodedSplit:
    ids: np.ndarray  # int32, every sequence's ids back to back
    offsets: np.ndarray  # int64, len N+1: sequence i is ids[offsets[i]:offsets[i+1]]
    labels: np.ndarray  # int64, len N

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ProcessedText:
    splits: dict[str, EncodedSplit]
    label_names: list[str]
    vocab_size: int
    stats: dict[str, float] = field(default_factory=dict)  # how it was made: tokenizing speed, cache hit


def train_tokenizer(texts: list[str], o: TextOptions) -> Tokenizer:
    """A word-level or BPE vocabulary learned from ``texts`` (the training split only)."""
    model = models.WordLevel(unk_token=UNK) if o.tokenizer == "word" else models.BPE(unk_token=UNK)
    tokenizer = Tokenizer(model)
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if o.lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # words and runs of punctuation
    trainer_cls = trainers.WordLevelTrainer if o.tokenizer == "word" else trainers.BpeTrainer
    trainer = trainer_cls(vocab_size=o.vocab_size, min_frequency=o.min_frequency, special_tokens=SPECIALS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.enable_truncation(o.max_length)
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str], labels: np.ndarray) -> EncodedSplit:
    encodings = tokenizer.encode_batch_fast(texts) if hasattr(tokenizer, "encode_batch_fast") else tokenizer.encode_batch(texts)
    seqs = [e.ids or [UNK_ID] for e in encodings]  # a text of only dropped characters still gets one step
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int32, count=int(offsets[-1]))
    return EncodedSplit(ids, offsets, labels.astype(np.int64))


def process(splits: TextSplits, o: TextOptions) -> tuple[ProcessedText, Tokenizer]:
    started = time.perf_counter()
    tokenizer = train_tokenizer(splits.texts["train"], o)
    trained = time.perf_counter()
    encoded = {k: encode(tokenizer, splits.texts[k], splits.labels[k]) for k in SPLITS}
    done = time.perf_counter()
    n = sum(len(e) for e in encoded.values())
    stats = {
        "data/tokenizer_train_s": trained - started,
        "data/tokenize_s": done - trained,
        "data/tokenize_examples_per_s": n / max(done - trained, 1e-9),
        "data/val_carved": float(splits.val_carved),
    }
    return ProcessedText(encoded, splits.label_names, tokenizer.get_vocab_size(), stats), tokenizer


def cache_path(o: TextOptions) -> Path:
    return Path(o.cache_dir) / "text" / identity(o)


def save(data: ProcessedText, tokenizer: Tokenizer, folder: Path) -> None:
    """Write to a temporary folder, then rename: a concurrent or killed run never sees half a cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    arrays = {f"{k}.{name}": getattr(s, name) for k, s in data.splits.items() for name in ("ids", "offsets", "labels")}
    np.savez(tmp / "data.npz", **arrays)
    tokenizer.save(str(tmp / "tokenizer.json"))
    meta = {"label_names": data.label_names, "vocab_size": data.vocab_size, "stats": data.stats}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.rename(tmp, folder)
    except OSError:  # another process cached the same data first
        shutil.rmtree(tmp, ignore_errors=True)


def load_cached(folder: Path) -> ProcessedText | None:
    if not (folder / "meta.json").is_file():
        return None
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "data.npz") as z:
        splits = {k: EncodedSplit(z[f"{k}.ids"], z[f"{k}.offsets"], z[f"{k}.labels"]) for k in SPLITS}
    stats = {"data/val_carved": meta["stats"].get("data/val_carved", 0.0)}
    return ProcessedText(splits, meta["label_names"], meta["vocab_size"], stats)


def prepare(o: TextOptions) -> ProcessedText:
    """The processed data for these options: from the cache, or loaded, checked, tokenized and cached."""
    started = time.perf_counter()
    check_source(o)
    folder = cache_path(o)
    data = load_cached(folder)
    if data is None:
        data, tokenizer = process(load_splits(o), o)
        save(data, tokenizer, folder)
    data.stats |= {"data/cache_hit": float("data/tokenize_s" not in data.stats), "data/prepare_s": time.perf_counter() - started}
    return data
