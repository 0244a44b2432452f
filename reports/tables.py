"""The report's result tables: derived figures formatted, with what each table means.

Each function returns a `reports.format.Table`; one with nothing to show says why (a sweep
with only raw cells has no speedup table, and the table's `missing` reason says so).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from reports import analysis, stats
from reports.format import (
    NA,
    Table,
    fmt_epochs,
    fmt_pct,
    fmt_rate,
    fmt_ratio,
    fmt_significant,
    headers_for,
    identity,
    identity_keys,
    is_missing,
    numeric_flags,
)
from reports.frame import CELL_KEYS, NA_KEY, cell_estimate


def throughput_table(cells: pd.DataFrame) -> Table:
    intro = (
        "Images per second of every cell that finished: the mean over its repeats with "
        "its 95% confidence interval (a t interval over the repeats from 3 repeats on; "
        "below that, batch means over the measured steps, which are autocorrelated, or "
        "the job's own measurement windows), and the spread as min-max over the repeats "
        "(one repeat: no spread). Global = all GPUs together. Noise: the coefficient of "
        f"variation of the measured steps (noisy above {stats.CV_STEPS_NOISY:.0%}) and of "
        f"the repeats' rates (noisy above {stats.CV_REPEATS_NOISY:.0%})."
    )
    if cells.empty:
        return Table(
            "throughput",
            "Throughput per cell",
            intro,
            missing="no run finished with a throughput figure",
        )
    keys = identity_keys(cells, always=("model", "mode", "gpus"))
    rows = []
    for _, cell in cells.iterrows():
        spread = (
            NA + " (1 repeat)"
            if cell["repeats"] < 2
            else f"{cell['ips_min']:,.1f}-{cell['ips_max']:,.1f}"
        )
        rows.append(
            (
                *identity(cell, keys),
                str(cell["repeats"]),
                fmt_rate(cell["images_per_sec"]),
                fmt_interval(cell["ips_low"], cell["ips_high"], fmt_rate),
                str(cell["ips_method"]),
                spread,
                fmt_rate(cell["images_per_sec_per_gpu"]),
                fmt_significant(
                    cell["step_p50_s"] * 1000 if not is_missing(cell["step_p50_s"]) else None
                ),
                noise_text(cell),
            )
        )
    headers = (
        *headers_for(keys),
        "Repeats",
        "Images/s (global, mean)",
        "95% interval",
        "Interval from",
        "Spread (min-max)",
        "Images/s per GPU",
        "Step p50 (ms)",
        "Noise (CV steps / repeats)",
    )
    numeric = (*numeric_flags(keys, 3), False, True, True, True, False)
    notes = ()
    if cells["noisy"].any():
        notes = (
            "NOISY: the machine was noisy for this cell (a coefficient of variation above "
            "its threshold); its interval is wide and comparisons with it are weak.",
        )
    return Table("throughput", "Throughput per cell", intro, headers, tuple(rows), numeric, notes)


def noise_text(cell: pd.Series) -> str:
    """'3.1% / 4.0%', 'NOISY' appended when either is over its threshold."""
    parts = [
        NA if is_missing(cell["cv_steps"]) else f"{cell['cv_steps']:.1%}",
        NA if is_missing(cell["cv_repeats"]) else f"{cell['cv_repeats']:.1%}",
    ]
    text = " / ".join(parts)
    return f"{text} NOISY" if cell["noisy"] else text


def scaling_table(cells: pd.DataFrame) -> Table:
    intro = (
        "Each multi-GPU cell against the 1-GPU cell with the same settings. "
        "Scaling = images/s at N GPUs / images/s at 1 GPU; "
        "efficiency = scaling / N (100% is perfectly linear)."
    )
    frame = analysis.scaling_frame(cells)
    frame = frame[frame["gpus"] > 1] if not frame.empty else frame
    if frame.empty:
        reason = (
            "every cell ran on a single GPU count"
            if cells["gpus"].nunique() < 2
            else "no multi-GPU cell has a 1-GPU cell with otherwise equal settings"
        )
        return Table("scaling", "Scaling efficiency", intro, missing=reason)
    keys = identity_keys(frame, always=("model", "mode", "gpus"))
    rows = tuple(
        (
            *identity(row, keys),
            fmt_rate(row["baseline_ips"]),
            fmt_rate(row["images_per_sec"]),
            f"{row['scaling']:.2f}x",
            fmt_pct(row["efficiency"]),
            fmt_interval(row["efficiency_low"], row["efficiency_high"], fmt_pct),
            verdict_text(row["efficiency_verdict"], slower="scaling loss", faster="superlinear"),
        )
        for _, row in frame.iterrows()
    )
    headers = (
        *headers_for(keys),
        "Images/s at 1 GPU",
        "Images/s at N GPUs",
        "Scaling",
        "Efficiency",
        "Efficiency 95% interval",
        "Against linear",
    )
    numeric = (*numeric_flags(keys, 5), False)
    return Table("scaling", "Scaling efficiency", intro, headers, rows, numeric)


def speedup_table(cells: pd.DataFrame) -> Table:
    intro = (
        "TFRecords against raw image files, cells equal in everything but the data "
        "format (the poster reports +8.39% for ResNet50 and +13.1% for DenseNet121 at "
        "4 V100s). Speedup = images/s tfrecord / images/s raw - 1, with its 95% interval "
        "(Fieller's, for a ratio of two means). A verdict names a difference only when the "
        f"interval excludes 0, the difference is at least {stats.FACTOR:.0%} and, with 5 or "
        "more samples a side, a Mann-Whitney test on them agrees (p < 0.05). Pipeline-mode "
        "rows compare what each format can supply without a model."
    )
    frame = analysis.speedup_frame(cells)
    if frame.empty:
        formats = set(cells["data_format"]) - {NA_KEY} if not cells.empty else set()
        if "tfrecord" not in formats or "raw" not in formats:
            have = f"only {', '.join(sorted(formats))}" if formats else "neither"
            reason = f"needs both raw and tfrecord cells; these results have {have}"
        else:
            reason = "no tfrecord cell has a raw cell with otherwise equal settings"
        return Table("speedup", "TFRecord over raw files", intro, missing=reason)
    frame = frame.sort_values(
        "mode", key=lambda mode: ~mode.isin(analysis.TRAINING_MODES), kind="stable"
    )
    keys = identity_keys(frame, always=("model", "mode", "gpus"))
    rows = tuple(
        (
            *identity(row, keys),
            fmt_rate(row["raw_ips"]),
            fmt_rate(row["tfrecord_ips"]),
            fmt_pct(row["speedup"], signed=True),
            fmt_interval(row["speedup_low"], row["speedup_high"], signed_pct),
            verdict_text(
                row["speedup_verdict"], slower="tfrecord slower", faster="tfrecord faster"
            ),
        )
        for _, row in frame.iterrows()
    )
    headers = (
        *headers_for(keys),
        "Images/s raw",
        "Images/s tfrecord",
        "Speedup",
        "Speedup 95% interval",
        "Verdict",
    )
    numeric = (*numeric_flags(keys, 4), False)
    return Table("speedup", "TFRecord over raw files", intro, headers, rows, numeric)


def input_bound_table(cells: pd.DataFrame) -> Table:
    intro = (
        "Is training waiting for its input? Synthetic = the model on random tensors "
        "already on the device (what the GPUs can consume); pipeline = the input "
        "pipeline alone (what it can supply). Input-bound share = 1 - train / synthetic: "
        "the fraction of the GPUs' capacity lost to the input (about 0 or below: not "
        "input-bound, within noise). Headroom = pipeline / synthetic: below 1 the input "
        "cannot keep up even with no model in the way. Both with 95% intervals; "
        "input-bound is stated only where train is significantly slower than synthetic."
    )
    frame = analysis.input_bound_frame(cells)
    if frame.empty:
        return Table(
            "input_bound",
            "Input-bound share and pipeline headroom",
            intro,
            missing="no train or fit cell finished",
        )
    always = ("model", "mode", "input", "pipeline", "gpus")
    keys = (
        identity_keys(frame, always=always[:1] + always[2:], skip=("mode",))
        if frame["mode"].nunique() == 1
        else identity_keys(frame, always=always)
    )
    rows = tuple(
        (
            *identity(row, keys),
            fmt_rate(row["images_per_sec"]),
            fmt_rate(row["synthetic_ips"]),
            fmt_rate(row["pipeline_ips"]),
            fmt_pct(row["input_bound_share"]),
            fmt_interval(row["input_bound_share_low"], row["input_bound_share_high"], fmt_pct),
            verdict_text(
                row["input_bound_share_verdict"], slower="input-bound", faster="train faster"
            ),
            fmt_ratio(row["headroom"]),
            fmt_interval(row["headroom_low"], row["headroom_high"], fmt_ratio),
        )
        for _, row in frame.iterrows()
    )
    notes = []
    if (frame["device"] == "cpu").any():
        notes.append(
            "CPU device: the model and the input pipeline share the same CPU cores, so "
            "train slower than synthetic measures that competition, not an input pipeline "
            "starving a GPU; these rows are not a GPU-like input-bound measurement."
        )
    if frame["synthetic_ips"].isna().any():
        notes.append(
            "n/a in Synthetic: no synthetic-mode cell with the same model, GPUs, "
            "batch and precision, so the share cannot be computed."
        )
    if frame["pipeline_ips"].isna().any():
        notes.append(
            "n/a in Pipeline: no pipeline-mode cell with the same format, pipeline, "
            "GPUs and batch."
        )
    headers = (
        *headers_for(keys),
        "Images/s train",
        "Images/s synthetic",
        "Images/s pipeline",
        "Input-bound share",
        "Share 95% interval",
        "Verdict",
        "Headroom",
        "Headroom 95% interval",
    )
    numeric = (*numeric_flags(keys, 5), False, True, True)
    return Table(
        "input_bound",
        "Input-bound share and pipeline headroom",
        intro,
        headers,
        rows,
        numeric,
        tuple(notes),
    )


def fmt_interval(low: Any, high: Any, fmt: Any) -> str:
    """'[a, b]' in the figure's own format; n/a where there is no interval."""
    if is_missing(low) or is_missing(high):
        return NA
    return f"[{_end(low, fmt)}, {_end(high, fmt)}]"


