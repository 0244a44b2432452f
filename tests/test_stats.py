"""reports.stats against textbook cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports import stats


def test_t_quantiles_match_the_table_and_the_normal_limit() -> None:
    assert stats.t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert stats.t_quantile(9) == pytest.approx(2.262, abs=1e-3)
    assert stats.t_quantile(40) == pytest.approx(2.021, abs=1e-3)
    assert stats.t_quantile(120) == pytest.approx(1.980, abs=1e-3)
    assert stats.t_quantile(1e9) == pytest.approx(1.960, abs=1e-3)
    # Fractional df (Welch) lies between its neighbours.
    assert stats.t_quantile(2) > stats.t_quantile(2.5) > stats.t_quantile(3)


def test_t_interval_of_three_samples_by_hand() -> None:
    estimate = stats.mean_estimate([1.0, 2.0, 3.0])
    assert estimate.value == 2.0
    # s = 1, se = 1/sqrt(3), t(2) = 4.303.
    assert estimate.half_width == pytest.approx(4.303 / math.sqrt(3), rel=1e-3)
    assert (estimate.low, estimate.high) == pytest.approx((2 - 2.4843, 2 + 2.4843), abs=1e-3)


def test_t_interval_covers_the_mean_of_normal_samples_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    trials = 2000
    for _ in range(trials):
        estimate = stats.mean_estimate(rng.normal(10.0, 2.0, size=5))
        covered += estimate.low <= 10.0 <= estimate.high
    assert 0.93 <= covered / trials <= 0.97


def _ar1(rng: np.random.Generator, phi: float, size: int) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, size=size)
    series = np.empty(size)
    series[0] = noise[0] / math.sqrt(1 - phi * phi)  # start in the stationary distribution
    for index in range(1, size):
        series[index] = phi * series[index - 1] + noise[index]
    return series


def test_batch_means_recover_the_ar1_variance_inflation() -> None:
    """AR(1) with phi = 0.5: the variance of the mean is (1 + phi) / (1 - phi) = 3 times the
    naive s^2 / n. Batch means must see it; the naive error must not."""
    rng = np.random.default_rng(2)
    phi, size, trials = 0.5, 400, 300
    ratios, covered, naive_covered = [], 0, 0
    for _ in range(trials):
        series = _ar1(rng, phi, size)
        estimate = stats.batch_means_estimate(series)
        naive = stats.mean_estimate(series)
        ratios.append((estimate.se / naive.se) ** 2)
        covered += estimate.low <= 0.0 <= estimate.high
        naive_covered += naive.low <= 0.0 <= naive.high
    assert np.mean(ratios) == pytest.approx((1 + phi) / (1 - phi), rel=0.15)
    assert covered / trials >= 0.90
    assert naive_covered / trials < 0.85  # what the naive error would have claimed


def test_batch_count_keeps_two_steps_per_batch_and_at_most_ten_batches() -> None:
    assert stats.batch_count(4) == 2
    assert stats.batch_count(20) == 4
    assert stats.batch_count(400) == 10
    means = stats.batch_means([9.0, 1.0, 2.0, 3.0, 4.0], 2)  # the oldest step is dropped
    assert means.tolist() == [1.5, 3.5]


def test_cell_estimate_uses_repeats_from_three_on() -> None:
    estimate = stats.cell_estimate([100.0, 110.0, 90.0], [[0.1] * 10] * 3)
    assert estimate.method == "t over 3 repeats"
    assert estimate.value == pytest.approx(100.0)
    assert estimate.half_width == pytest.approx(4.303 * 10 / math.sqrt(3), rel=1e-3)
    assert estimate.cv_repeats == pytest.approx(0.1)
    assert estimate.noisy


def test_cell_estimate_of_one_run_uses_batch_means_of_its_steps() -> None:
    steps = [0.10, 0.11, 0.10, 0.12, 0.10, 0.11, 0.10, 0.12, 0.10, 0.11, 0.10, 0.12]
    estimate = stats.cell_estimate([640.0], [steps])
    assert estimate.method.startswith("batch means (3 batches of 4")
    assert estimate.value == 640.0
    means = stats.batch_means(steps)
    relative = np.std(means, ddof=1) / math.sqrt(3) / np.mean(means)
    assert estimate.se == pytest.approx(640.0 * relative)
    assert estimate.low < 640.0 < estimate.high
    assert estimate.cv_repeats is None and not estimate.noisy


def test_cell_estimate_prefers_measurement_windows() -> None:
    estimate = stats.cell_estimate([100.0], [[0.1] * 12], [[98.0, 100.0, 102.0]])
    assert estimate.method == "t over 3 measurement windows"
    assert estimate.se == pytest.approx(100.0 * (2.0 / math.sqrt(3)) / 100.0)


def test_a_run_of_too_few_steps_has_no_interval_and_compares_to_nothing() -> None:
    short = stats.cell_estimate([100.0], [[0.1, 0.1, 0.1]])
    assert short.se is None and math.isnan(short.low)
    other = stats.cell_estimate([200.0, 210.0, 190.0], [[0.1] * 10] * 3)
    comparison = stats.compare(other, short)
    assert not comparison.significant
    assert comparison.verdict == stats.NO_DIFFERENCE


def test_identical_sample_sets_show_no_difference() -> None:
    rng = np.random.default_rng(3)
    rates = rng.normal(100.0, 5.0, size=6).tolist()
    first = stats.cell_estimate(rates, [])
    second = stats.cell_estimate(list(rates), [])
    comparison = stats.compare(first, second)
    assert comparison.ratio.value == pytest.approx(1.0)
    assert comparison.ratio.low < 1.0 < comparison.ratio.high
    assert comparison.p_value == pytest.approx(1.0, abs=0.05)
    assert not comparison.significant and comparison.verdict == stats.NO_DIFFERENCE


def test_twice_as_fast_is_a_significant_difference() -> None:
    rng = np.random.default_rng(4)
    slow = rng.normal(100.0, 5.0, size=6)
    fast = stats.cell_estimate((2 * slow[rng.permutation(6)]).tolist(), [])
    comparison = stats.compare(fast, stats.cell_estimate(slow.tolist(), []))
    assert comparison.significant and comparison.verdict == "faster"
    assert comparison.ratio.low > 1.7 and comparison.ratio.high < 2.3
    assert comparison.p_value is not None and comparison.p_value < 0.01


def test_a_tiny_but_certain_difference_is_below_the_factor() -> None:
    first = stats.mean_estimate([100.0, 100.1, 99.9, 100.0])
    second = stats.mean_estimate([102.0, 102.1, 101.9, 102.0])
    comparison = stats.compare(second, first)
    assert comparison.ratio.excludes(1.0)
    assert not comparison.significant and comparison.verdict == stats.BELOW_FACTOR


def test_fieller_matches_the_delta_method_for_precise_denominators() -> None:
    numerator = stats.Estimate(200.0, 2.0, 1e6, "test")
    denominator = stats.Estimate(100.0, 0.1, 1e6, "test")
    interval = stats.ratio_interval(numerator, denominator)
    delta_se = 2.0 * math.sqrt((2.0 / 200) ** 2 + (0.1 / 100) ** 2)
    assert interval.value == 2.0
    assert interval.low == pytest.approx(2.0 - 1.96 * delta_se, rel=1e-3)
    assert interval.high == pytest.approx(2.0 + 1.96 * delta_se, rel=1e-3)


def test_fieller_is_unbounded_when_the_denominator_may_be_zero() -> None:
    interval = stats.ratio_interval(
        stats.mean_estimate([1.0, 2.0, 3.0]), stats.mean_estimate([-1.0, 1.0, 0.5])
    )
    assert math.isinf(interval.low) and math.isinf(interval.high)
    assert not interval.excludes(1.0)


def test_fieller_covers_the_true_ratio() -> None:
    rng = np.random.default_rng(5)
    covered, trials = 0, 1000
    for _ in range(trials):
        numerator = stats.mean_estimate(rng.normal(150.0, 15.0, size=4))
        denominator = stats.mean_estimate(rng.normal(100.0, 10.0, size=4))
        interval = stats.ratio_interval(numerator, denominator)
        covered += interval.low <= 1.5 <= interval.high
    assert 0.92 <= covered / trials <= 0.99


def test_mann_whitney_exact_and_approximate_p_values() -> None:
    # Complete separation of 5 and 5: p = 2 / C(10, 5) = 2 / 252.
    assert stats.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert stats.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    # A textbook normal-approximation case with ties stays in (0, 1] and is symmetric.
    first, second = [1, 2, 2, 3, 4, 5, 5, 6], [3, 4, 4, 5, 6, 7, 7, 8]
    p = stats.mann_whitney_p(first, second)
    assert 0.0 < p < 0.2
    assert stats.mann_whitney_p(second, first) == pytest.approx(p)


def test_interval_shift_swaps_bounds_for_negative_scales() -> None:
    share = stats.Interval(0.8, 0.7, 0.9).shifted(1.0, -1.0)
    assert share.value == pytest.approx(0.2)
    assert (share.low, share.high) == pytest.approx((0.1, 0.3))
    assert stats.difference_text(share) == "+20.0% [+10.0%, +30.0%]"
