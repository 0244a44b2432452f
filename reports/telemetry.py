"""GPU telemetry from result files: samples inside the measured window, per cell.

Warm-up is cut out with `telemetry.measured_window_s` (same clock as the samples' `t_s`).
A run without GPU samples yields its `gpu_unavailable` reason instead of numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

GIB = 2**30


@dataclass(frozen=True)
class GpuStats:
    """Utilization, power and memory over the measured window of one cell's runs."""

    devices: int
    samples: int
    utilization_mean_pct: float | None
    utilization_p10_pct: float | None
    power_mean_w: float | None
    memory_peak_gib: float | None
    windowed: bool  # False: the runs recorded no window, so warm-up samples are included


@dataclass(frozen=True)
class DeviceSeries:
    """One GPU's utilization over time, for plotting."""

    label: str
    t_s: tuple[float, ...]
    utilization_pct: tuple[float, ...]


def cell_gpu_stats(results: Iterable[dict[str, Any]]) -> GpuStats | str:
    """Stats pooled over every GPU and repeat, or the reason there are none."""
    utilization: list[float] = []
    power: list[float] = []
    memory: list[float] = []
    devices = 0
    windowed = True
    reasons: list[str] = []
    for result in results:
        telemetry = result.get("telemetry") or {}
        gpu = telemetry.get("gpu")
        if not gpu or not gpu.get("devices"):
            reasons.append(telemetry.get("gpu_unavailable") or "no GPU samples recorded")
            continue
        window = telemetry.get("measured_window_s")
        windowed = windowed and window is not None
        devices = max(devices, len(gpu["devices"]))
        for device in gpu["devices"]:
            keep = _in_window(device.get("t_s") or [], window)
            utilization += _pick(device.get("utilization_pct"), keep)
            power += _pick(device.get("power_w"), keep)
            memory += _pick(device.get("memory_used_bytes"), keep)
    if not devices:
        return "; ".join(sorted(set(reasons))) or "no runs"
    return GpuStats(
        devices=devices,
        samples=len(utilization),
        utilization_mean_pct=_mean(utilization),
        utilization_p10_pct=float(np.percentile(utilization, 10)) if utilization else None,
        power_mean_w=_mean(power),
        memory_peak_gib=max(memory) / GIB if memory else None,
        windowed=windowed,
    )


def run_series(result: dict[str, Any]) -> tuple[list[DeviceSeries], tuple[float, float] | None]:
    """Each GPU's utilization samples of one run and its measured window (None: unknown)."""
    telemetry = result.get("telemetry") or {}
    devices = (telemetry.get("gpu") or {}).get("devices") or []
    # Samples carry wall-clock (epoch) times: plot seconds since the first sample.
    starts = [device["t_s"][0] for device in devices if device.get("t_s")]
    origin = min(starts) if starts else 0.0
    series = [
        DeviceSeries(
            label=f"{device.get('host', '?')} GPU {device.get('index', '?')}",
            t_s=tuple(t - origin for t in device.get("t_s") or ()),
            utilization_pct=tuple(_none_to_nan(device.get("utilization_pct") or ())),
        )
        for device in devices
    ]
    window = telemetry.get("measured_window_s")
    if not window:
        return series, None
    return series, (float(window[0]) - origin, float(window[1]) - origin)


def cell_host_cpu_pct(results: Iterable[dict[str, Any]]) -> float | None:
    """Mean host CPU use (percent of all cores) inside the measured windows, or None."""
    samples: list[float] = []
    for result in results:
        telemetry = result.get("telemetry") or {}
        window = telemetry.get("measured_window_s")
        found: list[float] = []
        for host in telemetry.get("host") or []:
            if isinstance(host, dict):
                keep = _in_window(host.get("t_s") or [], window)
                found += _pick(host.get("cpu_pct"), keep)
        # A pipeline probe can be shorter than one sampling period; it measures its own.
        samples += found or _probe_cpu_pct(result.get("details") or {})
    return _mean(samples)


def _probe_cpu_pct(details: dict[str, Any]) -> list[float]:
    probes = details.get("probe")
    probes = probes if isinstance(probes, list) else [probes] if isinstance(probes, dict) else []
    return [
        float(p["host_cpu_pct"])
        for p in probes
        if isinstance(p, dict) and isinstance(p.get("host_cpu_pct"), int | float)
    ]


def _in_window(times: list[float], window: list[float] | None) -> list[bool]:
    if window is None:
        return [True] * len(times)
    start, end = window
    return [start <= t <= end for t in times]


def _pick(values: list[float | None] | None, keep: list[bool]) -> list[float]:
    """The kept samples; a null sample (NVML read failed) is left out, not counted as 0."""
    if not values:
        return []
    return [float(v) for v, k in zip(values, keep, strict=False) if k and v is not None]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _none_to_nan(values: Iterable[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]
