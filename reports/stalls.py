"""Fetch stalls and preparation stalls: DS-Analyzer's arithmetic on a sweep's cells.

Mohan et al., "Analyzing and Mitigating Data Stalls in DNN Training" (PVLDB 2021), split
the time a training step waits for its input into two parts with three measurements:

- synthetic: the model alone on data already on the device: the compute time t_c;
- train, page cache warm: the data in memory, so the step pays compute and preparation
  (decode, resize, batch): t_w;
- train, page cache cold: the bytes come from storage too: t_cold.

Per step (step time = images per step / images/s, the median over repeats):

    preparation stall = t_w - t_c          fetch stall = t_cold - t_w
    shares of the step = t_c / T, (t_w - t_c) / T, (t_cold - t_w) / T,  T = t_cold

so compute + preparation + fetch = 1. Without a cold cell the fetch stall is missing and
T = t_w. A negative stall (the slower measurement was faster) is noise, and is shown as
measured, never clipped in the table.

The interval of each share is its range over the min-max box of the three cells' repeats
(each share is a ratio of sums of the step times, monotone in each of them, so its extremes
lie at corners of the box): the same min-max convention as the throughput table. With one
repeat in every cell the interval is a point and is reported as missing. A stall is called
real only when its interval excludes 0.

The pipeline-mode cells (the input alone, warm and cold) are shown beside it as what the
input can supply from memory and from storage. No TensorFlow here: reports never import it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reports.format import KEY_HEADERS, NA, Table, fmt_pct, fmt_rate, is_missing
from reports.frame import NA_KEY
from reports.plots import COLORS, STYLE, Figure, png_bytes

# The settings a synthetic cell shares with the train cells it is the compute time of.
MODEL_KEYS = (
    "source",
    "model",
    "engine",
    "gpus",
    "nodes",
    "device",
    "batch_per_gpu",
    "precision",
    "image_size",
    "xla",
)
INPUT_KEYS = ("data_format", "encoding", "conversion", "pipeline")
TRAIN_KEYS = (*MODEL_KEYS, *INPUT_KEYS)
# A pipeline-mode cell has no model: it matches on the input and the batch only.
SUPPLY_KEYS = ("source", *INPUT_KEYS, "engine", "gpus", "nodes", "batch_per_gpu", "image_size")
STATES = ("warm", "cold")
COLUMNS = (
    *TRAIN_KEYS,
    "repeats_synthetic",
    "repeats_warm",
    "repeats_cold",
    "step_compute_s",
    "step_warm_s",
    "step_cold_s",
    "compute_share",
    "prep_share",
    "prep_low",
    "prep_high",
    "fetch_share",
    "fetch_low",
    "fetch_high",
    "step_compute_low_s",
    "step_compute_high_s",
    "step_warm_low_s",
    "step_warm_high_s",
    "step_cold_low_s",
    "step_cold_high_s",
    "pipeline_warm_ips",
    "pipeline_cold_ips",
    "cold_resident_at_start",
)


@dataclass(frozen=True, kw_only=True)
class Shares:
    """One decomposition: step times (s) and shares of the step; NaN where missing."""

    step_compute_s: float
    step_warm_s: float
    step_cold_s: float
    compute_share: float
    prep_share: float
    prep_low: float
    prep_high: float
    fetch_share: float
    fetch_low: float
    fetch_high: float
    # min-max over repeats of each step time (the figure's whiskers)
    step_compute_low_s: float
    step_compute_high_s: float
    step_warm_low_s: float
    step_warm_high_s: float
    step_cold_low_s: float
    step_cold_high_s: float


def _shares(t_c: float, t_w: float, t_cold: float) -> tuple[float, float, float]:
    """(compute, preparation, fetch) shares of the step; fetch NaN when t_cold is NaN."""
    total = t_w if math.isnan(t_cold) else t_cold
    fetch = math.nan if math.isnan(t_cold) else (t_cold - t_w) / total
    return t_c / total, (t_w - t_c) / total, fetch


def stall_shares(
    synthetic_ips: Sequence[float],
    warm_ips: Sequence[float],
    cold_ips: Sequence[float],
    *,
    images_per_step: float,
) -> Shares:
    """The decomposition from each cell's repeats (images/s); `cold_ips` may be empty."""
    if not synthetic_ips or not warm_ips:
        raise ValueError("the decomposition needs a synthetic and a warm train measurement")
    if min([*synthetic_ips, *warm_ips, *cold_ips]) <= 0:
        raise ValueError("images/s must be positive")

    def step(rates: Sequence[float], pick: str = "median") -> float:
        if not rates:
            return math.nan
        rate = {"median": float(np.median(rates)), "min": min(rates), "max": max(rates)}[pick]
        return images_per_step / rate

    t_c, t_w, t_cold = step(synthetic_ips), step(warm_ips), step(cold_ips)
    compute, prep, fetch = _shares(t_c, t_w, t_cold)
    corners = [
        _shares(c, w, k)
        for c, w, k in itertools.product(
            {step(synthetic_ips, "min"), step(synthetic_ips, "max")},
            {step(warm_ips, "min"), step(warm_ips, "max")},
            {step(cold_ips, "min"), step(cold_ips, "max")} if cold_ips else {math.nan},
        )
    ]
    spread = max(len(synthetic_ips), len(warm_ips), len(cold_ips)) > 1
    prep_values = [corner[1] for corner in corners]
    fetch_values = [corner[2] for corner in corners]
    no_fetch = not cold_ips
    return Shares(
        step_compute_s=t_c,
        step_warm_s=t_w,
        step_cold_s=t_cold,
        compute_share=compute,
        prep_share=prep,
        prep_low=min(prep_values) if spread else math.nan,
        prep_high=max(prep_values) if spread else math.nan,
        fetch_share=fetch,
        fetch_low=math.nan if no_fetch or not spread else min(fetch_values),
        fetch_high=math.nan if no_fetch or not spread else max(fetch_values),
        step_compute_low_s=step(synthetic_ips, "max"),
        step_compute_high_s=step(synthetic_ips, "min"),
        step_warm_low_s=step(warm_ips, "max"),
        step_warm_high_s=step(warm_ips, "min"),
        step_cold_low_s=step(cold_ips, "max"),
        step_cold_high_s=step(cold_ips, "min"),
    )


