"""Capacity arithmetic (cores per GPU per format) against hand-computed cases."""

from __future__ import annotations

import math
from typing import Any

import pytest

from reports import capacity, reference_rates
from reports.capacity_report import TITLE, capacity_figure, capacity_inputs, capacity_table


def _pipeline_result(
    probes: list[tuple[float, float, int]],
    *,
    data_format: str = "raw",
    encoding: str = "png",
    worker_cpu_s: float | None = None,
    workers: int = 0,
    status: str = "ok",
) -> dict[str, Any]:
    """A pipeline-mode result: per rank (process CPU %, measured s, images)."""
    result: dict[str, Any] = {
        "status": status,
        "cell": {
            "mode": "pipeline",
            "data_format": data_format,
            "encoding": encoding,
            "pipeline": "tuned",
            "image_size": 224,
            "conversion": None,
        },
        "details": {
            "probe": [
                {"process_cpu_pct": pct, "measured_s": seconds, "images": images}
                for pct, seconds, images in probes
            ]
        },
        "environment": {"cpu_count_per_host": {"h": 8}, "ranks_per_host": {"h": 2}},
    }
    if workers:
        result["input_service"] = {
            "workers": workers,
            "worker_cpu_s": worker_cpu_s,
            "per_worker": [{"cores": 2}] * workers,
        }
    return result


def test_run_cost_adds_every_rank_and_the_service_workers() -> None:
    # rank 0: 150% of 2 s = 3 CPU s; rank 1: 50% of 2 s = 1 CPU s; workers: 2 CPU s.
    result = _pipeline_result([(150.0, 2.0, 300), (50.0, 2.0, 100)], worker_cpu_s=2.0, workers=2)
    assert capacity.run_cpu_cost(result) == pytest.approx((6.0, 400))
    assert capacity.measured_costs([result])[0].cpu_s_per_image == pytest.approx(0.015)
    assert capacity.input_label(result) == "raw/png tuned 224 px, service 2x2 cores"


def test_run_cost_counts_the_images_of_the_steady_rate_not_a_burst_made_before() -> None:
    # 20 batches of 64 delivered in 4 s, 2 of them made before the window (a burst):
    # stall to stall, 288 images/s; 150% of 4 s = 6 CPU s over 4 x 288 = 1152 images.
    result = _pipeline_result([(150.0, 4.0, 1280)])
    probe = result["details"]["probe"][0]
    probe.update(images_per_sec=288.0, rate_window="from the first stall to the last")
    assert capacity.run_cpu_cost(result) == pytest.approx((6.0, 1152.0))
    del probe["rate_window"]  # results from before the probe recorded its rate's window
    assert capacity.run_cpu_cost(result) == pytest.approx((6.0, 1280.0))


def test_missing_parts_give_no_cost_never_a_low_one() -> None:
    unmeasured_workers = _pipeline_result([(100.0, 1.0, 10)], worker_cpu_s=None, workers=2)
    assert capacity.run_cpu_cost(unmeasured_workers) is None
    assert capacity.run_cpu_cost(_pipeline_result([(100.0, 1.0, 10)], status="failed")) is None
    no_cpu = _pipeline_result([(100.0, 1.0, 10)])
    no_cpu["details"]["probe"][0]["process_cpu_pct"] = None
    assert capacity.run_cpu_cost(no_cpu) is None
    # a window too short for the CPU clock reads 0 % on every rank: unmeasured, not free
    assert capacity.run_cpu_cost(_pipeline_result([(0.0, 0.003, 12), (0.0, 0.003, 12)])) is None
    train = _pipeline_result([(100.0, 1.0, 10)])
    train["cell"]["mode"] = "train"
    assert capacity.measured_costs([train]) == []


def test_cost_interval_over_runs_is_student_t() -> None:
    runs = [_pipeline_result([(100.0, 1.0, images)]) for images in (100, 80, 125)]
    # 0.010, 0.0125, 0.008 s per image
    (cost,) = capacity.measured_costs(runs)
    values = [0.010, 0.0125, 0.008]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert cost.runs == 3 and cost.images == 305
    assert cost.cpu_s_per_image == pytest.approx(mean)
    assert (cost.low, cost.high) == pytest.approx((mean - half, mean + half))
    (single,) = capacity.measured_costs(runs[:1])
    assert single.low is None and single.high is None  # one run: no interval


def test_cores_workers_and_gpu_time_lost_by_hand() -> None:
    # Raw NIH PNGs (16 cores decode 1000/s: 0.016 core-s each) for ResNet50 bf16 b64 (2912/s).
    assert capacity.cores_per_gpu(0.016, 2912) == pytest.approx(46.592)
    assert capacity.service_workers(46.592, 8) == 6
    assert capacity.service_workers(16.0, 8) == 2  # exactly enough: not one more
    assert capacity.service_workers(0.1, 8) == 1
    # 4 cores per GPU supply 4 / 0.016 = 250 images/s: 1 - 250 / 2912 of the GPU waits.
    assert capacity.gpu_time_lost(0.016, 2912, 4) == pytest.approx(1 - 250 / 2912)
    assert capacity.gpu_time_lost(0.016, 2912, 50) == 0.0
    assert capacity.gpu_time_lost(0.0, 2912, 4) == 0.0  # free input never starves a GPU
    with pytest.raises(ValueError, match="positive"):
        capacity.service_workers(4, 0)


