"""Input capacity: how many CPU cores each input format needs per GPU.

From pipeline-mode results (the input alone, no model), per run:

    CPU per image (core-s)  = (CPU seconds of every rank's process over its measured window
                               + CPU seconds of the input-service workers over the job's
                               measured window) / images delivered in those windows

and per input (format, encoding, conversion, pipeline, image size, service workers) the
mean over its runs with a 95% Student-t interval (none from a single run). Then, for a
demand D (images/s one GPU consumes) and a host with C cores per GPU:

    cores per GPU needed    = CPU per image x D
    service workers         = ceil(cores per GPU needed / cores per worker)   (per GPU)
    share of GPU time lost  = max(0, 1 - (C / CPU per image) / D)

The model is linear: a decode costs the same CPU time on every core, and cores add up
(no memory-bandwidth or I/O limit). It is the least a format needs; the supply curve of a
real pool (docs) shows where it bends. Demand comes from the results' synthetic cells,
from the sweep file's `demand:` map, and from the shipped reference list
(reports.reference_rates), each labelled with its source. No TensorFlow here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from reports import reference_rates
from reports.stats import mean_estimate


class DemandError(ValueError):
    """A `demand:` entry that is not a positive rate; the message names it."""


@dataclass(frozen=True)
class InputCost:
    """What one input costs in CPU time per image delivered."""

    input: str
    cpu_s_per_image: float  # core-seconds per image
    low: float | None  # 95% interval; None from one run
    high: float | None
    runs: int
    images: int
    source: str  # "measured (pipeline mode)" or a reference's label


@dataclass(frozen=True)
class Demand:
    name: str
    images_per_sec_per_gpu: float
    source: str


@dataclass(frozen=True)
class CapacityRow:
    cost: InputCost
    demand: Demand
    cores_per_gpu: float
    cores_low: float | None
    cores_high: float | None
    service_workers: int | None  # per GPU, of `worker_cores` cores each
    gpu_time_lost: float | None  # share, 0..1, at `host_cores_per_gpu`


# -- arithmetic ------------------------------------------------------------------------------
def cores_per_gpu(cpu_s_per_image: float, demand: float) -> float:
    """Cores that keep one GPU consuming `demand` images/s fed."""
    return cpu_s_per_image * demand


def service_workers(cores: float, cores_each: float) -> int:
    """Workers of `cores_each` cores that supply `cores` cores (at least one)."""
    if cores_each <= 0:
        raise ValueError(f"cores per worker must be positive, got {cores_each}")
    return max(1, math.ceil(cores / cores_each - 1e-9))


def gpu_time_lost(cpu_s_per_image: float, demand: float, host_cores_per_gpu: float) -> float:
    """Share of a GPU's time spent waiting for input with only `host_cores_per_gpu`."""
    if cpu_s_per_image <= 0:
        return 0.0  # input that costs nothing never keeps a GPU waiting
    supply = host_cores_per_gpu / cpu_s_per_image
    return max(0.0, 1.0 - supply / demand)


# -- from results ----------------------------------------------------------------------------
def run_cpu_cost(result: Mapping[str, Any]) -> tuple[float, float] | None:
    """(CPU seconds, images) of one ok pipeline-mode run, or None where any part is missing."""
    if result.get("status") != "ok" or (result.get("cell") or {}).get("mode") != "pipeline":
        return None
    probes = (result.get("details") or {}).get("probe")
    probes = probes if isinstance(probes, list) else [probes]
    cpu_s, images = 0.0, 0.0
    for probe in probes:
        if not isinstance(probe, Mapping):
            return None
        pct, seconds, count = (probe.get(k) for k in ("process_cpu_pct", "measured_s", "images"))
        if probe.get("rate_window") and isinstance(probe.get("images_per_sec"), int | float):
            # The images the window's CPU made: its steady rate (from stall to stall), not
            # the batches delivered in it, some made before it (a bursty pipeline's).
            count = probe["images_per_sec"] * seconds
        if not all(isinstance(v, int | float) for v in (pct, seconds, count)) or not count:
            return None
        cpu_s += pct / 100.0 * seconds
        images += count
    service = result.get("input_service")
    if service:
        worker_cpu_s = service.get("worker_cpu_s")
        if not isinstance(worker_cpu_s, int | float):
            return None  # workers' CPU not measured: the cost would be too low
        cpu_s += worker_cpu_s
    if cpu_s <= 0:
        return None  # no CPU time resolved over the window: unmeasured, not free
    return cpu_s, images


def input_label(result: Mapping[str, Any]) -> str:
    """'raw/png tuned 224 px', 'tfrecord/jpeg (jpeg-256) tuned 224 px, service 2x2 cores'."""
    cell = result.get("cell") or {}
    text = f"{cell.get('data_format')}/{cell.get('encoding') or 'mixed'}"
    if cell.get("conversion"):
        text += f" ({cell['conversion']})"
    text += f" {cell.get('pipeline')} {cell.get('image_size')} px"
    service = result.get("input_service")
    if service:
        cores = [w.get("cores") for w in service.get("per_worker") or []]
        each = f"x{cores[0]} cores" if cores and len(set(cores)) == 1 else ""
        text += f", service {service.get('workers')}{each}"
    return text


