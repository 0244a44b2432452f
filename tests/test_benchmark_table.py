"""The pipeline benchmark's verdicts: the target judged per row, and the noise flag when the
bound itself moved between rounds (bench.measure.benchmark_table, bench.contract.noise)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.contract.noise import CV_REPEATS_NOISY, cv
from bench.measure import benchmark_table as table
from bench.measure.bound import STAGES
from bench.measure.formats import BOUND_SLACK, DECODING_TARGET


def test_cv_is_the_sample_sd_over_the_mean() -> None:
    assert cv([1.0, 2.0, 3.0]) == pytest.approx(0.5)  # sd 1 (n - 1), mean 2
    assert cv([5.0, 5.0, 5.0]) == 0.0
    assert cv([4.0]) is None and cv([]) is None


def _summary(ratio: float | None, round_bounds: list[float]) -> dict[str, Any]:
    spread = cv(round_bounds)
    return {
        "format": "TFRecord jpeg 256px",
        "naive_images_per_sec": 2500.0,
        "tuned_images_per_sec": None if ratio is None else ratio * 10000.0,
        "bound_images_per_sec": 10000.0,
        "tuned_over_bound": ratio,
        "tuned_over_bound_rounds": [ratio, None],
        "target_tuned_over_bound": DECODING_TARGET,
        "bound_cv_rounds": spread,
        "noisy": spread is not None and spread > CV_REPEATS_NOISY,
        "naive_over_bound": 0.25,
        "tuned_first_batch_s": 0.3,
        "tuned_threads_images_per_sec": 8000.0,
        "tuned_tensorflow_images_per_sec": 3500.0,
        "tuned_host_normalised_images_per_sec": 7000.0,
        "bound_over_tuned_cpu": 0.9,
        "reader_alone_images_per_sec": 9500.0,
        "tuned_over_reader_alone": 0.95,
        "core_scaling_rounds": [0.97, None],
        "stage_cpu_s_per_image": dict.fromkeys(STAGES, 1e-5),
        "stages_cpu_s_per_image": 6e-5,
        "bound_cpu_s_per_image": 5e-5,
    }


STEADY = [10000.0, 10100.0, 9950.0]  # CV 0.8%
DRIFTING = [10000.0, 8500.0, 9400.0]  # CV 8%, as a VM that slowed for a minute


@pytest.mark.parametrize(
    ("ratio", "rounds", "verdict"),
    [
        (0.90, STEADY, "yes"),
        (DECODING_TARGET, STEADY, "yes"),
        (0.80, STEADY, "no"),
        (0.80, DRIFTING, "no, NOISY"),
        (0.90, DRIFTING, "yes, NOISY"),
        (BOUND_SLACK + 0.01, STEADY, "BOUND WRONG"),
        (None, STEADY, "n/a"),
    ],
)
def test_each_row_says_whether_it_met_its_target_and_whether_the_run_was_noisy(
    ratio: float | None, rounds: list[float], verdict: str
) -> None:
    summary = _summary(ratio, rounds)
    assert table.met(summary) == verdict
    cells = table.row(summary)
    assert len(cells) == len(table.HEADERS)
    assert cells[table.HEADERS.index("met")] == verdict
    assert cells[table.HEADERS.index("bound CV (rounds)")] == f"{cv(rounds):.1%}"
    assert len(table.stage_row(summary)) == len(table.STAGE_HEADERS)


def test_the_note_under_the_table_names_the_noisy_rows_only() -> None:
    steady, drifting = _summary(0.9, STEADY), _summary(0.8, DRIFTING)
    drifting["format"] = "raw PNG files"
    assert table.noise_note([steady]) is None
    note = table.noise_note([steady, drifting])
    assert note is not None and note.startswith("NOISY: raw PNG files.")
    assert "TFRecord jpeg" not in note and f"{CV_REPEATS_NOISY:.0%}" in note
