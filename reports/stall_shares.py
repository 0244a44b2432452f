"""The stall arithmetic: compute, preparation stall and fetch stall as shares of the step.

Per step (step time = images per step / images/s, the mean over a cell's repeats):

    preparation stall = t_w - t_c          fetch stall = t_cold - t_w
    shares of the step = t_c / T, (t_w - t_c) / T, (t_cold - t_w) / T,  T = t_cold

so compute + preparation + fetch = 1; without a cold cell the fetch stall is missing and
T = t_w. Each step time is a mean over independent repeats with its t interval
(`stats.mean_estimate`); each share is a ratio of independent means with Fieller's 95%
interval (`stats.ratio_interval`), as every other ratio in the report:

    compute share = t_c / T                 preparation share (no cold) = 1 - t_c / t_w
    fetch share   = 1 - t_w / t_cold        preparation share (cold)    = (t_w - t_c) / t_cold

the last with the Welch difference t_w - t_c (`stats.difference`) as its numerator. A cell
that ran once has no interval, so neither has any share that needs it (NaN bounds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reports import stats


@dataclass(frozen=True, kw_only=True)
class Shares:
    """One decomposition: mean step times (s) and shares of the step, the stalls with their
    95% intervals; NaN where missing (no cold cell) and NaN bounds where there is no interval."""

    step_compute_s: float
    step_warm_s: float
    step_cold_s: float
    compute_share: float
    prep_share: float
    prep_low: float
    prep_high: float
    fetch_share: float
    fetch_low: float
    fetch_high: float
    # the 95% interval of each mean step time (the figure's whiskers)
    step_compute_low_s: float
    step_compute_high_s: float
    step_warm_low_s: float
    step_warm_high_s: float
    step_cold_low_s: float
    step_cold_high_s: float


def stall_shares(
    synthetic_ips: Sequence[float],
    warm_ips: Sequence[float],
    cold_ips: Sequence[float],
    *,
    images_per_step: float,
) -> Shares:
    """The decomposition from each cell's repeats (images/s); `cold_ips` may be empty."""
    if not synthetic_ips or not warm_ips:
        raise ValueError("the decomposition needs a synthetic and a warm train measurement")
    if min([*synthetic_ips, *warm_ips, *cold_ips]) <= 0:
        raise ValueError("images/s must be positive")

    def step_time(rates: Sequence[float]) -> stats.Estimate:
        return stats.mean_estimate([images_per_step / rate for rate in rates])

    compute, warm, cold = step_time(synthetic_ips), step_time(warm_ips), step_time(cold_ips)
    if cold_ips:
        compute_share = stats.ratio_interval(compute, cold)
        prep = stats.ratio_interval(stats.difference(warm, compute), cold)
        fetch = stats.ratio_interval(warm, cold).shifted(1.0, -1.0)
    else:
        compute_share = stats.ratio_interval(compute, warm)
        prep = compute_share.shifted(1.0, -1.0)
        fetch = stats.UNKNOWN
    return Shares(
        step_compute_s=compute.value,
        step_warm_s=warm.value,
        step_cold_s=cold.value,
        compute_share=compute_share.value,
        prep_share=prep.value,
        prep_low=prep.low,
        prep_high=prep.high,
        fetch_share=fetch.value,
        fetch_low=fetch.low,
        fetch_high=fetch.high,
        step_compute_low_s=compute.low,
        step_compute_high_s=compute.high,
        step_warm_low_s=warm.low,
        step_warm_high_s=warm.high,
        step_cold_low_s=cold.low,
        step_cold_high_s=cold.high,
    )


def is_real(low: float, high: float) -> bool | None:
    """Whether an interval excludes 0; None when there is no interval."""
    if math.isnan(low) or math.isnan(high):
        return None
    return low > 0 or high < 0
