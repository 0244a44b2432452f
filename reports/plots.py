"""The report's figures, as PNG bytes (matplotlib Agg, no display, byte-for-byte repeatable).

A figure that has nothing to plot keeps a `note` saying why instead of its PNG.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from reports import analysis
from reports.format import DISPLAY_KEYS, describe_cell
from reports.frame import NA_KEY
from reports.telemetry import run_series

DPI = 110
MAX_UTILIZATION_CELLS = 4
MAX_LEGEND_DEVICES = 4
LOG_SCALE_RATIO = 20.0  # supply and demand this far apart: a log axis shows both
# Fixed style so that output does not depend on a user's matplotlibrc.
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "path.simplify": False,
    "svg.hashsalt": "chexbench",
}
COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)


@dataclass(frozen=True)
class Figure:
    """A figure for the report: its file name, title, caption, and PNG or why not."""

    name: str
    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None


def all_figures(
    cells: pd.DataFrame, runs: pd.DataFrame, results: Mapping[str, dict[str, Any]]
) -> list[Figure]:
    with plt.rc_context(STYLE):
        return [
            scaling_figure(cells),
            formats_figure(cells),
            efficiency_figure(cells),
            speedup_figure(cells),
            supply_demand_figure(cells),
            utilization_figure(cells, runs, results),
        ]


def scaling_figure(cells: pd.DataFrame) -> Figure:
    title, name = "Images/s against GPUs", "scaling.png"
    caption = (
        "Mean images/s (global) per GPU count with 95% intervals (error bars), one panel "
        "per model; the dashed line of the same colour is ideal linear scaling from the "
        "1-GPU cell."
    )
    series = _series(cells)
    if not series:
        return Figure(name, title, caption, note="no synthetic, train or fit cell finished")
    if all(points["gpus"].nunique() < 2 for points in series.values()):
        return Figure(
            name, title, caption, note="no series of cells ran at more than one GPU count"
        )
    models = sorted({key[0] for key in series})
    figure, axes = panels(len(models))
    for axis, model in zip(axes, models, strict=True):
        for color, (key, points) in zip(color_cycle(), _of_model(series, model), strict=False):
            gpus, ips = points["gpus"].tolist(), points["images_per_sec"].tolist()
            axis.errorbar(
                gpus,
                ips,
                yerr=_yerr(points["images_per_sec"], points["ips_low"], points["ips_high"]),
                marker="o",
                color=color,
                label=key[1],
                capsize=3,
            )
            base = points[points["gpus"] == 1]["images_per_sec"]
            if not base.empty:
                axis.plot(
                    gpus,
                    [base.iloc[0] * n for n in gpus],
                    linestyle="--",
                    color=color,
                    alpha=0.6,
                    linewidth=1,
                )
        _gpu_axis(axis, cells, model, "images/s (global)")
    return Figure(name, title, caption, png_bytes(figure))


def efficiency_figure(cells: pd.DataFrame) -> Figure:
    title, name = "Scaling efficiency", "efficiency.png"
    caption = (
        "Images/s at N GPUs / (N x images/s at 1 GPU) for each series with a 1-GPU "
        "cell, with 95% intervals; 100% is linear."
    )
    frame = analysis.scaling_frame(cells)
    if frame.empty or frame["gpus"].nunique() < 2:
        return Figure(
            name,
            title,
            caption,
            note="needs cells at 1 GPU and at more GPUs with otherwise equal settings",
        )
    series = _series(frame)
    models = sorted({key[0] for key in series})
    figure, axes = panels(len(models))
    for axis, model in zip(axes, models, strict=True):
        for color, (key, points) in zip(color_cycle(), _of_model(series, model), strict=False):
            axis.errorbar(
                points["gpus"].tolist(),
                (points["efficiency"] * 100).tolist(),
                yerr=_yerr(
                    points["efficiency"] * 100,
                    points["efficiency_low"] * 100,
                    points["efficiency_high"] * 100,
                ),
                marker="o",
                color=color,
                label=key[1],
                capsize=3,
            )
        axis.axhline(100, color="black", linewidth=0.8, linestyle=":")
        axis.set_ylim(0, max(110, float(frame["efficiency"].max() * 100) + 10))
        _gpu_axis(axis, frame, model, "efficiency (%)")
    return Figure(name, title, caption, png_bytes(figure))


def speedup_figure(cells: pd.DataFrame) -> Figure:
    title, name = "TFRecord over raw files", "speedup.png"
    caption = (
        "Speedup of TFRecords over raw files (images/s tfrecord / raw - 1) in training, "
        "per model and GPU count, with 95% intervals; n.s.: no difference detected at "
        "this noise level."
    )
    frame = analysis.speedup_frame(cells)
    training = frame[frame["mode"].isin(analysis.TRAINING_MODES)] if not frame.empty else frame
    if training.empty:
        return Figure(
            name, title, caption, note="no training cell has both a raw and a tfrecord variant"
        )
    training = training.assign(
        group=[
            _label(
                row,
                (
                    "source",
                    "mode",
                    "input",
                    "pipeline",
                    "precision",
                    "batch_per_gpu",
                    "image_size",
                    "xla",
                ),
                training,
            )
            for _, row in training.iterrows()
        ]
    )
    gpus = sorted(training["gpus"].unique())
    bars = sorted({(row["model"], row["group"]) for _, row in training.iterrows()})
    figure, axis = plt.subplots(figsize=(7.5, 3.8))
    width = min(0.8 / len(bars), 0.3)  # one lone bar should not fill the axis
    for index, (color, (model, group)) in enumerate(zip(color_cycle(), bars, strict=False)):
        chosen = training[(training["model"] == model) & (training["group"] == group)]
        xs = [gpus.index(n) + (index - (len(bars) - 1) / 2) * width for n in chosen["gpus"]]
        values = (chosen["speedup"] * 100).tolist()
        label = f"{model} {group}".strip()
        errors = _yerr(
            chosen["speedup"] * 100, chosen["speedup_low"] * 100, chosen["speedup_high"] * 100
        )
        drawn = axis.bar(
            xs, values, width=width * 0.9, color=color, label=label, yerr=errors, capsize=3
        )
        texts = [
            f"{v:+.1f}%" + ("" if significant else " n.s.")
            for v, significant in zip(values, chosen["speedup_significant"], strict=True)
        ]
        axis.bar_label(drawn, labels=texts, fontsize=7, padding=2)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(gpus)), [f"{n} GPU{'s' if n != 1 else ''}" for n in gpus])
    axis.set_xlim(-0.6, len(gpus) - 0.4)
    axis.set_ylabel("speedup (%)")
    axis.margins(y=0.2)
    axis.legend(loc="best")
    return Figure(name, title, caption, png_bytes(figure))


def formats_figure(cells: pd.DataFrame) -> Figure:
    """The poster's figure: images/s of raw beside TFRecord, per model and GPU count."""
    title, name = "Raw files beside TFRecords", "formats.png"
    caption = (
        "Training images/s (global) from raw files and from TFRecords, side by side per "
        "GPU count, one panel per model, with 95% intervals (the poster's figure, with "
        "its uncertainty)."
    )
    frame = analysis.speedup_frame(cells)
    training = frame[frame["mode"].isin(analysis.TRAINING_MODES)] if not frame.empty else frame
    if training.empty:
        return Figure(
            name, title, caption, note="no training cell has both a raw and a tfrecord variant"
        )
    keys = ("source", "mode", "input", "pipeline", "precision", "batch_per_gpu", "image_size")
    training = training.assign(
        group=[_label(row, keys, training) for _, row in training.iterrows()]
    )
    models = sorted(training["model"].unique())
    figure, axes = panels(len(models))
    for axis, model in zip(axes, models, strict=True):
        chosen = training[training["model"] == model]
        gpus = sorted(chosen["gpus"].unique())
        groups = sorted(chosen["group"].unique())
        bars = 2 * len(groups)
        width = min(0.8 / bars, 0.35)
        for index, group in enumerate(groups):
            rows = chosen[chosen["group"] == group]
            slots = [gpus.index(n) for n in rows["gpus"]]
            for side, (column, low, high, tag) in enumerate(
                (
                    ("raw_ips", "raw_ips_low", "raw_ips_high", "raw"),
                    ("tfrecord_ips", "ips_low", "ips_high", "tfrecord"),
                )
            ):
                position = 2 * index + side
                xs = [slot + (position - (bars - 1) / 2) * width for slot in slots]
                label = f"{tag} {group}".strip() if len(groups) > 1 else tag
                axis.bar(
                    xs,
                    rows[column].tolist(),
                    width=width * 0.9,
                    color=COLORS[position % len(COLORS)],
                    yerr=_yerr(rows[column], rows[low], rows[high]),
                    capsize=3,
                    label=label,
                )
        axis.set_xticks(range(len(gpus)), [f"{n} GPU{'s' if n != 1 else ''}" for n in gpus])
        axis.set_ylabel("images/s (global)")
        axis.set_title(model, loc="left")
        axis.legend(loc="best")
    return Figure(name, title, caption, png_bytes(figure))