def test_rows_cross_costs_and_demands_with_intervals() -> None:
    cost = capacity.InputCost(
        input="x", cpu_s_per_image=0.002, low=0.001, high=0.003, runs=3, images=9, source="m"
    )
    demand = capacity.Demand("gpu", 1000.0, "s")
    (row,) = capacity.capacity_rows([cost], [demand], host_cores_per_gpu=1.0, worker_cores=4)
    assert (row.cores_per_gpu, row.cores_low, row.cores_high) == pytest.approx((2.0, 1.0, 3.0))
    assert row.service_workers == 1
    assert row.gpu_time_lost == pytest.approx(0.5)  # 1 core supplies 500 of 1000 images/s
    (bare,) = capacity.capacity_rows([cost], [demand], host_cores_per_gpu=None, worker_cores=None)
    assert bare.service_workers is None and bare.gpu_time_lost is None


def test_demand_from_the_sweep_file_synthetic_cells_and_the_reference() -> None:
    declared = capacity.sweep_demands('demand: {"H100 ResNet50 bf16": 2912}\nmodels: [resnet50]\n')
    assert declared == [capacity.Demand("H100 ResNet50 bf16", 2912.0, "declared in the sweep file")]
    assert capacity.sweep_demands("models: [resnet50]\n") == []
    for bad in ("demand: {a: -3}", "demand: {a: fast}", "demand: [1, 2]", "demand: {a: true}"):
        with pytest.raises(capacity.DemandError, match="demand"):
            capacity.sweep_demands(bad)
    synthetic = {
        "status": "ok",
        "cell": {
            "mode": "synthetic",
            "model": "resnet50",
            "precision": "fp32",
            "batch_per_gpu": 8,
            "image_size": 64,
            "device": "cpu",
        },
        "throughput": {"images_per_sec_per_gpu": 30.0},
    }
    slower = {**synthetic, "throughput": {"images_per_sec_per_gpu": 20.0}}
    (demand,) = capacity.synthetic_demands([synthetic, slower, {**synthetic, "status": "failed"}])
    assert demand.images_per_sec_per_gpu == 25.0 and "resnet50 fp32 b8" in demand.name
    references = capacity.reference_demands()
    assert len(references) == 10
    assert {d.name: d.images_per_sec_per_gpu for d in references}["H100 ResNet50 bf16 b64"] == 2912
    assert all(d.source == reference_rates.SOURCE for d in references)
    assert "16 cores" in reference_rates.SOURCE and "PyTorch" in reference_rates.SOURCE


def test_reference_cost_of_full_size_pngs() -> None:
    full, png256, jpeg256 = capacity.reference_costs()
    assert full.cpu_s_per_image == pytest.approx(0.016) and full.low is None
    assert (png256.low, png256.high) == pytest.approx((16 / 11000, 16 / 9000))
    assert jpeg256.cpu_s_per_image < png256.cpu_s_per_image < full.cpu_s_per_image


def test_host_cores_per_gpu_is_the_tightest_host() -> None:
    results = [
        {"environment": {"cpu_count_per_host": {"a": 16, "b": 32}, "ranks_per_host": {"a": 4}}},
        {"environment": {"cpu_count_per_host": {"b": 32}, "ranks_per_host": {"b": 4}}},
    ]
    assert capacity.host_cores_per_gpu(results) == 4.0
    assert capacity.host_cores_per_gpu([{}]) is None


def test_the_section_is_titled_cores_per_gpu_and_has_a_figure() -> None:
    results = [_pipeline_result([(100.0, 1.0, 500)]), _pipeline_result([(100.0, 1.0, 400)])]
    costs, demands, cores = capacity_inputs(results, ['demand: {"my GPU": 1000}'])
    assert cores == 4.0  # 8 cores, 2 ranks on the host
    assert demands[0].name == "my GPU"
    rows = capacity.capacity_rows(costs, demands, host_cores_per_gpu=cores, worker_cores=8)
    table = capacity_table(rows, host_cores_per_gpu=cores, worker_cores=8)
    assert "cores per GPU" in table.title == TITLE
    first = table.rows[0]
    # Mean of 0.002 and 0.0025 s per image: 2.25 ms; x 1000/s = 2.25 cores; 4 cores suffice.
    assert first[0] == "raw/png tuned 224 px" and first[1].startswith("2.25 [")
    assert first[3] == "my GPU" and first[6].startswith("2.25 [")
    assert first[7] == "1" and first[8] == "0.0%"
    # At 4 cores per GPU, 2.25 ms per image supplies 1,778/s: a 2,912/s GPU waits 38.9%.
    bf16 = next(row for row in table.rows if row[0] == first[0] and row[3].endswith("bf16 b64"))
    assert bf16[8] == f"{1 - (4 / 0.00225) / 2912:.1%}" == "38.9%"
    assert len([row for row in table.rows if row[0] == first[0]]) == 1 + 5  # headline refs
    assert any(row[2] == "reference (H100 host)" for row in table.rows)
    figure = capacity_figure(costs, demands, host_cores_per_gpu=cores)
    assert figure.png is not None and figure.png.startswith(b"\x89PNG")
    empty = capacity_figure([], demands, host_cores_per_gpu=None)
    assert empty.png is None and "pipeline-mode" in (empty.note or "")
