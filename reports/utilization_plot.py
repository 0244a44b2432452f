"""The GPU-utilization figure: NVML samples over time for a few training runs, the measured
window shaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from reports import analysis
from reports.figure import Figure, color_cycle, png_bytes
from reports.format import describe_cell
from reports.telemetry import run_series

MAX_UTILIZATION_CELLS = 4
MAX_LEGEND_DEVICES = 4


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
