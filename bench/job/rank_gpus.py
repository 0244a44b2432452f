"""Which physical GPU a rank uses, by UUID and PCI bus id, whatever its CUDA_VISIBLE_DEVICES.

Telemetry runs one GPU sampler per rank, on the GPU that rank trains on (see
docs/run.md, "Telemetry"): every rank resolves its own GPU in its own process, because
only there is its view known. Launchers differ: `srun --gpus-per-task=1` gives each task
its own `CUDA_VISIBLE_DEVICES` (often "0" on every task where cgroups hide the other GPUs,
or "0", "1", ... where they do not), horovodrun/mpirun leave all GPUs visible and the
local rank picks one. The choice mirrors `bench.engine.pin_gpu`: one visible GPU is used;
of several, the local rank's.

An entry of `CUDA_VISIBLE_DEVICES` is an ordinal or a UUID (`GPU-...`). NVML numbers GPUs
in PCI bus order and CUDA does too under `CUDA_DEVICE_ORDER=PCI_BUS_ID`, which
`bench/__init__.py` sets unless the user chose otherwise; with another order an ordinal is
not resolved (the reason is kept) rather than guessed. MIG instances are not resolved.

Imports only the standard library (pynvml lazily, or the module passed in tests).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.job.telemetry import Telemetry


@dataclass(frozen=True)
class RankGpu:
    """A rank's GPU: its NVML index, UUID and PCI bus id, or why it is not known."""

    host: str
    rank: int
    local_rank: int
    cuda_visible_devices: str | None
    nvml_index: int | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    unresolved: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chosen_entry(visible: str | None, local_rank: int) -> tuple[str | None, str | None]:
    """The CUDA_VISIBLE_DEVICES entry the rank uses (None = ordinal `local_rank` of all
    GPUs), or a reason why it uses none."""
    if visible is None:
        return None, None
    entries = [part.strip() for part in visible.split(",") if part.strip()]
    if not entries:
        return None, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if len(entries) == 1:
        return entries[0], None
    if local_rank < len(entries):
        return entries[local_rank], None
    return None, f"local rank {local_rank} has no GPU in CUDA_VISIBLE_DEVICES={visible!r}"


def resolve(
    *,
    rank: int,
    local_rank: int,
    environ: Mapping[str, str] | None = None,
    nvml: ModuleType | None = None,
    host: str | None = None,
) -> RankGpu:
    """This rank's GPU as NVML knows it (in this process's view)."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    base = RankGpu(
        host=host or socket.gethostname(),
        rank=rank,
        local_rank=local_rank,
        cuda_visible_devices=visible,
    )
    entry, reason = chosen_entry(visible, local_rank)
    if reason:
        return _unresolved(base, reason)
    if entry is None:
        entry = str(local_rank)
    if entry.startswith("MIG-"):
        return _unresolved(base, f"MIG instance {entry} is not resolved to a GPU")
    order = environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    if entry.isdigit() and order != "PCI_BUS_ID":
        return _unresolved(
            base, f"CUDA_DEVICE_ORDER={order}: CUDA ordinal {entry} need not be NVML index {entry}"
        )
    try:
        nvml = nvml if nvml is not None else _load_nvml()
    except ImportError as error:
        return _unresolved(base, f"pynvml (nvidia-ml-py) is not installed: {error}")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        return _unresolved(base, f"NVML unavailable: {type(error).__name__}: {error}")
    try:
        if entry.isdigit():
            handle = nvml.nvmlDeviceGetHandleByIndex(int(entry))
        else:
            handle = nvml.nvmlDeviceGetHandleByUUID(entry)
        return RankGpu(
            host=base.host,
            rank=rank,
            local_rank=local_rank,
            cuda_visible_devices=visible,
            nvml_index=int(nvml.nvmlDeviceGetIndex(handle)),
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            pci_bus_id=_text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        )
    except nvml.NVMLError as error:
        return _unresolved(base, f"NVML has no GPU {entry!r}: {type(error).__name__}: {error}")
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _unresolved(base: RankGpu, reason: str) -> RankGpu:
    return RankGpu(
        host=base.host,
        rank=base.rank,
        local_rank=base.local_rank,
        cuda_visible_devices=base.cuda_visible_devices,
        unresolved=reason,
    )


def _load_nvml() -> ModuleType:
    import pynvml

    return pynvml


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def telemetry_for_rank(
    *,
    rank: int,
    local_rank: int,
    device: str,
    period_s: float,
    environ: Mapping[str, str] | None = None,
    nvml: ModuleType | None = None,
    host: str | None = None,
) -> Telemetry:
    """This rank's samplers: on GPU its own GPU by UUID (and the host on local rank 0);
    on CPU, as before, local rank 0 alone samples whatever GPUs NVML sees."""
    from bench.job.telemetry import NvmlSampler, Telemetry

    if device != "gpu":
        sampler = NvmlSampler(period_s=period_s, nvml=nvml, host=host)
        return Telemetry(enabled=local_rank == 0, period_s=period_s, gpu_sampler=sampler)
    gpu = resolve(rank=rank, local_rank=local_rank, environ=environ, nvml=nvml, host=host)
    if gpu.uuid is None:
        reason = f"rank {rank} on {gpu.host}: {gpu.unresolved}"
        return Telemetry(
            enabled=True, period_s=period_s, host_sampling=local_rank == 0, gpu_unavailable=reason
        )
    sampler = NvmlSampler(period_s=period_s, nvml=nvml, uuids=[gpu.uuid], host=gpu.host)
    return Telemetry(
        enabled=True, period_s=period_s, gpu_sampler=sampler, host_sampling=local_rank == 0
    )
