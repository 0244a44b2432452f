"""Fetch stalls and preparation stalls: DS-Analyzer's arithmetic on a sweep's cells.

Mohan et al., "Analyzing and Mitigating Data Stalls in DNN Training" (PVLDB 2021), split
the time a training step waits for its input into two parts with three measurements:

- synthetic: the model alone on data already on the device: the compute time t_c;
- train, page cache warm: the data in memory, so the step pays compute and preparation
  (decode, resize, batch): t_w;
- train, page cache cold: the bytes come from storage too: t_cold.

Preparation stall = t_w - t_c, fetch stall = t_cold - t_w, each as a share of the step
(reports.stall_shares, with 95% intervals as in the rest of the report); the cells are
matched in reports.stall_frame. A negative stall (the slower measurement was faster) is
noise, and is shown as measured, never clipped in the table. A stall is called real only
when its interval excludes 0; a share whose cells include one that ran once has no interval,
shown as missing.

The pipeline-mode cells (the input alone, warm and cold) are shown beside it as what the
input can supply from memory and from storage. No TensorFlow here: reports never import it.
This module is the report's table and figure.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reports.figure import COLORS, STYLE, Figure, png_bytes
from reports.format import KEY_HEADERS, NA, Table, fmt_pct, fmt_rate, is_missing
from reports.stall_frame import input_label, stalls_frame
from reports.stall_shares import is_real


def stalls_table(runs: pd.DataFrame) -> Table:
    """The decomposition per model, input and GPU count, as a report table."""
    title = "Where the step time goes: compute, preparation stall, fetch stall"
    intro = (
        "DS-Analyzer's method: compute = the synthetic cell's step time; preparation "
        "stall = train with the page cache warm minus synthetic; fetch stall = train with "
        "the page cache cold minus train warm; each as a share of the cold step (of the "
        "warm step where no cold cell ran). Interval: 95%, from each cell's repeats (t on the "
        "mean step times, Fieller's for a share, a ratio of means); a stall counts as real "
        "only where its interval excludes 0. "
        "Supply = the pipeline-mode cell alone, warm and cold (images/s)."
    )
    frame = stalls_frame(runs)
    if frame.empty:
        return Table(
            "stalls",
            title,
            intro,
            missing=(
                "needs a synthetic cell and a train cell with page_cache warm (and cold, "
                "for the fetch stall) with the same model, GPUs and batch"
            ),
        )
    keys = [key for key in ("source", "model") if frame[key].nunique() > 1 or key == "model"]
    rows = []
    for _, row in frame.iterrows():
        rows.append(
            (
                *(str(row[key]) for key in keys),
                input_label(row),
                str(row["pipeline"]),
                str(row["gpus"]),
                _ms(row["step_compute_s"]),
                _ms(row["step_warm_s"]),
                _ms(row["step_cold_s"]),
                fmt_pct(row["compute_share"]),
                _with_interval(row["prep_share"], row["prep_low"], row["prep_high"]),
                _with_interval(row["fetch_share"], row["fetch_low"], row["fetch_high"]),
                fmt_rate(row["pipeline_warm_ips"]),
                fmt_rate(row["pipeline_cold_ips"]),
                fmt_pct(row["cold_resident_at_start"]),
            )
        )
    notes = [
        "Step times are per global step (batch per GPU x GPUs images), mean over repeats.",
    ]
    if frame["repeats_cold"].eq(0).any():
        notes.append("Fetch stall n/a: no train cell with page_cache cold matches that row.")
    if _without_interval(frame).any():
        notes.append(
            "No interval (n/a in brackets): a cell that share needs ran once (a 95% interval "
            "needs two repeats or more)."
        )
    if _unbounded(frame).any():
        notes.append(
            "-inf, +inf: the repeats of the step it is a share of are too few or too spread "
            "to bound the share (Fieller's interval is unbounded)."
        )
    if below_zero(frame) or (frame["compute_share"] > 1).any():
        notes.append(
            "<0! (or a compute share above 100%): the configuration that does more work ran "
            "faster, beyond the spread of the repeats. That is not a negative stall: the "
            "cells ran under different conditions (other load on the machine, clocks, the "
            "order they ran in). Rerun with the repeats interleaved (run the sweep with "
            "repeats: 1, then --resume with repeats: 2, 3, ...) on a quiet machine."
        )
    if frame[["pipeline_warm_ips", "pipeline_cold_ips"]].isna().any(axis=None):
        notes.append("Supply n/a: no pipeline-mode cell with that input, cache state and batch.")
    headers = (
        *(KEY_HEADERS[key] for key in keys),
        "Input",
        "Pipeline",
        "GPUs",
        "Compute ms",
        "Warm step ms",
        "Cold step ms",
        "Compute share",
        "Preparation stall",
        "Fetch stall",
        "Supply warm",
        "Supply cold",
        "Resident at cold start",
    )
    numeric = (False,) * (len(keys) + 2) + (True,) * (len(headers) - len(keys) - 2)
    return Table("stalls", title, intro, headers, tuple(rows), numeric, tuple(notes))


def _ms(seconds: float) -> str:
    return NA if is_missing(seconds) else f"{1000 * seconds:,.1f}"


def _with_interval(share: float, low: float, high: float) -> str:
    if is_missing(share):
        return NA
    text = fmt_pct(share)
    if is_missing(low) or is_missing(high):
        return f"{text} [{NA}]"
    marker = " ~0" if not is_real(low, high) else (" <0!" if high < 0 else "")
    return f"{text} [{_bound(low)}, {_bound(high)}]{marker}"


def _bound(value: float) -> str:
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return fmt_pct(value)


def _without_interval(frame: pd.DataFrame) -> pd.Series:
    """Rows where a stall is shown without an interval (a cell it needs ran once)."""
    return (frame["prep_share"].notna() & frame["prep_low"].isna()) | (
        frame["fetch_share"].notna() & frame["fetch_low"].isna()
    )


def _unbounded(frame: pd.DataFrame) -> pd.Series:
    bounds = frame[["prep_low", "prep_high", "fetch_low", "fetch_high"]].to_numpy(dtype=float)
    return pd.Series(np.isinf(bounds).any(axis=1), index=frame.index)


def below_zero(frame: pd.DataFrame) -> bool:
    """Whether some stall's whole interval lies below 0 (a faster 'slower' configuration)."""
    return bool((frame["prep_high"] < 0).any() or (frame["fetch_high"] < 0).any())


