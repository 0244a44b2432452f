"""GPU and host telemetry sampled in background threads while a benchmark runs.

Hardware sits behind a narrow interface (`GpuSampler`: start, stop, samples) with one real
implementation on NVML (`bench.job.nvml`); this module holds the host sampler, the
per-process `Telemetry` and the combination of every rank's samples into the result.

Imports only the standard library and psutil at module level (pynvml lazily), so that
`bench.telemetry_check` runs on a GPU node without TensorFlow.

One GPU sampler per rank: each rank samples the GPU it uses, opened by the UUID that
`bench.job.rank_gpus` resolved in that rank's own process, so every GPU of the job is sampled
on every node whatever each rank's CUDA_VISIBLE_DEVICES says; one host sampler per node
(local rank 0). `combine` keeps one entry per (host, uuid), with the ranks that used it.

Every timestamp is `time.time()` (seconds since the epoch) so that a report can cut the
warm-up out with the run's measured window, which is taken on the same clock. A value NVML
could not read is `None` with the error kept, never a zero.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from bench.job.nvml import DEFAULT_PERIOD_S, GPM_METRICS, GPU_SERIES, GpuSampler, NvmlSampler


class HostSampler:
    """System CPU use (percent of all cores) and memory used, in a background thread."""

    def __init__(self, *, period_s: float = DEFAULT_PERIOD_S, host: str | None = None) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.period_s = period_s
        self.host = host or socket.gethostname()
        self.t_s: list[float] = []
        self.cpu_pct: list[float] = []
        self.memory_used_bytes: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self._thread = threading.Thread(target=self._loop, name="host-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.t_s.append(time.time())
            self.cpu_pct.append(psutil.cpu_percent(interval=None))
            self.memory_used_bytes.append(int(psutil.virtual_memory().used))

    def samples(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "period_s": self.period_s,
            "cpu_count": os.cpu_count(),
            "memory_total_bytes": int(psutil.virtual_memory().total),
            "t_s": self.t_s,
            "cpu_pct": self.cpu_pct,
            "memory_used_bytes": self.memory_used_bytes,
        }


class Telemetry:
    """One process's samplers: its GPU sampler and, on one process per node
    (`host_sampling`), the host sampler. `enabled=False` samples nothing."""

    def __init__(
        self,
        *,
        enabled: bool,
        period_s: float = DEFAULT_PERIOD_S,
        gpu_sampler: GpuSampler | None = None,
        gpu_indices: Sequence[int] | None = None,
        gpu_uuids: Sequence[str] | None = None,
        host_sampling: bool = True,
        gpu_unavailable: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.host_sampling = host_sampling
        # Why this process samples no GPU although it should (its GPU was not resolved).
        self.gpu_unavailable = gpu_unavailable
        self.gpu: GpuSampler | None = None
        if gpu_unavailable is None:
            self.gpu = gpu_sampler or NvmlSampler(
                period_s=period_s, indices=gpu_indices, uuids=gpu_uuids
            )
        self.host = HostSampler(period_s=period_s)

    def __enter__(self) -> Telemetry:
        if self.enabled:
            if self.gpu is not None:
                self.gpu.start()
            if self.host_sampling:
                self.host.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            if self.gpu is not None:
                self.gpu.stop()
            if self.host_sampling:
                self.host.stop()

    def node_samples(self) -> dict[str, Any] | None:
        """This process's samples (None where it did not sample); the name is historical:
        with one GPU sampler per rank there is one such entry per rank."""
        if not self.enabled:
            return None
        return {
            "gpu": self.gpu.samples() if self.gpu is not None else None,
            "gpu_unavailable": self.gpu.unavailable
            if self.gpu is not None
            else self.gpu_unavailable,
            "host": self.host.samples() if self.host_sampling else None,
        }


def combine(
    nodes: Sequence[dict[str, Any] | None],
    *,
    period_s: float,
    measured_window_s: tuple[float, float] | None,
) -> dict[str, Any]:
    """The result's `telemetry` section from every node's `node_samples()`."""
    sampled = [node for node in nodes if node is not None]
    devices = _unique_devices(nodes)
    reasons = sorted({node["gpu_unavailable"] for node in sampled if node["gpu_unavailable"]})
    gpu = {"period_s": period_s, "devices": devices} if devices else None
    unavailable = None
    if gpu is None:
        unavailable = "; ".join(reasons) or "no process sampled the GPUs"
    elif reasons:  # some ranks sampled, others could not: keep both, say which
        unavailable = "on some ranks: " + "; ".join(reasons)
    hosts = [node["host"] for node in sampled if node["host"] is not None]
    return {
        "gpu": gpu,
        "gpu_unavailable": unavailable,
        "host": hosts or None,
        "measured_window_s": list(measured_window_s) if measured_window_s else None,
        "summary": summarise(devices, hosts, measured_window_s),
    }


def _unique_devices(nodes: Sequence[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One entry per (host, uuid), in rank order, with the ranks that sampled that GPU
    (`nodes` in rank order: two ranks on one GPU share it)."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for rank, node in enumerate(nodes):
        if node is None or not node["gpu"]:
            continue
        for device in node["gpu"]["devices"]:
            key = (device["host"], device["uuid"])
            if key not in by_key:
                by_key[key] = {**device, "ranks": []}
            by_key[key]["ranks"].append(rank)
    return list(by_key.values())


def summarise(
    devices: Sequence[dict[str, Any]],
    hosts: Sequence[dict[str, Any]],
    window: tuple[float, float] | None,
) -> dict[str, Any]:
    """Mean and max of each series inside the measured window (all samples without one)."""
    gpus = []
    for device in devices:
        entry: dict[str, Any] = {
            "host": device["host"],
            "index": device["index"],
            "uuid": device.get("uuid"),
            "name": device["name"],
        }
        for name in GPU_SERIES:
            entry[name] = _stats(device["t_s"], device[name], window)
        if device.get("gpm"):
            for name in GPM_METRICS:
                entry[name] = _stats(device["gpm"]["t_s"], device["gpm"][name], window)
        gpus.append(entry)
    host_entries = [
        {
            "host": host["host"],
            "cpu_pct": _stats(host["t_s"], host["cpu_pct"], window),
            "memory_used_bytes": _stats(host["t_s"], host["memory_used_bytes"], window),
        }
        for host in hosts
    ]
    return {"window": "measured" if window else "all samples", "gpus": gpus, "hosts": host_entries}


def _stats(
    times: Sequence[float], values: Sequence[float | None], window: tuple[float, float] | None
) -> dict[str, Any] | None:
    """{mean, max, samples} of the non-missing values in the window; None when none."""
    kept = [
        value
        for t, value in zip(times, values, strict=True)
        if value is not None and (window is None or window[0] <= t <= window[1])
    ]
    if not kept:
        return None
    return {"mean": statistics.fmean(kept), "max": max(kept), "samples": len(kept)}
