"""The derived figures, as DataFrames: scaling, TFRecord speedup, input-bound share, pay-off.

Every comparison matches cells that differ ONLY in the settings it is about (e.g. speedup:
data format, encoding and conversion), so a number is never a comparison of two unrelated
runs. No match leaves the figure missing (NaN, shown as n/a), never 0.

Formulas (images/s is the mean over repeats; reports.stats gives every figure a 95% interval,
columns `<figure>_low` and `<figure>_high`, and a verdict, `<figure>_verdict`, that names a
difference only where it is significant):
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

from reports import stats
from reports.frame import CELL_KEYS, cell_estimate

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
        linear = stats.scaled(cell_estimate(base), float(cell["gpus"]))
        efficiency = stats.compare(cell_estimate(cell), linear)
        rows.append(
            {
                **cell.to_dict(),
                "baseline_ips": base["images_per_sec"],
                "scaling": cell["images_per_sec"] / base["images_per_sec"],
                "efficiency": efficiency.ratio.value,
                **_interval_columns("efficiency", efficiency),
            }
        )
    return pd.DataFrame(
        rows, columns=[*cells.columns, "baseline_ips", "scaling", *_columns("efficiency")]
    )


def _columns(name: str) -> list[str]:
    return [name, f"{name}_low", f"{name}_high", f"{name}_verdict", f"{name}_significant"]


def _interval_columns(
    name: str, comparison: stats.Comparison, interval: stats.Interval | None = None
) -> dict[str, Any]:
    """`name`_low/_high from `interval` (default: the comparison's ratio), and its verdict."""
    shown = comparison.ratio if interval is None else interval
    return {
        f"{name}_low": shown.low,
        f"{name}_high": shown.high,
        f"{name}_verdict": comparison.verdict,
        f"{name}_significant": comparison.significant,
    }


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
        comparison = stats.compare(cell_estimate(cell), cell_estimate(raw))
        speedup = comparison.ratio.shifted(-1.0)
        rows.append(
            {
                **cell.to_dict(),
                "raw_ips": raw["images_per_sec"],
                "raw_ips_low": raw["ips_low"],
                "raw_ips_high": raw["ips_high"],
                "tfrecord_ips": cell["images_per_sec"],
                "raw_images": raw["dataset_images"],
                "speedup": speedup.value,
                **_interval_columns("speedup", comparison, speedup),
                "speedup_p": comparison.p_value,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            *cells.columns,
            "raw_ips",
            "raw_ips_low",
            "raw_ips_high",
            "tfrecord_ips",
            "raw_images",
            *_columns("speedup"),
            "speedup_p",
        ],
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
        share = _missing_comparison()
        share_interval = stats.UNKNOWN
        headroom = _missing_comparison()
        if synthetic is not None:
            # Input-bound means training is significantly slower than the model alone.
            share = stats.compare(cell_estimate(cell), cell_estimate(synthetic))
            share_interval = share.ratio.shifted(1.0, -1.0)
            if supply is not None:
                headroom = stats.compare(cell_estimate(supply), cell_estimate(synthetic))
        rows.append(
            {
                **cell.to_dict(),
                "synthetic_ips": demand,
                "pipeline_ips": supplied,
                "input_bound_share": 1.0 - cell["images_per_sec"] / demand,
                **_interval_columns("input_bound_share", share, share_interval),
                "headroom": supplied / demand,
                **_interval_columns("headroom", headroom),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            *cells.columns,
            "synthetic_ips",
            "pipeline_ips",
            *_columns("input_bound_share"),
            *_columns("headroom"),
        ],
    )


def _missing_comparison() -> stats.Comparison:
    return stats.Comparison(stats.UNKNOWN, None, False, "n/a")


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
        low, high = _payoff_interval(wall, epoch_raw, pair["speedup_low"], pair["speedup_high"])
        rows.append(
            {
                **pair.to_dict(),
                "conversion_name": record["name"],
                "conversion_s": wall,
                "epoch_raw_s": epoch_raw,
                "epoch_tfrecord_s": epoch_tfr,
                "saved_per_epoch_s": saved,
                "epochs": (wall / saved) if saved > 0 else np.inf,
                "epochs_low": low,
                "epochs_high": high,
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
            "epochs_low",
            "epochs_high",
        ],
    )


def _payoff_interval(
    wall: float, epoch_raw: float, speedup_low: float, speedup_high: float
) -> tuple[float, float]:
    """Pay-off epochs over the speedup's interval, the raw epoch time held at its value:
    saved per epoch = epoch raw x s / (1 + s) rises with the speedup s, so the fewest epochs
    come from the highest speedup. A speedup interval reaching 0 never pays off at its end."""

    def epochs(speedup: float) -> float:
        if pd.isna(speedup) or pd.isna(wall):
            return np.nan
        if speedup <= 0:
            return np.inf
        if np.isinf(speedup):
            return 0.0
        return wall / (epoch_raw * speedup / (1.0 + speedup))

    return epochs(speedup_high), epochs(speedup_low)


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
