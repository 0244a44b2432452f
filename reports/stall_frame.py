"""The stall decomposition's cells: each train cell with the page cache warm, matched by its
settings to the synthetic cell of its model (the compute time), to its cold twin, and to
the pipeline-mode cells of its input (what the input supplies alone, warm and cold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reports.frame import NA_KEY
from reports.stall_shares import stall_shares

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
                "pipeline_warm_ips": _mean(rates[("pipeline", "warm")].get(supply_key)),
                "pipeline_cold_ips": _mean(rates[("pipeline", "cold")].get(supply_key)),
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


def _mean(values: list[float] | None) -> float:
    return float(np.mean(values)) if values else math.nan


def input_label(row: pd.Series) -> str:
    """'raw', 'tfrecord/png', 'tfrecord/jpeg (jpeg-256)': what fed the model."""
    text = str(row["data_format"])
    if row["encoding"] != NA_KEY and (row["data_format"] == "tfrecord" or row["encoding"] != "png"):
        text += f"/{row['encoding']}"
    if row["conversion"] != NA_KEY and row["data_format"] == "tfrecord":
        text += f" ({row['conversion']})"
    return text
