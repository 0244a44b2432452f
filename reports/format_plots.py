"""Figures of raw files against TFRecords in training: the speedup bars and the poster's
side-by-side images/s.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from reports import analysis
from reports.figure import COLORS, Figure, color_cycle, panels, png_bytes
from reports.plot_series import error_bars, legend_label


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
            legend_label(
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
        errors = error_bars(
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
        group=[legend_label(row, keys, training) for _, row in training.iterrows()]
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
                    yerr=error_bars(rows[column], rows[low], rows[high]),
                    capsize=3,
                    label=label,
                )
        axis.set_xticks(range(len(gpus)), [f"{n} GPU{'s' if n != 1 else ''}" for n in gpus])
        axis.set_ylabel("images/s (global)")
        axis.set_title(model, loc="left")
        axis.legend(loc="best")
    return Figure(name, title, caption, png_bytes(figure))
