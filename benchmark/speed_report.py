"""What ``rnnbench speed`` shows and writes: tables, scaling fits, CSV, plot, MLflow runs."""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from rich.table import Table
from scipy import stats

from benchmark.speed import MODES, Measurement


@dataclass
class Fit:
    impl: str
    model: str
    mode: str
    axis: str  # "seq_len": linear fit ms = slope*T + intercept; "hidden": power law ms ∝ H^slope
    fixed: str
    points: int
    slope: float
    intercept: float
    r2: float


def _ok(rows: list[Measurement]) -> list[Measurement]:
    return [r for r in rows if math.isfinite(r.median_ms)]


def scaling_fits(rows: list[Measurement]) -> list[Fit]:
    """Cost against sequence length (linear fit) and hidden size (log-log fit), with the others fixed."""
    fits = []
    for axis, others in _AXES:
        groups = defaultdict(list)
        for r in _ok(rows):
            groups[(r.impl, r.model, r.mode, *(getattr(r, o) for o in others))].append(r)
        for (impl, model, mode, *fixed), members in groups.items():
            x = np.array([getattr(r, axis) for r in members], dtype=float)
            y = np.array([r.median_ms for r in members])
            if len(set(x)) < 3:
                continue
            if axis == "hidden":
                x, y = np.log(x), np.log(y)
            fit = stats.linregress(x, y)
            label = ", ".join(f"{o}={v}" for o, v in zip(others, fixed))
            fits.append(Fit(impl, model, mode, axis, label, len(members), fit.slope, fit.intercept, fit.rvalue**2))
    return fits


def lstm_gru_ratios(rows: list[Measurement]) -> list[dict]:
    """LSTM time / GRU time at each shape, implementation and mode where both were measured."""
    times = {(r.impl, r.model, r.hidden, r.batch, r.seq_len, r.mode): r.median_ms for r in _ok(rows)}
    out = []
    for (impl, model, h, b, t, mode), gru in sorted(times.items()):
        if model != "gru":
            continue
        lstm = times.get((impl, "lstm", h, b, t, mode))
        if lstm is not None:
            out.append({"impl": impl, "hidden": h, "batch": b, "seq_len": t, "mode": mode, "gru_ms": gru, "lstm_ms": lstm, "lstm_over_gru": lstm / gru})
    return out


def scan_speedups(rows: list[Measurement]) -> list[dict]:
    """Step-loop time / scan time at each model, shape and mode where both were measured."""
    times = {(r.impl, r.model, r.hidden, r.batch, r.seq_len, r.mode): r.median_ms for r in _ok(rows)}
    out = []
    for (impl, model, h, b, t, mode), scan in sorted(times.items()):
        loop = times.get(("loop", model, h, b, t, mode))
        if impl == "scan" and loop is not None:
            out.append({"model": model, "hidden": h, "batch": b, "seq_len": t, "mode": mode, "loop_ms": loop, "scan_ms": scan, "loop_over_scan": loop / scan})
    return out


# ----------------------------------------------------------------------------- stdout


def _ms(r: Measurement | None) -> str:
    if r is None:
        return ""
    if not math.isfinite(r.median_ms):
        return "n/a"
    return f"{r.median_ms:.3g} ±{r.iqr_ms / 2:.2g}"


def _short(mode: str) -> str:
    return "fwd" if mode == "forward" else "fwd+bwd"


def _first(index: dict, key: tuple, impls: list[str]) -> Measurement | None:
    """The forward+backward row of the first implementation measured for this model and shape."""
    return next((index[(*key, i, "forward+backward")] for i in impls if (*key, i, "forward+backward") in index), None)


def _memory(index: dict, key: tuple, impls: list[str]) -> str:
    """Peak MB of one forward+backward, from the first implementation with a memory figure."""
    for impl in impls:
        r = index.get((*key, impl, "forward+backward"))
        if r and math.isfinite(r.peak_memory_mb):
            return f"{r.peak_memory_mb:.1f} ({impl})"
    return "n/a"


