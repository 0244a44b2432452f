"""Every GPU of a job sampled: one sampler per rank on the GPU that rank uses, found by UUID
from its own CUDA_VISIBLE_DEVICES, against the NVML fake (pynvml's interface)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import fake_nvml
import pytest

from bench.job import telemetry
from bench.job.rank_gpus import chosen_entry, resolve, telemetry_for_rank

PCI = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
UUID_A = "GPU-aaaaaaaa-0000-0000-0000-000000000001"
UUID_B = "GPU-bbbbbbbb-0000-0000-0000-000000000002"


def _second_fake() -> ModuleType:
    """Another instance of the fake: another process's own NVML view."""
    path = Path(fake_nvml.__file__)
    spec = importlib.util.spec_from_file_location("fake_nvml_other_process", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def _run_ranks(ranks: list[dict], seconds: float = 0.4) -> dict:
    """Start every rank's telemetry at once (as the job does), stop, combine in rank order."""
    made = [
        telemetry_for_rank(
            rank=rank,
            local_rank=spec["local_rank"],
            device="gpu",
            period_s=0.05,
            environ=spec["environ"],
            nvml=spec["nvml"],
            host=spec["host"],
        )
        for rank, spec in enumerate(ranks)
    ]
    for sampling in made:
        sampling.__enter__()
    time.sleep(seconds)
    for sampling in made:
        sampling.__exit__(None, None, None)
    nodes = [sampling.node_samples() for sampling in made]
    return telemetry.combine(nodes, period_s=0.05, measured_window_s=None)


def _by_key(result: dict) -> dict[tuple[str, str], dict]:
    return {(device["host"], device["uuid"]): device for device in result["gpu"]["devices"]}


def test_two_ranks_with_their_own_visible_device_both_gpus_sampled() -> None:
    # srun --gpus-per-task=1 without device cgroups: rank 0 sees "0", rank 1 sees "1".
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(uuid=UUID_A), fake_nvml.FakeGpu(uuid=UUID_B)])
    result = _run_ranks(
        [
            {
                "local_rank": 0,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": fake_nvml,
                "host": "n1",
            },
            {
                "local_rank": 1,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "1"},
                "nvml": fake_nvml,
                "host": "n1",
            },
        ]
    )
    devices = _by_key(result)
    assert set(devices) == {("n1", UUID_A), ("n1", UUID_B)}
    assert devices[("n1", UUID_A)]["ranks"] == [0] and devices[("n1", UUID_B)]["ranks"] == [1]
    assert devices[("n1", UUID_A)]["pci_bus_id"] == "00000000:18:00.0"
    assert devices[("n1", UUID_B)]["pci_bus_id"] == "00000000:19:00.0"
    for device in devices.values():
        assert len(device["t_s"]) >= 3 and None not in device["utilization_pct"]
    # GPU 1 reads 91 %, GPU 0 90 %: each entry holds its own GPU's samples.
    assert set(devices[("n1", UUID_B)]["utilization_pct"]) == {91.0}
    assert set(devices[("n1", UUID_A)]["utilization_pct"]) == {90.0}
    assert result["gpu_unavailable"] is None
    # One host sampler per node (local rank 0), and the summary names each GPU's UUID.
    assert [host["host"] for host in result["host"]] == [result["host"][0]["host"]]
    assert {gpu["uuid"] for gpu in result["summary"]["gpus"]} == {UUID_A, UUID_B}


def test_ranks_that_each_see_only_device_0_are_told_apart_by_uuid() -> None:
    # Device cgroups: each task's NVML sees only its own GPU and its CUDA_VISIBLE_DEVICES is
    # "0" on both; sampling "index 0 of local rank 0" would miss rank 1's GPU.
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(uuid=UUID_A)])
    other = _second_fake()
    other.configure(gpus=[other.FakeGpu(uuid=UUID_B)])
    result = _run_ranks(
        [
            {
                "local_rank": 0,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": fake_nvml,
                "host": "n1",
            },
            {
                "local_rank": 1,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": other,
                "host": "n1",
            },
        ]
    )
    assert set(_by_key(result)) == {("n1", UUID_A), ("n1", UUID_B)}