def is_real(low: float, high: float) -> bool | None:
    """Whether an interval excludes 0; None when there is no interval."""
    if math.isnan(low) or math.isnan(high):
        return None
    return low > 0 or high < 0


def stalls_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per train cell with a warm measurement and a synthetic cell to match.

    `runs` is reports.frame.runs_frame's table with a `page_cache` column ("warm",
    "cold", or NA_KEY where the result does not say); an optional `resident_at_start`
    column (fraction) is averaged over the cold repeats.
    """
    if runs.empty or "page_cache" not in runs:
        return pd.DataFrame(columns=COLUMNS)
    ok = runs[(runs["status"] == "ok") & runs["images_per_sec"].notna()]
    rates = {
        (mode, state): _rates_by(ok, mode, state, keys)
        for mode, keys, state in (
            *(("train", TRAIN_KEYS, state) for state in STATES),
            *(("pipeline", SUPPLY_KEYS, state) for state in STATES),
        )
    }
    synthetic = _rates_by(ok, "synthetic", None, MODEL_KEYS)
    resident = _resident(ok)
    rows = []
    for key, warm in rates[("train", "warm")].items():
        cell = dict(zip(TRAIN_KEYS, key, strict=True))
        compute = synthetic.get(tuple(cell[k] for k in MODEL_KEYS))
        if not compute:
            continue
        cold = rates[("train", "cold")].get(key, [])
        shares = stall_shares(
            compute, warm, cold, images_per_step=cell["batch_per_gpu"] * cell["gpus"]
        )
        supply_key = tuple(cell[k] for k in SUPPLY_KEYS)
        rows.append(
            {
                **cell,
                "repeats_synthetic": len(compute),
                "repeats_warm": len(warm),
                "repeats_cold": len(cold),
                **shares.__dict__,
                "pipeline_warm_ips": _median(rates[("pipeline", "warm")].get(supply_key)),
                "pipeline_cold_ips": _median(rates[("pipeline", "cold")].get(supply_key)),
                "cold_resident_at_start": resident.get(key, math.nan),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _rates_by(
    runs: pd.DataFrame, mode: str, state: str | None, keys: Sequence[str]
) -> dict[tuple, list[float]]:
    chosen = runs[runs["mode"] == mode]
    if state is not None:
        chosen = chosen[chosen["page_cache"] == state]
    out: dict[tuple, list[float]] = {}
    for _, run in chosen.iterrows():
        out.setdefault(tuple(run[k] for k in keys), []).append(float(run["images_per_sec"]))
    return out


def _resident(runs: pd.DataFrame) -> dict[tuple, float]:
    if "resident_at_start" not in runs:
        return {}
    cold = runs[(runs["mode"] == "train") & (runs["page_cache"] == "cold")]
    out: dict[tuple, list[float]] = {}
    for _, run in cold.iterrows():
        value = run["resident_at_start"]
        if value is not None and not pd.isna(value):
            out.setdefault(tuple(run[k] for k in TRAIN_KEYS), []).append(float(value))
    return {key: float(np.mean(values)) for key, values in out.items()}


def _median(values: list[float] | None) -> float:
    return float(np.median(values)) if values else math.nan


def input_label(row: pd.Series) -> str:
    """'raw', 'tfrecord/png', 'tfrecord/jpeg (jpeg-256)': what fed the model."""
    text = str(row["data_format"])
    if row["encoding"] != NA_KEY and (row["data_format"] == "tfrecord" or row["encoding"] != "png"):
        text += f"/{row['encoding']}"
    if row["conversion"] != NA_KEY and row["data_format"] == "tfrecord":
        text += f" ({row['conversion']})"
    return text


def stalls_table(runs: pd.DataFrame) -> Table:
    """The decomposition per model, input and GPU count, as a report table."""
    title = "Where the step time goes: compute, preparation stall, fetch stall"
    intro = (
        "DS-Analyzer's method: compute = the synthetic cell's step time; preparation "
        "stall = train with the page cache warm minus synthetic; fetch stall = train with "
        "the page cache cold minus train warm; each as a share of the cold step (of the "
        "warm step where no cold cell ran). Interval: the range over the min-max of each "
        "cell's repeats; a stall counts as real only where its interval excludes 0. "
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
        "Step times are per global step (batch per GPU x GPUs images), median over repeats.",
    ]
    if frame["repeats_cold"].eq(0).any():
        notes.append("Fetch stall n/a: no train cell with page_cache cold matches that row.")
    if (frame[["repeats_synthetic", "repeats_warm", "repeats_cold"]].max(axis=1) < 2).any():
        notes.append("No interval (n/a in brackets): every cell of that row ran once.")
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
    return f"{text} [{fmt_pct(low)}, {fmt_pct(high)}]{marker}"


def below_zero(frame: pd.DataFrame) -> bool:
    """Whether some stall's whole interval lies below 0 (a faster 'slower' configuration)."""
    return bool((frame["prep_high"] < 0).any() or (frame["fetch_high"] < 0).any())


def stalls_figure(runs: pd.DataFrame) -> Figure:
    """Stacked bars per row: compute, preparation stall, fetch stall (ms per step)."""
    title, name = "Compute, preparation stall and fetch stall", "stalls.png"
    caption = (
        "Per model, input and GPU count: the step time split into compute (synthetic), "
        "preparation stall (train warm - synthetic) and fetch stall (train cold - train "
        "warm), in ms per global step. Whiskers: min-max over repeats of the synthetic, "
        "warm and cold step times (left, middle, right), drawn at each measured step "
        "time. A negative stall (noise) is drawn as 0."
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
            shown = ~np.isnan(middle)
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