def _end(value: float, fmt: Any) -> str:
    if math.isinf(value) and fmt is not fmt_epochs:
        return "+inf" if value > 0 else "-inf"
    return fmt(value)


def signed_pct(value: Any) -> str:
    return fmt_pct(value, signed=True)


def verdict_text(verdict: str, *, slower: str, faster: str) -> str:
    """The comparison's verdict in the table's own words ('faster' -> `faster`)."""
    return {"slower": slower, "faster": faster}.get(verdict, verdict)


def comparison_table(cells: pd.DataFrame, labels: Sequence[str]) -> Table:
    intro = (
        "The same cell in each results set, side by side (mean images/s); the last "
        f"columns are each set against the first, {labels[0]}, with the ratio's 95% "
        "interval and, where the interval does not support a difference, "
        f'"{stats.NO_DIFFERENCE}".'
    )
    settings = [key for key in CELL_KEYS if key != "source"]
    rows_by_cell = []
    for _, group in cells.groupby(settings, sort=False):
        if group["source"].nunique() > 1:
            by_label = {row["source"]: row for _, row in group.iterrows()}
            rows_by_cell.append((group.iloc[0], [by_label.get(label) for label in labels]))
    if not rows_by_cell:
        return Table(
            "comparison",
            "Results sets compared",
            intro,
            missing="no cell with equal settings appears in more than one results set",
        )
    shown = pd.DataFrame([cell for cell, _ in rows_by_cell])
    keys = identity_keys(shown, always=("model", "mode", "gpus"), skip=("source",))
    rows = []
    for cell, found in rows_by_cell:
        first = found[0]
        ratios = [
            NA if first is None or other is None else _ratio_text(other, first)
            for other in found[1:]
        ]
        rates = (NA if one is None else fmt_rate(one["images_per_sec"]) for one in found)
        rows.append((*identity(cell, keys), *rates, *ratios))
    headers = (
        *headers_for(keys),
        *(f"Images/s {label}" for label in labels),
        *(f"{label} / {labels[0]} [95% interval]" for label in labels[1:]),
    )
    return Table(
        "comparison",
        "Results sets compared",
        intro,
        headers,
        tuple(rows),
        (*numeric_flags(keys, len(labels)), *((False,) * (len(labels) - 1))),
    )


def _ratio_text(cell: pd.Series, base: pd.Series) -> str:
    """'1.25x [1.19x, 1.31x]', the verdict added where no difference is supported."""
    comparison = stats.compare(cell_estimate(cell), cell_estimate(base))
    ratio = comparison.ratio
    text = f"{ratio.value:.2f}x {fmt_interval(ratio.low, ratio.high, fmt_ratio)}"
    return text if comparison.significant else f"{text} {comparison.verdict}"
