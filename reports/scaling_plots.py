"""Figures of images/s against GPU count: scaling (with ideal linear lines), scaling efficiency,
and supply (the input alone) against demand (the model on random data).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from reports import analysis
from reports.figure import Figure, color_cycle, panels, png_bytes
from reports.plot_series import cell_series, error_bars, gpu_axis, legend_label, series_of_model

LOG_SCALE_RATIO = 20.0  # supply and demand this far apart: a log axis shows both


def scaling_figure(cells: pd.DataFrame) -> Figure:
    title, name = "Images/s against GPUs", "scaling.png"
    caption = (
        "Mean images/s (global) per GPU count with 95% intervals (error bars), one panel "
        "per model; the dashed line of the same colour is ideal linear scaling from the "
        "1-GPU cell."
    )
    series = cell_series(cells)
    if not series:
        return Figure(name, title, caption, note="no synthetic, train or fit cell finished")
    if all(points["gpus"].nunique() < 2 for points in series.values()):
        return Figure(
            name, title, caption, note="no series of cells ran at more than one GPU count"
        )
    models = sorted({key[0] for key in series})
    figure, axes = panels(len(models))
    for axis, model in zip(axes, models, strict=True):
        for color, (key, points) in zip(
            color_cycle(), series_of_model(series, model), strict=False
        ):
            gpus, ips = points["gpus"].tolist(), points["images_per_sec"].tolist()
            axis.errorbar(
                gpus,
                ips,
                yerr=error_bars(points["images_per_sec"], points["ips_low"], points["ips_high"]),
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
        gpu_axis(axis, cells, model, "images/s (global)")
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
    series = cell_series(frame)
    models = sorted({key[0] for key in series})
    figure, axes = panels(len(models))
    for axis, model in zip(axes, models, strict=True):
        for color, (key, points) in zip(
            color_cycle(), series_of_model(series, model), strict=False
        ):
            axis.errorbar(
                points["gpus"].tolist(),
                (points["efficiency"] * 100).tolist(),
                yerr=error_bars(
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
        gpu_axis(axis, frame, model, "efficiency (%)")
    return Figure(name, title, caption, png_bytes(figure))


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
        names = [legend_label(row, varying, frame, always=always) for _, row in frame.iterrows()]
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
                yerr=error_bars(points["images_per_sec"], points["ips_low"], points["ips_high"]),
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
