"""GPU and host telemetry sampled in background threads while a benchmark runs.

Hardware sits behind a narrow interface (`GpuSampler`: start, stop, samples) with one real
implementation on NVML (`NvmlSampler`). The sampler takes the NVML module as a parameter so
that CPU tests pass a fake module with pynvml's names (tests/fake_nvml.py).

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

import contextlib
import importlib
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import psutil

DEFAULT_PERIOD_S = 0.5
MAX_ERRORS_KEPT = 20

# GPM metric name in the result -> pynvml constant name (Hopper and later).
GPM_METRICS = {
    "sm_active_pct": "NVML_GPM_METRIC_SM_UTIL",
    "sm_occupancy_pct": "NVML_GPM_METRIC_SM_OCCUPANCY",
    "tensor_active_pct": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
    "dram_bw_pct": "NVML_GPM_METRIC_DRAM_BW_UTIL",
}
GPU_SERIES = ("utilization_pct", "memory_used_bytes", "power_w", "sm_clock_mhz")


class GpuSampler(Protocol):
    """Samples the GPUs in a background thread between start() and stop()."""

    unavailable: str | None  # why there are no samples; None when sampling works

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def samples(self) -> dict[str, Any] | None: ...


def load_nvml() -> ModuleType:
    """The real pynvml module (from nvidia-ml-py)."""
    return importlib.import_module("pynvml")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass
class _Device:
    """One GPU's handle and its series, filled by the sampling thread."""

    index: int
    handle: Any
    name: str
    uuid: str
    pci_bus_id: str | None
    memory_total_bytes: int | None
    gpm_supported: bool
    t_s: list[float] = field(default_factory=list)
    series: dict[str, list[float | None]] = field(
        default_factory=lambda: {name: [] for name in GPU_SERIES}
    )
    gpm_t_s: list[float] = field(default_factory=list)
    gpm: dict[str, list[float | None]] = field(
        default_factory=lambda: {name: [] for name in GPM_METRICS}
    )
    gpm_previous: Any = None
    gpm_spare: Any = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0

    def to_dict(self, host: str) -> dict[str, Any]:
        gpm = None
        if self.gpm_supported:
            gpm = {
                "t_s": self.gpm_t_s,
                **self.gpm,
                "note": "each value covers the interval ending at t_s",
            }
        return {
            "host": host,
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id,
            "memory_total_bytes": self.memory_total_bytes,
            "t_s": self.t_s,
            **self.series,
            "gpm": gpm,
            "errors": self.errors,
            "error_count": self.error_count,
        }


