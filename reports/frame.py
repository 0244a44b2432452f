"""Result files as pandas tables: one row per run, then one row per cell (repeats combined).

A cell is identified by its settings (`CELL_KEYS`), not by its cell_id, so that ad-hoc runs
without a sweep group too. Settings that do not apply (a synthetic cell's data format) are
stored as `NA_KEY`, which groups and matches like any other value and never looks like 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from reports import stats
from reports.load import ResultsSet

NA_KEY = "—"
CELL_KEYS = (
    "source",
    "model",
    "mode",
    "data_format",
    "encoding",
    "conversion",
    "pipeline",
    "page_cache",
    "engine",
    "gpus",
    "nodes",
    "device",
    "batch_per_gpu",
    "precision",
    "image_size",
    "xla",
    "input_workers",
)
# Display order: what was measured first, the GPU count last, so that a table reads as series.
SORT_KEYS = (
    "source_rank",  # results sets in the order given on the command line
    "model",
    "mode",
    "data_format",
    "encoding",
    "conversion",
    "pipeline",
    "page_cache",
    "precision",
    "batch_per_gpu",
    "image_size",
    "xla",
    "input_workers",
    "device",
    "gpus",
    "nodes",
    "engine",
)
STRING_KEYS = (
    "source",
    "model",
    "mode",
    "data_format",
    "encoding",
    "conversion",
    "pipeline",
    "page_cache",
    "engine",
    "device",
    "precision",
)
MODE_ORDER = {"synthetic": 0, "pipeline": 1, "train": 2, "fit": 3}


def runs_frame(sets: Iterable[ResultsSet]) -> pd.DataFrame:
    """One row per result file: the cell's settings, status and figures."""
    rows = [
        _run_row(results.label, run.path.as_posix(), run.result) | {"source_rank": rank}
        for rank, results in enumerate(sets)
        for run in results.runs
    ]
    frame = pd.DataFrame(rows)
    return frame.sort_values([*SORT_KEYS, "repeat", "path"], key=_sort_key, ignore_index=True)


def _run_row(label: str, path: str, result: dict[str, Any]) -> dict[str, Any]:
    cell = result.get("cell") or {}
    throughput = result.get("throughput") or {}
    details = result.get("details") or {}
    dataset = result.get("dataset") or {}
    gpus = _int(cell.get("gpus"), 1)
    images_per_sec = _number(throughput.get("images_per_sec"))
    if images_per_sec is None:  # pipeline-mode runs may report only their probe figures
        images_per_sec = _number(details.get("images_per_sec"))
    per_gpu = _number(throughput.get("images_per_sec_per_gpu"))
    if per_gpu is None and images_per_sec is not None:
        per_gpu = images_per_sec / gpus
    conversion = cell.get("conversion")
    row: dict[str, Any] = {
        "source": label,
        "model": cell.get("model"),
        "mode": cell.get("mode"),
        "data_format": cell.get("data_format"),
        "encoding": cell.get("encoding"),
        "conversion": conversion,
        "pipeline": cell.get("pipeline"),
        # "warm" | "cold"; NA_KEY in synthetic mode and in results from before the setting
        "page_cache": cell.get("page_cache"),
        "engine": cell.get("engine"),
        "gpus": gpus,
        "nodes": _int(cell.get("nodes"), 1),
        "device": cell.get("device"),
        "batch_per_gpu": _int(cell.get("batch_per_gpu"), 0),
        "precision": cell.get("precision"),
        "image_size": _int(cell.get("image_size"), 0),
        "xla": bool(cell.get("xla")),
        # Input-service workers that fed the cell (0: the pipeline ran in the job).
        "input_workers": _int(cell.get("input_workers"), 0),
    }
    for key in STRING_KEYS:
        row[key] = NA_KEY if row[key] is None else str(row[key])
    row.update(
        path=path,
        cell_id=result.get("cell_id"),
        repeat=_int(result.get("repeat"), 0),
        status=result["status"],
        started_at=result.get("started_at"),
        finished_at=result.get("finished_at"),
        images_per_sec=images_per_sec if result["status"] == "ok" else None,
        images_per_sec_per_gpu=per_gpu if result["status"] == "ok" else None,
        step_p50_s=_number(throughput.get("step_p50_s")),
        dataset_images=_number(dataset.get("images")),
        resident_at_start=_number(
            ((dataset.get("page_cache") or {}).get("after") or {}).get("fraction")
        ),
        step_s=_synchronous_steps(result.get("timing") or {}),
        window_images_per_sec=_numbers(throughput.get("window_images_per_sec")),
        records_dir=dataset.get("records_dir") or (result.get("config") or {}).get("records_dir"),
    )
    return row