def measured_costs(results: Iterable[Mapping[str, Any]]) -> list[InputCost]:
    """One InputCost per input among the ok pipeline-mode results, in first-seen order."""
    runs: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        cost = run_cpu_cost(result)
        if cost is not None:
            runs.setdefault(input_label(result), []).append(cost)
    costs = []
    for label, found in runs.items():
        estimate = mean_estimate([cpu_s / images for cpu_s, images in found])
        mean = estimate.value
        low = None if estimate.se is None else max(0.0, estimate.low)  # never negative
        high = None if estimate.se is None else estimate.high
        costs.append(
            InputCost(
                input=label,
                cpu_s_per_image=mean,
                low=low,
                high=high,
                runs=len(found),
                images=round(sum(images for _, images in found)),
                source="measured (pipeline mode)",
            )
        )
    return costs


def reference_costs() -> list[InputCost]:
    costs = []
    for item in reference_rates.COST:
        low, high = item.cpu_s_per_image_range
        costs.append(
            InputCost(
                input=item.name,
                cpu_s_per_image=item.cpu_s_per_image,
                low=low if low != high else None,
                high=high if low != high else None,
                runs=0,
                images=0,
                source=reference_rates.SOURCE,
            )
        )
    return costs


def synthetic_demands(results: Iterable[Mapping[str, Any]]) -> list[Demand]:
    """Per synthetic cell (model, precision, batch, device): median images/s per GPU."""
    rates: dict[str, list[float]] = {}
    for result in results:
        cell = result.get("cell") or {}
        rate = (result.get("throughput") or {}).get("images_per_sec_per_gpu")
        if result.get("status") != "ok" or cell.get("mode") != "synthetic":
            continue
        if isinstance(rate, int | float) and rate > 0:
            name = (
                f"{cell.get('model')} {cell.get('precision')} b{cell.get('batch_per_gpu')} "
                f"{cell.get('image_size')} px on {cell.get('device')}"
            )
            rates.setdefault(name, []).append(float(rate))
    return [
        Demand(name, statistics.median(values), "this sweep's synthetic cell")
        for name, values in rates.items()
    ]


def sweep_demands(sweep_yaml: str | None) -> list[Demand]:
    """The sweep file's `demand:` map ({name: images/s per GPU}); DemandError if bad."""
    if not sweep_yaml:
        return []
    document = yaml.safe_load(sweep_yaml) or {}
    declared = document.get("demand") if isinstance(document, Mapping) else None
    if declared is None:
        return []
    return parse_demand(declared)


def parse_demand(declared: Any) -> list[Demand]:
    if not isinstance(declared, Mapping):
        raise DemandError(f"demand: must map names to images/s per GPU, got {declared!r}")
    demands = []
    for name, rate in declared.items():
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise DemandError(f"demand: {name!r}: must be a positive images/s, got {rate!r}")
        demands.append(Demand(str(name), float(rate), "declared in the sweep file"))
    return demands


def reference_demands(*, headline: bool = False) -> list[Demand]:
    """The shipped H100 rates; with `headline`, only the slowest and fastest per model."""
    return [
        Demand(item.name, item.images_per_sec_per_gpu, reference_rates.SOURCE)
        for item in reference_rates.DEMAND
        if not headline or item.name in reference_rates.HEADLINE
    ]


def host_cores_per_gpu(results: Iterable[Mapping[str, Any]]) -> float | None:
    """The fewest CPU cores per rank (GPU) of any host in the ok results, or None."""
    found = []
    for result in results:
        environment = result.get("environment") or {}
        per_host = environment.get("cpu_count_per_host") or {}
        ranks = environment.get("ranks_per_host") or {}
        for host, cores in per_host.items():
            if isinstance(cores, int) and ranks.get(host):
                found.append(cores / ranks[host])
    return min(found) if found else None


def service_worker_cores(results: Iterable[Mapping[str, Any]]) -> float | None:
    """The cores of one input-service worker, where results recorded a pool, else None."""
    for result in results:
        for worker in (result.get("input_service") or {}).get("per_worker") or []:
            cores = worker.get("cores")
            if isinstance(cores, int | float) and cores > 0:
                return float(cores)
    return None


def capacity_rows(
    costs: Sequence[InputCost],
    demands: Sequence[Demand],
    *,
    host_cores_per_gpu: float | None,
    worker_cores: float | None,
) -> list[CapacityRow]:
    """Every input cost against every demand."""
    rows = []
    for cost in costs:
        for demand in demands:
            rate = demand.images_per_sec_per_gpu
            cores = cores_per_gpu(cost.cpu_s_per_image, rate)
            rows.append(
                CapacityRow(
                    cost=cost,
                    demand=demand,
                    cores_per_gpu=cores,
                    cores_low=None if cost.low is None else cores_per_gpu(cost.low, rate),
                    cores_high=None if cost.high is None else cores_per_gpu(cost.high, rate),
                    service_workers=None
                    if worker_cores is None
                    else service_workers(cores, worker_cores),
                    gpu_time_lost=None
                    if host_cores_per_gpu is None
                    else gpu_time_lost(cost.cpu_s_per_image, rate, host_cores_per_gpu),
                )
            )
    return rows