def stalls_figure(runs: pd.DataFrame) -> Figure:
    """Stacked bars per row: compute, preparation stall, fetch stall (ms per step)."""
    title, name = "Compute, preparation stall and fetch stall", "stalls.png"
    caption = (
        "Per model, input and GPU count: the step time split into compute (synthetic), "
        "preparation stall (train warm - synthetic) and fetch stall (train cold - train "
        "warm), in ms per global step (means over repeats). Whiskers: the 95% intervals of the "
        "mean synthetic, warm and cold step times (left, middle, right), drawn at each "
        "measured step time; none for a cell that ran once. A negative stall (noise) is "
        "drawn as 0."
    )
    frame = stalls_frame(runs)
    if frame.empty:
        return Figure(name, title, caption, note="no synthetic + warm train cells to compare")
    labels = [
        f"{row['model']}\n{input_label(row)} {row['pipeline']}\n{row['gpus']} GPU"
        for _, row in frame.iterrows()
    ]
    compute = 1000 * frame["step_compute_s"].to_numpy(dtype=float)
    prep = np.clip(1000 * frame["step_warm_s"].to_numpy(dtype=float) - compute, 0, None)
    fetch = np.nan_to_num(
        np.clip(1000 * (frame["step_cold_s"].to_numpy(dtype=float) - frame["step_warm_s"]), 0, None)
    )
    positions = np.arange(len(frame))
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(max(4.0, 1.3 * len(frame) + 1.5), 4.0))
        bottom = np.zeros(len(frame))
        for values, label, color in (
            (compute, "compute", COLORS[0]),
            (prep, "preparation stall", COLORS[3]),
            (fetch, "fetch stall", COLORS[1]),
        ):
            axis.bar(positions, values, bottom=bottom, color=color, label=label, width=0.6)
            bottom = bottom + values
        for column, offset in (("compute", -0.12), ("warm", 0.0), ("cold", 0.12)):
            middle = 1000 * frame[f"step_{column}_s"].to_numpy(dtype=float)
            low = 1000 * frame[f"step_{column}_low_s"].to_numpy(dtype=float)
            high = 1000 * frame[f"step_{column}_high_s"].to_numpy(dtype=float)
            shown = ~(np.isnan(middle) | np.isnan(low) | np.isnan(high))
            if not shown.any():
                continue
            axis.errorbar(
                positions[shown] + offset,
                middle[shown],
                yerr=np.vstack([(middle - low)[shown], (high - middle)[shown]]),
                fmt="none",
                ecolor="black",
                elinewidth=1,
                capsize=3,
            )
        for position, total, cold in zip(positions, bottom, frame["step_cold_s"], strict=True):
            if pd.isna(cold):
                axis.annotate(
                    "no cold cell:\nfetch stall n/a",
                    (position, total),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                )
        axis.set_xticks(positions, labels)
        axis.set_ylabel("ms per step")
        axis.set_ylim(bottom=0)
        axis.legend(loc="best")
        return Figure(name, title, caption, png_bytes(figure))