def _yerr(values: pd.Series, low: pd.Series, high: pd.Series) -> list[list[float]]:
    """matplotlib's (below, above) error lengths; none (0) where there is no finite interval."""
    below, above = [], []
    for value, lo, hi in zip(values.tolist(), low.tolist(), high.tolist(), strict=True):
        finite = all(pd.notna(x) and abs(float(x)) != float("inf") for x in (lo, hi))
        below.append(float(value) - float(lo) if finite else 0.0)
        above.append(float(hi) - float(value) if finite else 0.0)
    return [below, above]


def supply_demand_figure(cells: pd.DataFrame) -> Figure:
    title, name = "Supply against demand", "supply_demand.png"
    caption = (
        "What the input pipeline alone supplies (pipeline mode, dashed, per format) "
        "against what the model consumes on random data (synthetic mode, solid, per "
        "model), in images/s per GPU count, with 95% intervals. Where a dashed line is "
        "below a solid one the input cannot feed that model."
    )
    demand = cells[cells["mode"] == "synthetic"]
    supply = cells[cells["mode"] == "pipeline"]
    if demand.empty or supply.empty:
        missing = "synthetic" if demand.empty else "pipeline"
        return Figure(name, title, caption, note=f"no {missing}-mode cell in these results")
    figure, axis = plt.subplots(figsize=(7.5, 3.8))
    colors = color_cycle()
    for frame, style, varying, always in (
        (
            demand,
            "-",
            ("source", "model", "precision", "xla", "batch_per_gpu", "image_size"),
            ("model",),
        ),
        (supply, "--", ("source", "input", "pipeline", "batch_per_gpu", "image_size"), ("input",)),
    ):
        names = [_label(row, varying, frame, always=always) for _, row in frame.iterrows()]
        for label in sorted(set(names)):
            same = [name == label for name in names]
            points = frame.loc[pd.Series(same, index=frame.index, dtype=bool)]
            # The fastest cell per GPU count, with its interval.
            points = points.loc[points.groupby("gpus", sort=True)["images_per_sec"].idxmax()]
            points = points.sort_values("gpus")
            tag = "demand" if style == "-" else "supply"
            axis.errorbar(
                points["gpus"].tolist(),
                points["images_per_sec"].tolist(),
                yerr=_yerr(points["images_per_sec"], points["ips_low"], points["ips_high"]),
                linestyle=style,
                marker="o",
                color=next(colors),
                label=f"{tag}: {label}",
                capsize=3,
            )
    gpus = sorted(cells["gpus"].unique())
    axis.set_xticks(gpus)
    axis.set_xlabel("GPUs")
    axis.set_ylabel("images/s (global)")
    rates = pd.concat([demand["images_per_sec"], supply["images_per_sec"]])
    if rates.max() > LOG_SCALE_RATIO * rates.min():  # e.g. a CPU "GPU" against a fast input
        axis.set_yscale("log")
        axis.set_ylabel("images/s (global, log scale)")
    else:
        axis.set_ylim(bottom=0)
    axis.legend(loc="best")
    return Figure(name, title, caption, png_bytes(figure))


