"""The GPU sampler against a fake NVML module (pynvml's names), the host sampler, and the
real NVML where a GPU exists (skipped here)."""

from __future__ import annotations

import subprocess
import sys
import time

import fake_nvml
import pytest

from bench.job import telemetry
from bench.job.telemetry import GPM_METRICS, HostSampler, NvmlSampler, Telemetry


def _run(sampler: NvmlSampler, seconds: float) -> dict:
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    return sampler.samples()


def test_values_flow_period_honoured_and_stop_joins() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(gpm=False), fake_nvml.FakeGpu(gpm=False)])
    sampler = NvmlSampler(period_s=0.05, nvml=fake_nvml, host="node-a")
    began = time.time()
    samples = _run(sampler, 0.5)
    assert sampler._thread is not None and not sampler._thread.is_alive()
    assert sampler.unavailable is None
    assert samples["period_s"] == 0.05
    assert [device["index"] for device in samples["devices"]] == [0, 1]
    first = samples["devices"][0]
    assert first["host"] == "node-a" and first["name"] == "NVIDIA H100 80GB HBM3"
    assert first["uuid"].startswith("GPU-")
    # About 10 samples in 0.5 s at 20 Hz: the period is honoured roughly, not a busy loop.
    assert 5 <= len(first["t_s"]) <= 13
    assert all(began <= t <= time.time() for t in first["t_s"])
    assert first["t_s"] == sorted(first["t_s"])
    assert set(first["utilization_pct"]) == {90.0}
    assert set(samples["devices"][1]["utilization_pct"]) == {91.0}
    assert set(first["power_w"]) == {350.0}  # NVML reports milliwatts
    assert set(first["memory_used_bytes"]) == {20 * 1024**3}
    assert set(first["sm_clock_mhz"]) == {1980.0}
    assert first["gpm"] is None
    assert fake_nvml.calls["nvmlShutdown"] == 1
    assert "nvmlGpmSampleAlloc" not in fake_nvml.calls
    # Nothing more is sampled after stop().
    count = len(first["t_s"])
    time.sleep(0.15)
    assert len(sampler.samples()["devices"][0]["t_s"]) == count


def test_gpm_metrics_between_consecutive_samples() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(gpm=True)])
    sampler = NvmlSampler(period_s=0.05, nvml=fake_nvml)
    device = _run(sampler, 0.3)["devices"][0]
    gpm = device["gpm"]
    assert gpm is not None and len(gpm["t_s"]) == len(device["t_s"]) >= 3
    assert set(gpm["sm_active_pct"]) == {92.0}
    assert set(gpm["sm_occupancy_pct"]) == {55.0}
    assert set(gpm["tensor_active_pct"]) == {12.0}
    assert set(gpm["dram_bw_pct"]) == {40.0}
    assert device["errors"] == []
    state = fake_nvml.state()
    assert state.samples_allocated == 2 and state.samples_freed == 2


def test_nvml_error_mid_run_is_recorded_as_missing_not_zero() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(gpm=False)], fail_after_samples=3)
    sampler = NvmlSampler(period_s=0.03, nvml=fake_nvml)
    device = _run(sampler, 0.3)["devices"][0]
    utilization = device["utilization_pct"]
    assert utilization[:3] == [90.0, 90.0, 90.0]
    assert len(utilization) > 4 and all(value is None for value in utilization[3:])
    assert 0 not in utilization
    # The other queries kept working.
    assert None not in device["power_w"]
    assert device["error_count"] == len(utilization) - 3
    assert device["errors"][0]["query"] == "utilization_pct"
    assert "GpuIsLost" in device["errors"][0]["error"]


def test_library_missing_gives_a_reason_and_no_samples() -> None:
    fake_nvml.configure(library_missing=True)
    sampler = NvmlSampler(nvml=fake_nvml)
    sampler.start()
    sampler.stop()
    assert sampler.samples() is None
    assert "NVMLError_LibraryNotFound" in sampler.unavailable
    assert telemetry.nvml_inventory(fake_nvml)["available"] is False


def test_real_pynvml_without_gpu_says_why() -> None:
    """On this CPU machine the real library is absent: null GPU telemetry with the reason."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("NVML works here: covered by the gpu test")
    except pynvml.NVMLError:
        pass
    sampler = NvmlSampler()
    with Telemetry(enabled=True, period_s=0.05, gpu_sampler=sampler) as running:
        time.sleep(0.2)
    node = running.node_samples()
    assert node["gpu"] is None and "NVML" in node["gpu_unavailable"]
    section = telemetry.combine([node, None], period_s=0.05, measured_window_s=None)
    assert section["gpu"] is None and "NVML" in section["gpu_unavailable"]
    assert section["host"][0]["cpu_pct"]


def test_host_sampler_and_summary_cut_to_the_window() -> None:
    fake_nvml.configure(gpus=[fake_nvml.FakeGpu(gpm=True)])
    with Telemetry(
        enabled=True, period_s=0.05, gpu_sampler=NvmlSampler(period_s=0.05, nvml=fake_nvml)
    ) as running:
        time.sleep(0.2)
        window_start = time.time()
        time.sleep(0.3)
        window_end = time.time()
        time.sleep(0.1)
    node = running.node_samples()
    host = node["host"]
    assert len(host["t_s"]) == len(host["cpu_pct"]) == len(host["memory_used_bytes"]) >= 5
    assert all(0.0 <= value <= 100.0 for value in host["cpu_pct"])
    section = telemetry.combine([node], period_s=0.05, measured_window_s=(window_start, window_end))
    assert section["gpu_unavailable"] is None
    assert section["measured_window_s"] == [window_start, window_end]
    summary = section["summary"]["gpus"][0]
    device = section["gpu"]["devices"][0]
    inside = [t for t in device["t_s"] if window_start <= t <= window_end]
    assert summary["utilization_pct"] == {"mean": 90.0, "max": 90.0, "samples": len(inside)}
    assert len(inside) < len(device["t_s"])  # warm-up and tail excluded
    assert summary["sm_active_pct"]["mean"] == 92.0


def test_disabled_telemetry_samples_nothing() -> None:
    fake_nvml.configure()
    with Telemetry(enabled=False, gpu_sampler=NvmlSampler(nvml=fake_nvml)) as running:
        pass
    assert running.node_samples() is None
    assert fake_nvml.calls == {}


def test_host_sampler_rejects_bad_period() -> None:
    with pytest.raises(ValueError, match="period_s"):
        HostSampler(period_s=0)
    assert set(GPM_METRICS) == {
        "sm_active_pct",
        "sm_occupancy_pct",
        "tensor_active_pct",
        "dram_bw_pct",
    }


def test_telemetry_imports_no_tensorflow(repo_root) -> None:
    code = (
        "import sys, bench.job.telemetry, bench.telemetry_check;"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [sys.executable, "-m", "bench.telemetry_check", "--seconds", "0.2"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    try:
        import pynvml

        pynvml.nvmlInit()
        has_gpu = True
    except Exception:
        has_gpu = False
    if not has_gpu:
        assert check.returncode == 1 and "NVML" in check.stderr


@pytest.mark.gpu
def test_real_nvml_samples_a_gpu() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as error:
        pytest.skip(f"no NVML here: {error}")
    sampler = NvmlSampler(period_s=0.1)
    samples = _run(sampler, 1.0)
    assert sampler.unavailable is None
    assert samples["devices"], "NVML answered but no GPU was sampled"
    for device in samples["devices"]:
        assert len(device["t_s"]) >= 5
        assert all(value is not None for value in device["memory_used_bytes"])
        assert all(value is not None and value > 0 for value in device["power_w"])
