"""Throughput figures' shared parts: cells grouped into lines per model, legend texts from the
settings that vary, error-bar lengths from intervals, and the GPU-count axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from reports.format import DISPLAY_KEYS
from reports.frame import NA_KEY


def error_bars(values: pd.Series, low: pd.Series, high: pd.Series) -> list[list[float]]:
    """matplotlib's (below, above) error lengths; none (0) where there is no finite interval."""
    below, above = [], []
    for value, lo, hi in zip(values.tolist(), low.tolist(), high.tolist(), strict=True):
        finite = all(pd.notna(x) and abs(float(x)) != float("inf") for x in (lo, hi))
        below.append(float(value) - float(lo) if finite else 0.0)
        above.append(float(hi) - float(value) if finite else 0.0)
    return [below, above]


def cell_series(cells: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Cells grouped into lines: (model, label) -> points sorted by GPU count."""
    plotted = cells[cells["mode"] != "pipeline"]
    varying = [key for key in DISPLAY_KEYS if key not in ("model", "gpus", "nodes", "engine")]
    result: dict[tuple[str, str], pd.DataFrame] = {}
    for _, cell in plotted.iterrows():
        key = (cell["model"], legend_label(cell, varying, plotted))
        result[key] = (
            pd.concat([result[key], cell.to_frame().T]) if key in result else cell.to_frame().T
        )
    return {key: points.sort_values("gpus") for key, points in sorted(result.items())}


def series_of_model(
    series: Mapping[tuple[str, str], pd.DataFrame], model: str
) -> Iterable[tuple[tuple[str, str], pd.DataFrame]]:
    return [(key, points) for key, points in series.items() if key[0] == model]


def legend_label(
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


def gpu_axis(axis: Any, frame: pd.DataFrame, model: str, ylabel: str) -> None:
    axis.set_xticks(sorted(frame["gpus"].unique()))
    axis.set_xlabel("GPUs")
    axis.set_ylabel(ylabel)
    axis.set_title(model, loc="left")
    axis.set_ylim(bottom=0)
    axis.legend(loc="best")