def utilization_figure(
    cells: pd.DataFrame, runs: pd.DataFrame, results: Mapping[str, dict[str, Any]]
) -> Figure:
    title, name = "GPU utilization over time", "gpu_utilization.png"
    caption = (
        "NVML utilization of each GPU over the first repeat of up to "
        f"{MAX_UTILIZATION_CELLS} training cells (the most GPUs first, one per model "
        "and format); the shaded span is the measured window, the rest is start-up "
        "and warm-up."
    )
    chosen = _utilization_runs(runs, results)
    if not chosen:
        training = runs[(runs["status"] == "ok") & runs["mode"].isin(analysis.TRAINING_MODES)]
        reasons = sorted(
            {
                (results[path].get("telemetry") or {}).get("gpu_unavailable") or "no GPU samples"
                for path in training["path"]
            }
        )
        why = f" ({'; '.join(reasons)})" if reasons else ""
        return Figure(name, title, caption, note=f"no finished training run has GPU samples{why}")
    figure, axes = plt.subplots(
        len(chosen), 1, figsize=(7.5, 1.9 * len(chosen) + 0.4), sharex=False, squeeze=False
    )
    for axis, (cell_name, result) in zip(axes[:, 0], chosen, strict=True):
        series, window = run_series(result)
        for color, device in zip(color_cycle(), series, strict=False):
            axis.plot(
                device.t_s, device.utilization_pct, color=color, linewidth=1.2, label=device.label
            )
        if window:
            axis.axvspan(window[0], window[1], color="#2ca02c", alpha=0.08)
        axis.set_ylim(0, 105)
        axis.set_ylabel("util %")
        if len(series) <= MAX_LEGEND_DEVICES:
            axis.set_title(cell_name, loc="left", fontsize=9)
            axis.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(series))
        else:  # a legend of 16 GPUs would hide the plot: one line each, unnamed
            axis.set_title(
                f"{cell_name} ({len(series)} GPUs, one line each)", loc="left", fontsize=9
            )
    axes[-1, 0].set_xlabel("seconds since sampling started")
    return Figure(name, title, caption, png_bytes(figure))