def speed_table(rows: list[Measurement], title: str) -> Table:
    impls = list(dict.fromkeys(r.impl for r in rows))
    clock = rows[0].clock if rows else "wall"
    table = Table(title=title, caption=f"median ms ({clock} clock) ± half the IQR; MB: allocated by one forward+backward")
    for col in ("model", "hidden", "batch", "T"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for impl in impls:
        for mode in MODES:
            table.add_column(f"{impl}\n{_short(mode)} ms", justify="right")
    table.add_column("seq/s\n(fwd+bwd)", justify="right")
    table.add_column("MB\n(torch|scan)", justify="right")
    index = {(r.model, r.hidden, r.batch, r.seq_len, r.impl, r.mode): r for r in rows}
    for key in dict.fromkeys((r.model, r.hidden, r.batch, r.seq_len) for r in rows):
        cells = [_ms(index.get((*key, impl, mode))) for impl in impls for mode in MODES]
        first = _first(index, key, impls)
        seq = f"{first.seq_per_s:,.0f}" if first and math.isfinite(first.seq_per_s) else "n/a"
        table.add_row(key[0], *map(str, key[1:]), *cells, seq, _memory(index, key, impls))
    notes = sorted({r.note for r in rows if r.note})
    if notes:
        table.caption += "\n" + "\n".join(notes)
    return table


def markdown_table(rows: list[Measurement], title: str) -> str:
    """The stdout table as Markdown, for ``results/``: median ms per implementation and mode."""
    impls = list(dict.fromkeys(r.impl for r in rows))
    index = {(r.model, r.hidden, r.batch, r.seq_len, r.impl, r.mode): r for r in rows}
    head = ["model", "H", "B", "T", *(f"{i} {_short(m)} ms" for i in impls for m in MODES), "MB (fwd+bwd)"]
    lines = [f"# {title}", "", f"Median ms ({rows[0].clock} clock) over blocked repeats, ± half the IQR. n/a reasons below.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in dict.fromkeys((r.model, r.hidden, r.batch, r.seq_len) for r in rows):
        lines.append("| " + " | ".join([*map(str, key), *(_ms(index.get((*key, i, m))) for i in impls for m in MODES), _memory(index, key, impls)]) + " |")
    notes = sorted({r.note for r in rows if r.note})
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []) + [""])


def fits_table(fits: list[Fit]) -> Table:
    table = Table(title="scaling: ms = slope·T + intercept (R² of the linear fit); ms ∝ H^k (log-log fit)")
    for col in ("impl", "model", "mode", "against", "fixed", "slope", "R²"):
        table.add_column(col)
    for f in fits:
        slope = f"{f.slope:.3g} ms/step" if f.axis == "seq_len" else f"k = {f.slope:.2f}"
        table.add_row(f.impl, f.model, _short(f.mode), "T" if f.axis == "seq_len" else "H", f.fixed, slope, f"{f.r2:.3f}")
    return table


def speedup_table(speedups: list[dict]) -> Table:
    table = Table(title="step loop time / scan time (>1: the scan is faster)")
    for col in ("model", "hidden", "batch", "T", "mode", "loop ms", "scan ms", "loop/scan"):
        table.add_column(col)
    for r in speedups:
        table.add_row(r["model"], str(r["hidden"]), str(r["batch"]), str(r["seq_len"]), _short(r["mode"]), f"{r['loop_ms']:.3g}", f"{r['scan_ms']:.3g}", f"{r['loop_over_scan']:.1f}")
    return table


def ratio_table(ratios: list[dict]) -> Table:
    table = Table(title="LSTM time / GRU time (>1: GRU is faster)")
    for col in ("impl", "hidden", "batch", "T", "mode", "GRU ms", "LSTM ms", "LSTM/GRU"):
        table.add_column(col)
    for r in ratios:
        table.add_row(r["impl"], str(r["hidden"]), str(r["batch"]), str(r["seq_len"]), _short(r["mode"]), f"{r['gru_ms']:.3g}", f"{r['lstm_ms']:.3g}", f"{r['lstm_over_gru']:.2f}")
    return table