def test_all_gpus_visible_local_rank_picks_and_uuids_in_the_variable() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(uuid=UUID_A), fake_nvml.FakeGpu(uuid=UUID_B)])
    # horovodrun/mpirun: nothing set, the local rank picks; or UUIDs listed.
    assert resolve(rank=1, local_rank=1, environ=PCI, nvml=fake_nvml).uuid == UUID_B
    listed = {**PCI, "CUDA_VISIBLE_DEVICES": f"{UUID_B},{UUID_A}"}
    assert resolve(rank=0, local_rank=0, environ=listed, nvml=fake_nvml).uuid == UUID_B
    assert resolve(rank=1, local_rank=1, environ=listed, nvml=fake_nvml).nvml_index == 0


def test_two_ranks_on_one_gpu_and_two_nodes_are_keyed_by_host_and_uuid() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(uuid=UUID_A)])
    other = _second_fake()
    other.configure(gpus=[other.FakeGpu(uuid=UUID_A)])  # same UUID text, another node
    result = _run_ranks(
        [
            {
                "local_rank": 0,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": fake_nvml,
                "host": "n1",
            },
            {
                "local_rank": 1,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": fake_nvml,
                "host": "n1",
            },
            {
                "local_rank": 0,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": other,
                "host": "n2",
            },
        ]
    )
    devices = _by_key(result)
    assert set(devices) == {("n1", UUID_A), ("n2", UUID_A)}
    assert devices[("n1", UUID_A)]["ranks"] == [0, 1] and devices[("n2", UUID_A)]["ranks"] == [2]


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"CUDA_VISIBLE_DEVICES": "0"}, "CUDA_DEVICE_ORDER=FASTEST_FIRST"),
        ({**PCI, "CUDA_VISIBLE_DEVICES": ""}, "hides every GPU"),
        ({**PCI, "CUDA_VISIBLE_DEVICES": "0,1"}, None),
        ({**PCI, "CUDA_VISIBLE_DEVICES": "MIG-1234"}, "MIG instance"),
        ({**PCI, "CUDA_VISIBLE_DEVICES": "GPU-nope"}, "NVML has no GPU 'GPU-nope'"),
        ({**PCI, "CUDA_VISIBLE_DEVICES": "7"}, "NVML has no GPU '7'"),
    ],
)
def test_unresolved_gpus_say_why(environ: dict, reason: str | None) -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(), fake_nvml.FakeGpu()])
    gpu = resolve(rank=0, local_rank=0, environ=environ, nvml=fake_nvml)
    if reason is None:
        assert gpu.unresolved is None and gpu.nvml_index == 0
    else:
        assert gpu.uuid is None and reason in (gpu.unresolved or "")
    assert not fake_nvml.state().initialised  # NVML shut down again after resolving


def test_a_rank_whose_gpu_is_unknown_is_reported_missing_not_dropped() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(uuid=UUID_A)])
    result = _run_ranks(
        [
            {
                "local_rank": 0,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": fake_nvml,
                "host": "n1",
            },
            {
                "local_rank": 1,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "3"},
                "nvml": fake_nvml,
                "host": "n1",
            },
        ]
    )
    assert set(_by_key(result)) == {("n1", UUID_A)}
    assert "on some ranks" in result["gpu_unavailable"]
    assert "rank 1 on n1" in result["gpu_unavailable"]


def test_chosen_entry_mirrors_pin_gpu() -> None:
    assert chosen_entry(None, 3) == (None, None)
    assert chosen_entry("5", 3) == ("5", None)
    assert chosen_entry("4,5", 1) == ("5", None)
    assert chosen_entry("4,5", 2)[1] is not None


def test_no_thread_left_running() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(uuid=UUID_A)])
    _run_ranks(
        [
            {
                "local_rank": 0,
                "environ": {**PCI, "CUDA_VISIBLE_DEVICES": "0"},
                "nvml": fake_nvml,
                "host": "n1",
            }
        ],
        seconds=0.1,
    )
    assert not [t for t in threading.enumerate() if t.name in ("nvml-sampler", "host-sampler")]
