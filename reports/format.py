"""Formatting shared by the tables: numbers as text, which columns name a cell, `Table`.

A `Table` carries its rows already formatted, so the markdown and the HTML show the same
numbers. A table with nothing to show keeps its `missing` reason, which the report prints in
its place. Missing numbers are `n/a`, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.frame import CELL_KEYS, NA_KEY

NA = "n/a"
# The columns a table may show to say which cell a row is: the cell's keys, with "input"
# for the format, encoding and conversion in one.
_INPUT_PARTS = ("data_format", "encoding", "conversion")
DISPLAY_KEYS = tuple(dict.fromkeys("input" if key in _INPUT_PARTS else key for key in CELL_KEYS))

KEY_HEADERS = {
    "source": "Source",
    "model": "Model",
    "mode": "Mode",
    "input": "Input",
    "data_format": "Format",
    "encoding": "Encoding",
    "conversion": "Conversion",
    "pipeline": "Pipeline",
    "page_cache": "Page cache",
    "engine": "Engine",
    "gpus": "GPUs",
    "nodes": "Nodes",
    "device": "Device",
    "batch_per_gpu": "Batch/GPU",
    "precision": "Precision",
    "image_size": "Image px",
    "xla": "XLA",
    "input_workers": "Input workers",
}


@dataclass(frozen=True)
class Table:
    """One table, formatted; `missing` (with no rows) says why it is empty."""

    key: str
    title: str
    intro: str
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    numeric: tuple[bool, ...] = ()
    notes: tuple[str, ...] = ()
    missing: str | None = None


def fmt_rate(value: Any) -> str:
    return NA if is_missing(value) else f"{value:,.1f}"


def fmt_pct(value: Any, *, signed: bool = False) -> str:
    if is_missing(value):
        return NA
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def fmt_number(value: Any, digits: int = 1) -> str:
    return NA if is_missing(value) else f"{value:,.{digits}f}"


def fmt_significant(value: Any) -> str:
    """One decimal from 1 on; below it two significant digits, so that a step of 20 us reads
    0.020 ms, not 0.0 (a pipeline's steps can be that short)."""
    if is_missing(value):
        return NA
    if value == 0 or abs(value) >= 1:
        return f"{value:,.1f}"
    return f"{value:.{1 - math.floor(math.log10(abs(value)))}f}"


def fmt_seconds(value: Any) -> str:
    """Seconds with enough digits to tell short epochs apart."""
    if is_missing(value):
        return NA
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"


def identity_keys(
    frame: pd.DataFrame, *, always: Sequence[str] = ("model",), skip: Sequence[str] = ()
) -> list[str]:
    """The cell settings worth a column: those that vary across `frame`, plus `always`.

    The engine only when it is not implied by the GPU count (single for 1, horovod for more).
    """
    keys = []
    for key in DISPLAY_KEYS:
        if key in skip or key not in frame:
            continue
        varies = len(set(frame[key]) - {NA_KEY}) > 1
        if key == "engine" and varies:
            varies = bool((frame.groupby("gpus")["engine"].nunique() > 1).any())
        if key in always or varies:
            keys.append(key)
    return keys


def common_settings(cells: pd.DataFrame) -> str:
    """The settings every cell shares, as one line ("" when nothing is shared)."""
    phrases = {
        "nodes": lambda v: f"{v} node{'s' if v != 1 else ''}",
        "device": lambda v: f"on {v.upper()}",
        "batch_per_gpu": lambda v: f"batch {v} per GPU",
        "precision": str,
        "image_size": lambda v: f"{v} px images",
        "xla": lambda v: f"XLA {'on' if v else 'off'}",
        "pipeline": lambda v: f"{v} pipeline",
        "page_cache": lambda v: f"page cache {v}",
    }
    parts = []
    for key, phrase in phrases.items():
        values = [] if cells.empty else sorted(set(cells[key]) - {NA_KEY})
        if len(values) == 1:
            parts.append(phrase(values[0]))
    return ", ".join(parts)


def describe_cell(cell: Mapping[str, Any]) -> str:
    """A one-line name for a cell: 'densenet121 train tfrecord/png tuned, 2 GPUs'."""
    data = cell.get("data_format")
    if data == "tfrecord" and cell.get("encoding"):
        data = f"tfrecord/{cell['encoding']}"
    parts = [cell.get("model"), cell.get("mode"), data, cell.get("pipeline")]
    gpus = cell.get("gpus")
    name = " ".join(str(part) for part in parts if part)
    return f"{name}, {gpus} GPU{'s' if gpus != 1 else ''}" if gpus is not None else name


def identity(cell: pd.Series, keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(key_text(key, cell[key]) for key in keys)


def key_text(key: str, value: Any) -> str:
    if key == "xla":
        return "on" if value else "off"
    if key == "image_size":
        return f"{value}"
    return str(value)


def headers_for(keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(KEY_HEADERS[key] for key in keys)


def numeric_flags(keys: Sequence[str], figures: int) -> tuple[bool, ...]:
    return (
        tuple(key in ("gpus", "nodes", "batch_per_gpu", "image_size") for key in keys)
        + (True,) * figures
    )


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fraction(percent: float | None) -> float | None:
    return None if percent is None else percent / 100.0


def fmt_ratio(value: Any) -> str:
    return NA if is_missing(value) else f"{value:.2f}x"


def fmt_megabytes(value: Any) -> str:
    return NA if not isinstance(value, int | float) else f"{value / 1e6:,.1f}"


def fmt_yes_no(value: Any) -> str:
    return NA if value is None else ("yes" if value else "no")


def fmt_epochs(value: float) -> str:
    if is_missing(value):
        return NA
    return "never" if math.isinf(value) else f"{value:,.1f}"
