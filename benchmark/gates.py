"""``rnnbench gates``: what a trained network's gates do on its test set.

    rnnbench gates --experiment lengths

Each run's checkpoint is loaded into the reference cells (``benchmark.models.reference``, tested
equal to torch.nn), which return every gate's activations. Per layer, direction and sigmoid gate
(GRU: update, reset; LSTM: input, forget, output) over every valid step and unit of the test set:
the mean activation and the fractions left-saturated (< 0.1) and right-saturated (> 0.9), as
Karpathy, Johnson & Fei-Fei (2015, "Visualizing and understanding recurrent networks") count them.
Padding steps never enter: the statistics are sums over each sequence's own steps.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.entities import Metric as MlflowMetric

from benchmark import record
from benchmark.checkpoint import LoadedRun, finished_runs, load_runs, test_batches
from benchmark.models.network import valid_mask
from benchmark.models.reference import as_reference
from benchmark.tracking import client

SIGMOID_GATES = ("update", "reset", "input", "forget", "output")  # candidates and cell inputs are tanh, not gates
LEFT, RIGHT = 0.1, 0.9
BINS = 50

Key = tuple[int, int, str]  # layer, direction, gate


@dataclass
class GateStats:
    """Running sums over valid steps and units, per (layer, direction, gate)."""

    sums: dict[Key, np.ndarray] = field(default_factory=dict)  # [sum, left, right, count] in float64
    histograms: dict[Key, np.ndarray] = field(default_factory=dict)  # counts over BINS bins of [0, 1]

    def add(self, gates: list[list[dict[str, torch.Tensor]]], mask: torch.Tensor) -> None:
        for layer, directions in enumerate(gates):
            for direction, named in enumerate(directions):
                for gate, act in named.items():
                    if gate not in SIGMOID_GATES:
                        continue
                    v = act[mask].double()  # (valid steps, units)
                    key = (layer, direction, gate)
                    add = np.array([v.sum().item(), (v < LEFT).sum().item(), (v > RIGHT).sum().item(), v.numel()])
                    self.sums[key] = self.sums.get(key, 0) + add
                    self.histograms[key] = self.histograms.get(key, 0) + torch.histc(v, BINS, 0, 1).numpy()

    def table(self) -> pd.DataFrame:
        """One row per (layer, direction, gate): mean, left_sat, right_sat and the values counted."""
        rows = [{"layer": layer, "direction": "bwd" if d else "fwd", "gate": gate, "mean": s[0] / s[3],
                 "left_sat": s[1] / s[3], "right_sat": s[2] / s[3], "values": int(s[3])}
                for (layer, d, gate), s in sorted(self.sums.items())]  # fmt: skip
        return pd.DataFrame(rows, columns=["layer", "direction", "gate", "mean", "left_sat", "right_sat", "values"])

    def metrics(self) -> dict[str, float]:
        """``gates/l0/fwd/forget/right_sat`` and the rest, as ``record.gate_metric`` names them."""
        out = {}
        for (layer, d, gate), s in self.sums.items():
            for stat, value in zip(record.GATE_STATS, (s[0] / s[3], s[1] / s[3], s[2] / s[3])):
                out[record.gate_metric(layer, d, gate, stat)] = float(value)
        return out


def recurrent_inputs(run: LoadedRun, inputs: torch.Tensor) -> torch.Tensor:
    """What the recurrent stack reads: the inputs, embedded for token tasks."""
    embedding = run.network.embedding
    return embedding(inputs) if embedding is not None else inputs


@torch.no_grad()
def gate_stats(reference, batches) -> tuple[GateStats, list]:
    """Statistics of ``reference`` (a ``ReferenceRecurrent``) over ``batches`` of (recurrent inputs,
    lengths or None); also returns the first sequence's gates over its valid steps, for the heatmap."""
    stats, first = GateStats(), None
    for x, lengths in batches:
        _, _, gates = reference(x, lengths, return_gates=True)
        mask = valid_mask(lengths, x.shape[0], x.shape[1], x.device)
        stats.add(gates, mask)
        if first is None:
            n = int(mask[0].sum())
            first = [[{g: a[0, :n] for g, a in named.items() if g in SIGMOID_GATES} for named in layer] for layer in gates]
    return stats, first


def _plots(stats: GateStats, first: list, title: str, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(stats.histograms)
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.6), squeeze=False, sharey=True)
    edges = np.linspace(0, 1, BINS + 1)
    for ax, key in zip(axes[0], keys):
        counts = stats.histograms[key]
        ax.bar(edges[:-1], counts / counts.sum(), width=1 / BINS, align="edge")
        ax.axvline(LEFT, color="grey", lw=0.6), ax.axvline(RIGHT, color="grey", lw=0.6)
        ax.set_title(f"l{key[0]} {'bwd' if key[1] else 'fwd'} {key[2]}", fontsize=9)
        ax.set_xlabel("activation")
    axes[0][0].set_ylabel("share of values")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    paths = [folder / "histograms.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    named = [(f"l{layer} {'bwd' if d else 'fwd'} {g}", a) for layer, dirs in enumerate(first) for d, gs in enumerate(dirs) for g, a in gs.items()]
    fig, axes = plt.subplots(len(named), 1, figsize=(8, 1.8 * len(named) + 0.6), squeeze=False, layout="constrained")
    for ax, (name, a) in zip(axes[:, 0], named):
        im = ax.imshow(a.T.numpy(), aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
        ax.set_ylabel(f"{name}\nunit", fontsize=8)
    axes[-1][0].set_xlabel("step")
    fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.02)
    fig.suptitle(f"{title}: gates of the first test sequence", fontsize=9)
    paths.append(folder / "heatmap.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def inspect(run: LoadedRun) -> tuple[GateStats, list]:
    """Gate statistics of a loaded run over its (clean) test split."""
    reference = as_reference(run.network.encoder.rnn).eval()
    batches = ((recurrent_inputs(run, b.inputs), b.lengths) for b in test_batches(run))
    return gate_stats(reference, batches)


def run(tracking_uri: str, experiment: str | None, run_ids: list[str], task: str | None, console) -> int:
    """Inspect and log every run's gates; returns the number of runs."""
    loaded = load_runs(tracking_uri, finished_runs(tracking_uri, experiment, run_ids, task))
    mlflow, now = client(tracking_uri), int(time.time() * 1000)
    for r in loaded:
        stats, first = inspect(r)
        metrics = [MlflowMetric(k, v, now, 0) for k, v in stats.metrics().items()]
        mlflow.log_batch(r.run_id, metrics=metrics)
        with tempfile.TemporaryDirectory(prefix="rnnbench-gates-") as tmp:
            folder = Path(tmp)
            stats.table().to_csv(folder / "stats.csv", index=False)
            _plots(stats, first, f"{r.cfg.model.name} seed {r.cfg.seed} on {r.task.label}", folder)
            mlflow.log_artifacts(r.run_id, tmp, record.GATES_ARTIFACTS)
        t = stats.table()
        line = ", ".join(f"{x.gate}{'' if (x.layer, x.direction) == (0, 'fwd') else f'[l{x.layer} {x.direction}]'} "
                         f"{x.mean:.2f} ({x.left_sat:.0%}<{LEFT}, {x.right_sat:.0%}>{RIGHT})" for x in t.itertuples())  # fmt: skip
        console.print(f"{r.run_id[:8]} {r.cfg.model.name} s{r.cfg.seed} {r.task.label}: {line}", highlight=False, markup=False)
    return len(loaded)
