"""The derived figures, as DataFrames: scaling, TFRecord speedup, input-bound share, pay-off.

Every comparison matches cells that differ ONLY in the settings it is about (e.g. speedup:
data format, encoding and conversion), so a number is never a comparison of two unrelated
runs. No match leaves the figure missing (NaN, shown as n/a), never 0.

Formulas (images/s is the median over repeats):
    scaling efficiency  = images/s at N GPUs / (N x images/s at 1 GPU)
    TFRecord speedup    = images/s tfrecord / images/s raw - 1
    input-bound share   = 1 - images/s train / images/s synthetic
    pipeline headroom   = images/s pipeline / images/s synthetic
    epoch time          = dataset images / images/s
    pay-off epochs      = conversion wall time / (epoch time raw - epoch time tfrecord)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from reports.frame import CELL_KEYS

TRAINING_MODES = ("train", "fit")
SPEEDUP_MODES = ("train", "fit", "pipeline")


def find_match(
    cells: pd.DataFrame,
    cell: Mapping[str, Any],
    *,
    differ: Iterable[str],
    fixed: Mapping[str, Any],
    prefer: Iterable[str] = (),
) -> pd.Series | None:
    """The cell equal to `cell` on every key but `differ`, with `fixed` values, or None.

    Among several candidates, those also equal on `prefer` come first, then table order.
    """
    ignored = set(differ) | set(fixed)
    mask = np.ones(len(cells), dtype=bool)
    for key in CELL_KEYS:
        if key not in ignored:
            mask &= (cells[key] == cell[key]).to_numpy()
    for key, value in fixed.items():
        mask &= (cells[key] == value).to_numpy()
    candidates = cells[mask]
    if candidates.empty:
        return None
    for key in prefer:
        same = candidates[candidates[key] == cell[key]]
        if not same.empty:
            candidates = same
    return candidates.iloc[0]


def scaling_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """Every cell that has a 1-GPU baseline: scaling (x) and efficiency against it."""
    rows = []
    for _, cell in cells.iterrows():
        base = find_match(
            cells, cell, differ=("gpus", "nodes", "engine"), fixed={"gpus": 1}, prefer=("engine",)
        )
        if base is None:
            continue
        rows.append(
            {
                **cell.to_dict(),
                "baseline_ips": base["images_per_sec"],
                "scaling": cell["images_per_sec"] / base["images_per_sec"],
                "efficiency": cell["images_per_sec"] / (cell["gpus"] * base["images_per_sec"]),
            }
        )
    return pd.DataFrame(rows, columns=[*cells.columns, "baseline_ips", "scaling", "efficiency"])


def speedup_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """Each tfrecord cell against the raw cell that differs only in data format."""
    rows = []
    for _, cell in cells[cells["data_format"] == "tfrecord"].iterrows():
        if cell["mode"] not in SPEEDUP_MODES:
            continue
        raw = find_match(
            cells,
            cell,
            differ=("data_format", "encoding", "conversion"),
            fixed={"data_format": "raw"},
        )
        if raw is None:
            continue
        rows.append(
            {
                **cell.to_dict(),
                "raw_ips": raw["images_per_sec"],
                "tfrecord_ips": cell["images_per_sec"],
                "raw_images": raw["dataset_images"],
                "speedup": cell["images_per_sec"] / raw["images_per_sec"] - 1.0,
            }
        )
    return pd.DataFrame(
        rows, columns=[*cells.columns, "raw_ips", "tfrecord_ips", "raw_images", "speedup"]
    )


def input_bound_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """Each training cell against what the GPUs consume and what its input can supply."""
    rows = []
    for _, cell in cells[cells["mode"].isin(TRAINING_MODES)].iterrows():
        synthetic = find_match(
            cells,
            cell,
            differ=("mode", "data_format", "encoding", "conversion", "pipeline", "page_cache"),
            fixed={"mode": "synthetic"},
        )
        supply = find_match(
            cells,
            cell,
            differ=("mode", "model", "precision", "xla"),
            fixed={"mode": "pipeline"},
            prefer=("model", "precision", "xla"),
        )
        demand = np.nan if synthetic is None else synthetic["images_per_sec"]
        supplied = np.nan if supply is None else supply["images_per_sec"]
        rows.append(
            {
                **cell.to_dict(),
                "synthetic_ips": demand,
                "pipeline_ips": supplied,
                "input_bound_share": 1.0 - cell["images_per_sec"] / demand,
                "headroom": supplied / demand,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[*cells.columns, "synthetic_ips", "pipeline_ips", "input_bound_share", "headroom"],
    )


def payoff_frame(
    cells: pd.DataFrame, conversions: Mapping[tuple[str, str], dict[str, Any]]
) -> pd.DataFrame:
    """Epochs after which each conversion pays for itself, per training cell pair.

    `conversions` maps (source label, conversion name) to the conversion record.
    `epochs` is +inf where the tfrecord cell is not faster: the conversion never pays off;
    NaN where the conversion's wall time is not recorded.
    """
    speedups = speedup_frame(cells)
    rows = []
    for _, pair in speedups[speedups["mode"].isin(TRAINING_MODES)].iterrows():
        record = _conversion_for(pair, conversions)
        if record is None:
            continue
        images_tfr = _first_number(pair["dataset_images"], record.get("images"))
        images_raw = _first_number(pair["raw_images"], images_tfr)
        epoch_raw = images_raw / pair["raw_ips"]
        epoch_tfr = images_tfr / pair["tfrecord_ips"]
        saved = epoch_raw - epoch_tfr
        wall = _first_number(record.get("wall_seconds"))
        if not wall > 0:  # not recorded (e.g. a resumed conversion): unknown, not free
            wall = np.nan
        rows.append(
            {
                **pair.to_dict(),
                "conversion_name": record["name"],
                "conversion_s": wall,
                "epoch_raw_s": epoch_raw,
                "epoch_tfrecord_s": epoch_tfr,
                "saved_per_epoch_s": saved,
                "epochs": (wall / saved) if saved > 0 else np.inf,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            *speedups.columns,
            "conversion_name",
            "conversion_s",
            "epoch_raw_s",
            "epoch_tfrecord_s",
            "saved_per_epoch_s",
            "epochs",
        ],
    )


def _conversion_for(
    pair: pd.Series, conversions: Mapping[tuple[str, str], dict[str, Any]]
) -> dict[str, Any] | None:
    """By the cell's conversion name, else by its records folder."""
    record = conversions.get((pair["source"], pair["conversion"]))
    if record is not None:
        return record
    for (source, _), candidate in conversions.items():
        if (
            source == pair["source"]
            and pair.get("records_dir")
            and candidate.get("records_dir") == pair["records_dir"]
        ):
            return candidate
    return None


def _first_number(*values: Any) -> float:
    for value in values:
        if isinstance(value, int | float) and not pd.isna(value):
            return float(value)
    return np.nan
