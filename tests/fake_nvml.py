"""A fake of the `pynvml` module (nvidia-ml-py) for CPU tests: same names, same shapes.

It stands in only for hardware we lack. Functions, constants, exception classes and return
objects mirror pynvml: `nvmlDeviceGetUtilizationRates(h).gpu`, `nvmlDeviceGetMemoryInfo(h)
.used/.total/.free`, power in milliwatts, `NVMLError` subclasses carrying `.value`, GPM
samples and `c_nvmlGpmMetricsGet_t` with `.metrics[i].metricId/.value/.nvmlReturn`.

Tests set the scene with `configure(...)`; every call is counted in `calls`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_GPM_METRIC_SM_UTIL = 2
NVML_GPM_METRIC_SM_OCCUPANCY = 3
NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
NVML_GPM_METRIC_DRAM_BW_UTIL = 10
NVML_GPM_METRIC_MAX = 477
NVML_GPM_METRICS_GET_VERSION = 1
NVML_GPM_SUPPORT_VERSION = 1

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Like pynvml: NVMLError(code) builds the subclass for that code."""

    _value_class: dict[int, type[NVMLError]] = {}  # noqa: RUF012  (filled below, as pynvml)

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._value_class.get(value, cls)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


def _error_class(name: str, code: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, code)

    def init(self: NVMLError, *args: Any) -> None:
        NVMLError.__init__(self, code)

    made = type(name, (NVMLError,), {"__new__": new, "__init__": init})
    NVMLError._value_class[code] = made
    return made


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NotFound = _error_class("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _error_class("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


# -- return shapes (pynvml returns ctypes structures with these fields) ----------------------
@dataclass
class c_nvmlUtilization_t:
    gpu: int = 0
    memory: int = 0


@dataclass
class c_nvmlMemory_t:
    total: int = 0
    free: int = 0
    used: int = 0


@dataclass
class nvmlPciInfo_t:
    busId: bytes = b""  # a char array in pynvml: bytes
    domain: int = 0
    bus: int = 0
    device: int = 0


@dataclass
class c_nvmlGpmSupport_t:
    version: int = NVML_GPM_SUPPORT_VERSION
    isSupportedDevice: int = 0


@dataclass
class c_nvmlGpmMetric_t:
    metricId: int = 0
    nvmlReturn: int = NVML_SUCCESS
    value: float = 0.0


@dataclass
class c_nvmlGpmMetricsGet_t:
    version: int = 0
    numMetrics: int = 0
    sample1: Any = None
    sample2: Any = None
    metrics: list[c_nvmlGpmMetric_t] = field(
        default_factory=lambda: [c_nvmlGpmMetric_t() for _ in range(NVML_GPM_METRIC_MAX)]
    )


@dataclass
class c_nvmlGpmSample_t:
    """Opaque in pynvml; here it remembers which device and tick it was taken at."""

    device: int | None = None
    tick: int | None = None
    freed: bool = False


@dataclass
class c_nvmlDevice_t:
    index: int


# -- the scene a test sets --------------------------------------------------------------
@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 80 * 1024**3
    gpm: bool = True
    uuid: str | None = None  # default: GPU-00000000-0000-0000-0000-<index>


@dataclass
class _State:
    gpus: list[FakeGpu] = field(default_factory=list)
    library_missing: bool = False
    fail_after_samples: int | None = None  # utilization queries succeed this many times
    # NVML counts nvmlInit calls; nvmlShutdown releases the library only at zero.
    init_count: int = 0

    calls: dict[str, int] = field(default_factory=dict)
    utilization_calls: int = 0
    ticks: itertools.count = field(default_factory=itertools.count)
    samples_allocated: int = 0
    samples_freed: int = 0

    @property
    def initialised(self) -> bool:
        return self.init_count > 0


_state = _State()
calls = _state.calls


def configure(
    *,
    gpus: list[FakeGpu] | None = None,
    library_missing: bool = False,
    fail_after_samples: int | None = None,
) -> None:
    """Reset the fake: these GPUs, or no library; optionally fail utilization after N reads."""
    global _state, calls
    _state = _State(
        gpus=list(gpus if gpus is not None else [FakeGpu()]),
        library_missing=library_missing,
        fail_after_samples=fail_after_samples,
    )
    calls = _state.calls


def state() -> _State:
    return _state


def _count(name: str) -> None:
    _state.calls[name] = _state.calls.get(name, 0) + 1


def _device(handle: c_nvmlDevice_t) -> FakeGpu:
    if not _state.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return _state.gpus[handle.index]


# -- the pynvml functions the harness calls -------------------------------------------------
def nvmlInit() -> None:
    _count("nvmlInit")
    if _state.library_missing:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    _state.init_count += 1


def nvmlShutdown() -> None:
    _count("nvmlShutdown")
    if not _state.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    _state.init_count -= 1


def nvmlSystemGetDriverVersion() -> str:
    _count("nvmlSystemGetDriverVersion")
    return "550.54.15"


def nvmlSystemGetCudaDriverVersion() -> int:
    _count("nvmlSystemGetCudaDriverVersion")
    return 12040


def nvmlDeviceGetCount() -> int:
    _count("nvmlDeviceGetCount")
    if not _state.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return len(_state.gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> c_nvmlDevice_t:
    _count("nvmlDeviceGetHandleByIndex")
    if not 0 <= index < len(_state.gpus):
        raise NVMLError(NVML_ERROR_UNKNOWN)
    return c_nvmlDevice_t(index)


def nvmlDeviceGetHandleByUUID(uuid: str | bytes) -> c_nvmlDevice_t:
    """pynvml accepts str or bytes (its convertStrBytes decorator)."""
    _count("nvmlDeviceGetHandleByUUID")
    if not _state.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    text = uuid.decode() if isinstance(uuid, bytes) else uuid
    for index in range(len(_state.gpus)):
        if _uuid(index) == text:
            return c_nvmlDevice_t(index)
    raise NVMLError(NVML_ERROR_NOT_FOUND)


def nvmlDeviceGetIndex(handle: c_nvmlDevice_t) -> int:
    _count("nvmlDeviceGetIndex")
    _device(handle)
    return handle.index


def nvmlDeviceGetPciInfo(handle: c_nvmlDevice_t) -> nvmlPciInfo_t:
    _count("nvmlDeviceGetPciInfo")
    _device(handle)
    bus = 0x18 + handle.index
    return nvmlPciInfo_t(busId=f"00000000:{bus:02X}:00.0".encode(), bus=bus)


def _uuid(index: int) -> str:
    return _state.gpus[index].uuid or f"GPU-00000000-0000-0000-0000-{index:012d}"


def nvmlDeviceGetName(handle: c_nvmlDevice_t) -> str:
    _count("nvmlDeviceGetName")
    return _device(handle).name


def nvmlDeviceGetUUID(handle: c_nvmlDevice_t) -> str:
    _count("nvmlDeviceGetUUID")
    _device(handle)
    return _uuid(handle.index)


def nvmlDeviceGetUtilizationRates(handle: c_nvmlDevice_t) -> c_nvmlUtilization_t:
    _count("nvmlDeviceGetUtilizationRates")
    _device(handle)
    _state.utilization_calls += 1
    limit = _state.fail_after_samples
    if limit is not None and _state.utilization_calls > limit:
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    return c_nvmlUtilization_t(gpu=90 + handle.index, memory=40)


def nvmlDeviceGetMemoryInfo(handle: c_nvmlDevice_t, version: int | None = None) -> c_nvmlMemory_t:
    _count("nvmlDeviceGetMemoryInfo")
    gpu = _device(handle)
    used = gpu.memory_total // 4
    return c_nvmlMemory_t(total=gpu.memory_total, free=gpu.memory_total - used, used=used)


def nvmlDeviceGetPowerUsage(handle: c_nvmlDevice_t) -> int:
    _count("nvmlDeviceGetPowerUsage")
    _device(handle)
    return 350_000 + 1000 * handle.index  # milliwatts, as NVML


def nvmlDeviceGetClockInfo(handle: c_nvmlDevice_t, type: int) -> int:
    _count("nvmlDeviceGetClockInfo")
    _device(handle)
    if type != NVML_CLOCK_SM:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return 1980


def nvmlGpmQueryDeviceSupport(handle: c_nvmlDevice_t) -> c_nvmlGpmSupport_t:
    _count("nvmlGpmQueryDeviceSupport")
    return c_nvmlGpmSupport_t(isSupportedDevice=int(_device(handle).gpm))


def nvmlGpmSampleAlloc() -> c_nvmlGpmSample_t:
    _count("nvmlGpmSampleAlloc")
    _state.samples_allocated += 1
    return c_nvmlGpmSample_t()


def nvmlGpmSampleFree(sample: c_nvmlGpmSample_t) -> None:
    _count("nvmlGpmSampleFree")
    sample.freed = True
    _state.samples_freed += 1


def nvmlGpmSampleGet(handle: c_nvmlDevice_t, sample: c_nvmlGpmSample_t) -> c_nvmlGpmSample_t:
    _count("nvmlGpmSampleGet")
    if not _device(handle).gpm:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    sample.device = handle.index
    sample.tick = next(_state.ticks)
    return sample


# Fixed GPM readings, as an H100 under ResNet50 bf16 showed (see issue 5).
GPM_VALUES = {
    NVML_GPM_METRIC_SM_UTIL: 92.0,
    NVML_GPM_METRIC_SM_OCCUPANCY: 55.0,
    NVML_GPM_METRIC_ANY_TENSOR_UTIL: 12.0,
    NVML_GPM_METRIC_DRAM_BW_UTIL: 40.0,
}


def nvmlGpmMetricsGet(request: c_nvmlGpmMetricsGet_t) -> c_nvmlGpmMetricsGet_t:
    _count("nvmlGpmMetricsGet")
    if request.version != NVML_GPM_METRICS_GET_VERSION:
        raise NVMLError(NVML_ERROR_UNKNOWN)
    first, second = request.sample1, request.sample2
    if first is None or second is None or first.tick is None or second.tick is None:
        raise NVMLError(NVML_ERROR_UNKNOWN)
    if first.tick >= second.tick or first.device != second.device:
        raise NVMLError(NVML_ERROR_UNKNOWN)  # NVML needs an older then a newer sample
    for metric in request.metrics[: request.numMetrics]:
        if metric.metricId in GPM_VALUES:
            metric.value, metric.nvmlReturn = GPM_VALUES[metric.metricId], NVML_SUCCESS
        else:
            metric.value, metric.nvmlReturn = 0.0, NVML_ERROR_NOT_SUPPORTED
    return request