def _utilization_runs(
    runs: pd.DataFrame, results: Mapping[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """Training runs with GPU samples: most GPUs first, one per (source, model, format)."""
    candidates = runs[(runs["status"] == "ok") & runs["mode"].isin(analysis.TRAINING_MODES)]
    sampled = candidates["path"].map(
        lambda path: bool(((results[path].get("telemetry") or {}).get("gpu") or {}).get("devices"))
    )
    candidates = candidates.loc[sampled.astype(bool)]
    candidates = candidates.sort_values(["gpus", "repeat"], ascending=[False, True], kind="stable")
    chosen, seen = [], set()
    for _, run in candidates.iterrows():
        key = (run["source"], run["model"], run["data_format"], run["encoding"])
        if key in seen:
            continue
        seen.add(key)
        name = describe_cell(results[run["path"]].get("cell") or {})
        if runs["source"].nunique() > 1:
            name = f"{run['source']}: {name}"
        chosen.append((name, results[run["path"]]))
        if len(chosen) == MAX_UTILIZATION_CELLS:
            break
    return sorted(chosen, key=lambda item: item[0])


def _series(cells: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Cells grouped into lines: (model, label) -> points sorted by GPU count."""
    plotted = cells[cells["mode"] != "pipeline"]
    varying = [key for key in DISPLAY_KEYS if key not in ("model", "gpus", "nodes", "engine")]
    result: dict[tuple[str, str], pd.DataFrame] = {}
    for _, cell in plotted.iterrows():
        key = (cell["model"], _label(cell, varying, plotted))
        result[key] = (
            pd.concat([result[key], cell.to_frame().T]) if key in result else cell.to_frame().T
        )
    return {key: points.sort_values("gpus") for key, points in sorted(result.items())}


def _of_model(
    series: Mapping[tuple[str, str], pd.DataFrame], model: str
) -> Iterable[tuple[tuple[str, str], pd.DataFrame]]:
    return [(key, points) for key, points in series.items() if key[0] == model]


def _label(
    row: pd.Series, keys: Sequence[str], frame: pd.DataFrame, *, always: Sequence[str] = ()
) -> str:
    """The values of `keys` that vary within `frame` (and of `always`), joined: a legend text.

    With nothing to tell apart, the row's mode, input and pipeline name it.
    """
    parts = [
        str(row[key])
        for key in keys
        if key in frame and (key in always or frame[key].nunique() > 1) and row[key] != NA_KEY
    ]
    if not parts:
        parts = [
            str(row[key])
            for key in ("mode", "input", "pipeline")
            if key in row and key in keys and row[key] != NA_KEY
        ]
    return " ".join(parts)


def panels(count: int) -> tuple[MplFigure, list[Any]]:
    figure, axes = plt.subplots(1, count, figsize=(3.9 * count + 0.6, 3.6), squeeze=False)
    return figure, list(axes[0])


def _gpu_axis(axis: Any, frame: pd.DataFrame, model: str, ylabel: str) -> None:
    axis.set_xticks(sorted(frame["gpus"].unique()))
    axis.set_xlabel("GPUs")
    axis.set_ylabel(ylabel)
    axis.set_title(model, loc="left")
    axis.set_ylim(bottom=0)
    axis.legend(loc="best")


def color_cycle() -> Iterable[str]:
    while True:
        yield from COLORS


def png_bytes(figure: MplFigure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()
