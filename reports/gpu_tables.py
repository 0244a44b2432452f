"""The GPU and host table: NVML and psutil samples inside each run's measured window."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.format import (
    NA,
    Table,
    fmt_number,
    fmt_pct,
    fraction,
    headers_for,
    identity,
    identity_keys,
    numeric_flags,
)
from reports.frame import CELL_KEYS
from reports.telemetry import GpuStats, cell_gpu_stats, cell_host_cpu_pct


def gpu_table(
    cells: pd.DataFrame, runs: pd.DataFrame, results: Mapping[str, dict[str, Any]]
) -> Table:
    intro = (
        "NVML samples inside each run's measured window (warm-up excluded), pooled over "
        "the cell's GPUs and repeats: mean and 10th percentile of utilization (p10: "
        "the level the GPUs stay above 90% of the time), mean power per GPU, peak "
        "memory used on any one GPU. Host CPU: the mean use of all the hosts' cores in the "
        "same window (psutil), where the input pipeline decodes (a pipeline probe shorter "
        "than one sampling period: the probe's own figure)."
    )
    if cells.empty:
        return Table(
            "gpu", "GPU and host utilization, power and memory", intro, missing="no run finished"
        )
    keys = identity_keys(cells, always=("model", "mode", "gpus"))
    rows = []
    unwindowed = False
    reasons: list[str] = []
    ok = runs[runs["status"] == "ok"]
    for _, cell in cells.iterrows():
        mask = (ok[list(CELL_KEYS)] == cell[list(CELL_KEYS)]).all(axis=1)
        cell_results = [results[path] for path in ok[mask]["path"]]
        stats = cell_gpu_stats(cell_results)
        host_cpu = fmt_pct(fraction(cell_host_cpu_pct(cell_results)))
        if isinstance(stats, GpuStats):
            unwindowed = unwindowed or not stats.windowed
            figures = (
                fmt_pct(fraction(stats.utilization_mean_pct)),
                fmt_pct(fraction(stats.utilization_p10_pct)),
                fmt_number(stats.power_mean_w),
                fmt_number(stats.memory_peak_gib),
                str(stats.samples),
            )
        else:
            reasons += [] if stats in reasons else [stats]
            mark = f"{NA} [{reasons.index(stats) + 1}]"
            figures = (mark, mark, mark, mark, "0")
        rows.append((*identity(cell, keys), *figures, host_cpu))
    notes = tuple(
        f"[{number}] No GPU samples: {reason}." for number, reason in enumerate(reasons, start=1)
    )
    if unwindowed:
        notes += ("Some runs recorded no measured window: their warm-up samples are included.",)
    headers = (
        *headers_for(keys),
        "Utilization mean",
        "Utilization p10",
        "Power mean (W/GPU)",
        "Memory peak (GiB)",
        "Samples",
        "Host CPU mean",
    )
    return Table(
        "gpu",
        "GPU and host utilization, power and memory",
        intro,
        headers,
        tuple(rows),
        numeric_flags(keys, 6),
        notes,
    )
