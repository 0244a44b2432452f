"""The report's capacity section: "Input capacity: cores per GPU", a table and a figure.

Every number comes from reports.capacity (see its formulas); this module only lays them
out. Missing figures are "n/a", with the reason in the table's notes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from reports import capacity
from reports.figure import COLORS, STYLE, Figure, png_bytes
from reports.format import Table, fmt_pct

TITLE = "Input capacity: cores per GPU"


def capacity_inputs(
    results: Sequence[Mapping[str, Any]],
    sweep_yamls: Sequence[str | None],
    *,
    host_cores_per_gpu: float | None = None,
    with_reference: bool = True,
) -> tuple[list[capacity.InputCost], list[capacity.Demand], float | None]:
    """The costs, demands and cores per GPU (C) a report uses; C from the results'
    environment unless given."""
    costs = capacity.measured_costs(results)
    if with_reference:
        costs += capacity.reference_costs()
    demands = capacity.synthetic_demands(results)
    for text in sweep_yamls:
        demands += capacity.sweep_demands(text)
    if with_reference:
        demands += capacity.reference_demands(headline=True)
    cores = host_cores_per_gpu
    if cores is None:
        cores = capacity.host_cores_per_gpu(results)
    return costs, demands, cores


def capacity_table(
    rows: Sequence[capacity.CapacityRow],
    *,
    host_cores_per_gpu: float | None,
    worker_cores: float | None,
) -> Table:
    intro = (
        "CPU per image = CPU seconds of the input (every rank's process, plus the input-"
        "service workers where used) over the images it delivered in pipeline mode; mean "
        "over runs, 95% interval in brackets. Cores per GPU = CPU per image x the images/s "
        "one GPU consumes. GPU time lost = 1 - (C / CPU per image) / demand, with C cores "
        "per GPU on the host. Linear model: the least a format needs."
    )
    if not rows:
        return Table("capacity", TITLE, intro, missing="no pipeline-mode cost and no demand")
    headers = (
        "input",
        "CPU per image (ms)",
        "cost from",
        "demand",
        "images/s per GPU",
        "demand from",
        "cores per GPU",
        f"service workers of {_number(worker_cores)} cores" if worker_cores else "service workers",
        f"GPU time lost at {_number(host_cores_per_gpu)} cores/GPU"
        if host_cores_per_gpu
        else "GPU time lost",
    )
    body = tuple(
        (
            row.cost.input,
            _with_interval(row.cost.cpu_s_per_image * 1e3, row.cost.low, row.cost.high, 1e3),
            _short_source(row.cost.source, row.cost.runs),
            row.demand.name,
            f"{row.demand.images_per_sec_per_gpu:,.0f}",
            _short_source(row.demand.source, None),
            _with_interval(row.cores_per_gpu, row.cores_low, row.cores_high, 1.0),
            "n/a" if row.service_workers is None else str(row.service_workers),
            "n/a" if row.gpu_time_lost is None else fmt_pct(row.gpu_time_lost),
        )
        for row in rows
    )
    notes = []
    if host_cores_per_gpu is None:
        notes.append("GPU time lost: n/a, no result records the host's cores per GPU")
    if worker_cores is None:
        notes.append("service workers: n/a, no worker size given (--worker-cores)")
    notes.append(f"reference figures: {capacity.reference_rates.SOURCE}")
    numeric = (False, True, False, False, True, False, True, True, True)
    return Table("capacity", TITLE, intro, headers, body, numeric, tuple(notes))


def capacity_figure(
    costs: Sequence[capacity.InputCost],
    demands: Sequence[capacity.Demand],
    *,
    host_cores_per_gpu: float | None,
) -> Figure:
    name = "capacity_cores_per_gpu.png"
    caption = (
        "Cores per GPU each input needs (CPU per image x demand) against the images/s one "
        "GPU consumes; shaded: the 95% interval of the cost; markers: the demands in the "
        "table; dotted: the host's cores per GPU."
    )
    if not costs or not demands:
        missing = "pipeline-mode cost" if not costs else "demand"
        return Figure(name, TITLE, caption, note=f"no {missing} in these results")
    rates = np.array(sorted(d.images_per_sec_per_gpu for d in demands))
    span = np.geomspace(rates.min() / 1.5, rates.max() * 1.5, 50)
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(7.5, 4.2))
        for index, cost in enumerate(costs):
            color = COLORS[index % len(COLORS)]
            axis.plot(span, cost.cpu_s_per_image * span, color=color, label=cost.input)
            if cost.low is not None and cost.high is not None:
                axis.fill_between(span, cost.low * span, cost.high * span, color=color, alpha=0.15)
            axis.plot(rates, cost.cpu_s_per_image * rates, "o", color=color, markersize=3)
        if host_cores_per_gpu:
            axis.axhline(host_cores_per_gpu, color="black", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("demand: images/s one GPU consumes (log)")
        axis.set_ylabel("CPU cores per GPU needed (log)")
        axis.legend(loc="upper left", fontsize=7)
        return Figure(name, TITLE, caption, png_bytes(figure))


def _with_interval(value: float, low: float | None, high: float | None, scale: float) -> str:
    text = _number(value)
    if low is None or high is None:
        return text
    return f"{text} [{_number(low * scale)}, {_number(high * scale)}]"


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _short_source(source: str, runs: int | None) -> str:
    if source.startswith("reference"):
        return "reference (H100 host)"
    if runs:
        return f"{source}, {runs} run{'s' if runs != 1 else ''}"
    return source