class NvmlSampler:
    """A `GpuSampler` on NVML: utilization, memory used, power, SM clock, and GPM metrics.

    `nvml` is the pynvml module (default: import it); `uuids` the GPUs to sample by UUID,
    else `indices` by NVML index (default: every GPU NVML sees). If NVML cannot start or
    open them, `unavailable` says why and `samples()` returns None.
    """

    def __init__(
        self,
        *,
        period_s: float = DEFAULT_PERIOD_S,
        nvml: ModuleType | None = None,
        indices: Sequence[int] | None = None,
        uuids: Sequence[str] | None = None,
        use_gpm: bool = True,
        host: str | None = None,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.period_s = period_s
        self.unavailable: str | None = None
        self.host = host or socket.gethostname()
        self._nvml = nvml
        self._indices = None if indices is None else list(indices)
        self._uuids = None if uuids is None else list(uuids)
        self._use_gpm = use_gpm
        self._devices: list[_Device] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._initialised = False
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        if not self._open():
            return
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stopped_at = time.time()
        self._close()

    def samples(self) -> dict[str, Any] | None:
        if self.unavailable is not None or not self._devices:
            return None
        return {
            "period_s": self.period_s,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "devices": [device.to_dict(self.host) for device in self._devices],
        }

    # -- NVML ---------------------------------------------------------------------------
    def _open(self) -> bool:
        try:
            nvml = self._nvml if self._nvml is not None else load_nvml()
        except ImportError as error:
            self.unavailable = f"pynvml (nvidia-ml-py) is not installed: {error}"
            return False
        self._nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            self.unavailable = f"NVML unavailable: {_error_text(error)}"
            return False
        self._initialised = True
        if self._uuids is not None:
            return self._open_uuids()
        try:
            count = nvml.nvmlDeviceGetCount()
            indices = list(range(count)) if self._indices is None else self._indices
            self._devices = [
                self._open_device(nvml.nvmlDeviceGetHandleByIndex(index), index)
                for index in indices
                if index < count
            ]
        except nvml.NVMLError as error:
            self.unavailable = f"NVML could not open the GPUs: {_error_text(error)}"
            self._close()
            return False
        if not self._devices:
            self.unavailable = f"NVML sees {count} GPU(s), none of those requested {indices}"
            self._close()
            return False
        return True

    def _open_uuids(self) -> bool:
        nvml = self._nvml
        try:
            for uuid in self._uuids or []:
                handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
                self._devices.append(
                    self._open_device(handle, int(nvml.nvmlDeviceGetIndex(handle)))
                )
        except nvml.NVMLError as error:
            self.unavailable = f"NVML could not open GPU {uuid}: {_error_text(error)}"
            self._close()
            return False
        if not self._devices:
            self.unavailable = "no GPU to sample (no UUID given)"
            self._close()
            return False
        return True

    def _open_device(self, handle: Any, index: int) -> _Device:
        nvml = self._nvml
        try:
            memory_total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        except nvml.NVMLError:
            memory_total = None
        try:
            pci_bus_id: str | None = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
        except (nvml.NVMLError, AttributeError):
            pci_bus_id = None
        device = _Device(
            index=index,
            handle=handle,
            name=_text(nvml.nvmlDeviceGetName(handle)),
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            pci_bus_id=pci_bus_id,
            memory_total_bytes=memory_total,
            gpm_supported=self._use_gpm and self._gpm_supported(handle),
        )
        if device.gpm_supported:
            device.gpm_previous = nvml.nvmlGpmSampleAlloc()
            device.gpm_spare = nvml.nvmlGpmSampleAlloc()
            nvml.nvmlGpmSampleGet(handle, device.gpm_previous)
        return device

    def _gpm_supported(self, handle: Any) -> bool:
        nvml = self._nvml
        if not hasattr(nvml, "nvmlGpmQueryDeviceSupport"):
            return False
        try:
            return bool(nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
        except nvml.NVMLError:  # older driver or GPU: GPM is simply absent
            return False

    def _close(self) -> None:
        if not self._initialised:
            return
        nvml = self._nvml
        for device in self._devices:
            for sample in (device.gpm_previous, device.gpm_spare):
                if sample is not None:
                    with contextlib.suppress(nvml.NVMLError):
                        nvml.nvmlGpmSampleFree(sample)
            device.gpm_previous = device.gpm_spare = None
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
        self._initialised = False

    # -- the sampling thread ------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            began = time.monotonic()
            for device in self._devices:
                self._sample(device)
            if self._stop.wait(max(0.0, self.period_s - (time.monotonic() - began))):
                return

    def _sample(self, device: _Device) -> None:
        nvml = self._nvml
        handle = device.handle
        readers: dict[str, Callable[[], float]] = {
            "utilization_pct": lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            "memory_used_bytes": lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).used),
            "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # mW
            "sm_clock_mhz": lambda: float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
        }
        now = time.time()
        device.t_s.append(now)
        for name, read in readers.items():
            device.series[name].append(self._read(device, name, now, read))
        if device.gpm_supported:
            self._sample_gpm(device, now)

    def _read(self, device: _Device, what: str, now: float, read: Callable[[], float]) -> Any:
        try:
            return read()
        except self._nvml.NVMLError as error:
            self._record_error(device, what, now, error)
            return None

    def _record_error(self, device: _Device, what: str, now: float, error: Exception) -> None:
        device.error_count += 1
        if len(device.errors) < MAX_ERRORS_KEPT:
            device.errors.append({"t_s": now, "query": what, "error": _error_text(error)})

    def _sample_gpm(self, device: _Device, now: float) -> None:
        """GPM metrics over the interval since the previous GPM sample."""
        nvml = self._nvml
        try:
            nvml.nvmlGpmSampleGet(device.handle, device.gpm_spare)
            request = nvml.c_nvmlGpmMetricsGet_t()
            request.version = nvml.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(GPM_METRICS)
            request.sample1 = device.gpm_previous
            request.sample2 = device.gpm_spare
            for slot, constant in enumerate(GPM_METRICS.values()):
                request.metrics[slot].metricId = getattr(nvml, constant)
            nvml.nvmlGpmMetricsGet(request)
        except nvml.NVMLError as error:
            self._record_error(device, "gpm", now, error)
            return
        device.gpm_t_s.append(now)
        for slot, name in enumerate(GPM_METRICS):
            metric = request.metrics[slot]
            ok = int(metric.nvmlReturn) == nvml.NVML_SUCCESS
            device.gpm[name].append(float(metric.value) if ok else None)
        # The newer sample becomes the start of the next interval.
        device.gpm_previous, device.gpm_spare = device.gpm_spare, device.gpm_previous


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


def nvml_inventory(nvml: ModuleType | None = None) -> dict[str, Any]:
    """Driver, CUDA driver version and GPU names as NVML reports them, or why not."""
    try:
        nvml = nvml if nvml is not None else load_nvml()
    except ImportError as error:
        return {"available": False, "reason": f"pynvml (nvidia-ml-py) is not installed: {error}"}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        return {"available": False, "reason": f"NVML unavailable: {_error_text(error)}"}
    try:
        cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                {
                    "index": index,
                    "name": _text(nvml.nvmlDeviceGetName(handle)),
                    "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                    "gpm": _gpm_probe(nvml, handle),
                }
            )
        return {
            "available": True,
            "driver": _text(nvml.nvmlSystemGetDriverVersion()),
            "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
            "gpus": gpus,
        }
    except nvml.NVMLError as error:
        return {"available": False, "reason": f"NVML query failed: {_error_text(error)}"}
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _gpm_probe(nvml: ModuleType, handle: Any) -> bool:
    try:
        return bool(nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
    except (AttributeError, nvml.NVMLError):
        return False
