"""Measurement windows inside one job (bench.job.timing.window_rates), by hand."""

from __future__ import annotations

import pytest

from bench.job import timing
from reports import stats


def test_windows_split_the_measured_steps_and_last_as_the_slowest_rank() -> None:
    per_rank = [
        {"step_s": [9.0] + [0.1] * 4 + [0.2] * 5, "measured_s": 10.0},
        {"step_s": [9.0] + [0.1, 0.1, 0.1, 0.3] + [0.2] * 5, "measured_s": 10.0},
    ]
    # 10 steps: 3 windows of 3, the oldest step (9.0 s) left out.
    assert timing.window_count(10) == 3
    rates = timing.window_rates(per_rank, batch_per_rank=8)
    # Window 1: steps 1-3: rank 0 0.3 s, rank 1 0.3 s; window 2: steps 4-6: 0.1+0.2+0.2
    # and 0.3+0.2+0.2 -> 0.7 s; window 3: 0.6 s. 2 ranks x 8 images x 3 steps = 48.
    assert rates == pytest.approx([48 / 0.3, 48 / 0.7, 48 / 0.6])
    section = timing.throughput_section(per_rank, batch_per_rank=8)
    assert section["window_images_per_sec"] == rates and section["window_steps"] == 3


def test_too_few_steps_have_no_windows() -> None:
    assert timing.window_count(3) == 0
    assert timing.window_rates([{"step_s": [0.1] * 3}], batch_per_rank=8) == []
    assert timing.window_count(400) == timing.MAX_WINDOWS


def test_windows_give_the_cell_its_interval() -> None:
    per_rank = [{"step_s": [0.10, 0.11, 0.09, 0.10, 0.12, 0.10, 0.11, 0.10], "measured_s": 0.83}]
    section = timing.throughput_section(per_rank, batch_per_rank=8)
    estimate = stats.cell_estimate(
        [section["images_per_sec"]], [per_rank[0]["step_s"]], [section["window_images_per_sec"]]
    )
    assert estimate.method == "t over 2 measurement windows"
    assert estimate.low < section["images_per_sec"] < estimate.high