def _synchronous_steps(timing: dict[str, Any]) -> list[float]:
    """Per measured step, the slowest rank's time (the ranks wait for each other)."""
    per_rank = [
        [float(value) for value in rank if _number(value) is not None]
        for rank in timing.get("step_s") or []
        if isinstance(rank, list)
    ]
    per_rank = [rank for rank in per_rank if rank]
    if not per_rank:
        return []
    steps = min(len(rank) for rank in per_rank)
    return [max(rank[index] for rank in per_rank) for index in range(steps)]


def _numbers(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(value) for value in values if _number(value) is not None]


CELL_FIGURES = (
    "repeats",
    "images_per_sec",
    "ips_low",
    "ips_high",
    "ips_se",
    "ips_df",
    "ips_method",
    "ips_samples",
    "cv_steps",
    "cv_repeats",
    "noisy",
    "ips_min",
    "ips_max",
    "images_per_sec_per_gpu",
    "step_p50_s",
    "dataset_images",
    "records_dir",
    "source_rank",
)


def cells_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell with a figure: mean images/s of its ok repeats with its 95% interval
    (reports.stats), noise flags, min and max."""
    ok = runs[(runs["status"] == "ok") & runs["images_per_sec"].notna()]
    if ok.empty:
        return pd.DataFrame(columns=[*CELL_KEYS, "input", *CELL_FIGURES])
    grouped = ok.groupby(list(CELL_KEYS), sort=False, dropna=False)
    cells = grouped.agg(
        repeats=("images_per_sec", "size"),
        images_per_sec=("images_per_sec", "mean"),
        ips_min=("images_per_sec", "min"),
        ips_max=("images_per_sec", "max"),
        images_per_sec_per_gpu=("images_per_sec_per_gpu", "mean"),
        step_p50_s=("step_p50_s", "median"),
        dataset_images=("dataset_images", "max"),
        records_dir=("records_dir", "first"),
        source_rank=("source_rank", "first"),
    ).reset_index()
    estimates = [
        stats.cell_estimate(
            group["images_per_sec"].tolist(),
            group["step_s"].tolist(),
            group["window_images_per_sec"].tolist(),
        )
        for _, group in grouped
    ]
    cells["images_per_sec"] = [estimate.value for estimate in estimates]
    # A rate is never below 0: a symmetric interval that reaches past it is shown from 0.
    cells["ips_low"] = [max(estimate.low, 0.0) for estimate in estimates]
    cells["ips_high"] = [estimate.high for estimate in estimates]
    cells["ips_se"] = [estimate.se for estimate in estimates]
    cells["ips_df"] = [estimate.df for estimate in estimates]
    cells["ips_method"] = [estimate.method for estimate in estimates]
    cells["ips_samples"] = [estimate.samples for estimate in estimates]
    cells["cv_steps"] = [estimate.cv_steps for estimate in estimates]
    cells["cv_repeats"] = [estimate.cv_repeats for estimate in estimates]
    cells["noisy"] = [estimate.noisy for estimate in estimates]
    cells = cells[[*CELL_KEYS, *CELL_FIGURES]]
    conversions = set(cells["conversion"]) - {NA_KEY}
    cells.insert(
        len(CELL_KEYS),
        "input",
        [input_text(cell, with_conversion=len(conversions) > 1) for _, cell in cells.iterrows()],
    )
    return cells.sort_values(list(SORT_KEYS), key=_sort_key, ignore_index=True)


def cell_estimate(cell: pd.Series) -> stats.Estimate:
    """The cell's images/s as a `stats.Estimate`, from its row in `cells_frame`."""
    se, df = cell.get("ips_se"), cell.get("ips_df")
    missing = se is None or df is None or pd.isna(se) or pd.isna(df)
    return stats.Estimate(
        float(cell["images_per_sec"]),
        None if missing else float(se),
        None if missing else float(df),
        str(cell.get("ips_method", "")),
        tuple(cell.get("ips_samples") or ()),
    )


def input_text(cell: pd.Series, *, with_conversion: bool) -> str:
    """What fed the model: 'raw', 'tfrecord/png', 'tfrecord/jpeg (jpeg-256)', or NA_KEY."""
    data_format = cell["data_format"]
    if data_format == NA_KEY:
        return NA_KEY
    text = data_format
    encoding = cell["encoding"]
    if encoding != NA_KEY and (data_format == "tfrecord" or encoding != "png"):
        text = f"{text}/{encoding}"
    if with_conversion and cell["conversion"] != NA_KEY:
        text = f"{text} ({cell['conversion']})"
    return text


def _sort_key(column: pd.Series) -> pd.Series:
    """Modes in pipeline order, the rest as their natural values."""
    if column.name == "mode":
        return column.map(lambda mode: MODE_ORDER.get(mode, len(MODE_ORDER)))
    return column


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