# ----------------------------------------------------------------------------- files


def write_csv(path: Path, records: list, columns: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dicts = [r if isinstance(r, dict) else {f.name: getattr(r, f.name) for f in fields(r)} for r in records]
    columns = columns or (list(dicts[0]) if dicts else [])
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(dicts)
    return path


_AXES = (("seq_len", ("hidden", "batch")), ("hidden", ("batch", "seq_len")))


def _sweep(rows: list[Measurement], axis: str, others: tuple[str, str]):
    """The rows of the fixed (other-axis) values that give ``axis`` the most points."""
    counts = Counter(tuple(getattr(r, o) for o in others) for r in rows)
    if not counts:
        return None, []
    fixed = max(counts, key=lambda k: (len({getattr(r, axis) for r in rows if tuple(getattr(r, o) for o in others) == k}), k))
    return fixed, [r for r in rows if tuple(getattr(r, o) for o in others) == fixed]


def plot(rows: list[Measurement], path: Path, title: str) -> Path:
    """Forward+backward time against T and against H, one panel row per implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in _ok(rows) if r.mode == "forward+backward"]
    impls = list(dict.fromkeys(r.impl for r in ok)) or ["torch"]
    # a panel per axis that varies (a grid with one hidden size gets no "against H" panel)
    panels = [p for p in (("seq_len", ("hidden", "batch"), "sequence length T"), ("hidden", ("batch", "seq_len"), "hidden size H"))
              if len({getattr(r, p[0]) for r in ok}) > 1]
    if not panels:
        return _bars(ok, impls, path, title)
    fig, axes = plt.subplots(len(impls), len(panels), figsize=(5.5 * len(panels), 3.6 * len(impls)), squeeze=False)
    for i, impl in enumerate(impls):
        mine = [r for r in ok if r.impl == impl]
        for j, (axis, others, xlabel) in enumerate(panels):
            ax = axes[i][j]
            fixed, sweep = _sweep(mine, axis, others)
            for model in dict.fromkeys(r.model for r in sweep):
                pts = sorted((getattr(r, axis), r.median_ms) for r in sweep if r.model == model)
                ax.plot(*zip(*pts), marker="o", label=model)
            fixed_txt = ", ".join(f"{o}={v}" for o, v in zip(others, fixed or ()))
            ax.set(xlabel=xlabel, ylabel="ms (forward+backward)", title=f"{impl}: time vs {axis} ({fixed_txt})")
            if axis == "hidden":
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if sweep:
                ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(ok: list[Measurement], impls: list[str], path: Path, title: str) -> Path:
    """One shape: forward+backward ms per model, a bar per implementation."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in ok))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(models) + 1.5))
    height = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        ms = {r.model: r.median_ms for r in ok if r.impl == impl}
        ys = [i + k * height for i, m in enumerate(models) if m in ms]
        ax.barh(ys, [ms[m] for m in models if m in ms], height=height, label=impl)
    shape = f"H={ok[0].hidden}, B={ok[0].batch}, T={ok[0].seq_len}: " if ok else ""
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(models))], models)
    ax.invert_yaxis()
    ax.set(xlabel=f"{shape}ms (forward+backward)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_scan(rows: list[Measurement], path: Path, title: str) -> Path:
    """Forward+backward time against T (log-log), step loop vs scan, one panel per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in _ok(rows) if r.mode == "forward+backward" and r.impl in ("loop", "scan")]
    panels = sorted({(r.hidden, r.batch) for r in ok})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (h, b) in zip(axes[0], panels):
        for model in dict.fromkeys(r.model for r in ok):
            for impl, style in (("loop", "--"), ("scan", "-")):
                pts = sorted((r.seq_len, r.median_ms) for r in ok if (r.model, r.impl, r.hidden, r.batch) == (model, impl, h, b))
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", label=f"{model} {impl}")
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="ms (forward+backward)", title=f"H={h}, B={b}")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- MLflow


def track(rows: list[Measurement], device, tracking_uri: str, experiment: str) -> int:
    """One MLflow run per (impl, model, shape): params the shape and cell, metrics ms and seq/s per mode."""
    import time

    from mlflow.entities import Metric, Param

    from benchmark import dashboard, record, tracking
    from benchmark.record import RunKind, Tag

    client = tracking.client(tracking_uri)
    exp_id = tracking.experiment_id(client, experiment)
    env = tracking.environment_tags(device) | tracking.source_tags() | ({"device": rows[0].device} if rows else {})
    now = int(time.time() * 1000)
    groups = defaultdict(list)
    for r in rows:
        groups[(r.impl, r.model, r.hidden, r.batch, r.seq_len)].append(r)
    for (impl, model, h, b, t), members in groups.items():
        first = members[0]
        tags = env | {Tag.IMPL: impl, Tag.MODEL: model, Tag.CELL: first.cell}
        name = dashboard.SEP.join([model, impl, f"H{h} B{b} T{t}"])
        run_id = record.create_run(client, exp_id, RunKind.SPEED, name, tags)
        params = {"impl": impl, "model": model, "cell": first.cell, "layers": first.layers, "bidirectional": first.bidirectional, "hidden": h, "batch": b, "seq_len": t, "threads": first.threads}
        metrics = {}
        for r in members:
            key = "fwd" if r.mode == "forward" else "fwd_bwd"
            for name, value in ((f"{key}_ms", r.median_ms), (f"{key}_iqr_ms", r.iqr_ms), (f"{key}_seq_per_s", r.seq_per_s), (f"{key}_peak_memory_mb", r.peak_memory_mb)):
                if math.isfinite(value):
                    metrics[name] = value
            if r.note:
                client.set_tag(run_id, f"note_{key}", r.note[: record.MAX_TAG_CHARS])
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        record.end_run(client, run_id, record.FINISHED if metrics else record.FAILED)
    return len(groups)


def report(rows: list[Measurement], device, threads: int, out: Path, console, preset: str = "cpu") -> list[Path]:
    """Print the tables and fits; write the CSVs and the plots named after the preset, device and torch."""
    from benchmark.speed import describe_device, file_stem

    stem = file_stem(device, threads, preset)
    clock = rows[0].clock if rows else "wall"
    title = f"rnnbench speed — {describe_device(device, threads)}, torch {rows[0].torch_version if rows else ''}, {clock} clock"
    console.print(speed_table(rows, title))
    fits = scaling_fits(rows)
    ratios = lstm_gru_ratios(rows)
    if fits:  # on screen: the sweeps the plot shows; every fit goes to the CSV
        shown = {(axis, ", ".join(f"{o}={v}" for o, v in zip(others, _sweep(_ok(rows), axis, others)[0] or ()))) for axis, others in _AXES}
        console.print(fits_table([f for f in fits if (f.axis, f.fixed) in shown]))
    if ratios:
        console.print(ratio_table([r for r in ratios if r["impl"] == "torch"] or ratios))
    speedups = scan_speedups(rows)
    if speedups:
        console.print(speedup_table(speedups))
    written = [write_csv(out / f"{stem}.csv", rows)]
    (out / f"{stem}.md").write_text(markdown_table(rows, title))
    written.append(out / f"{stem}.md")
    if fits:
        written.append(write_csv(out / f"{stem}-scaling.csv", fits))
    if ratios:
        written.append(write_csv(out / f"{stem}-lstm-over-gru.csv", ratios))
    if speedups:
        written.append(write_csv(out / f"{stem}-loop-over-scan.csv", speedups))
        if len({r["seq_len"] for r in speedups}) > 1:
            written.append(plot_scan(rows, out / f"{stem}-scan.png", title))
    written.append(plot(rows, out / f"{stem}.png", title))
    return written
