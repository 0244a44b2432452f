"""Intervals and significance for the report's figures, from the raw samples in the results.

A cell's images/s carries a 95% confidence interval:

- with at least 3 ok repeats, a Student t interval over the repeats' rates (the repeats are
  separate processes, so their rates are independent);
- otherwise, batch means over the measured steps of its runs: consecutive step times are
  autocorrelated (a slow step, a page-cache miss, a neighbour's burst, lasts), so the naive
  standard error of the mean step underestimates; the means of k consecutive batches of
  steps are nearly independent, and their spread gives the error of the mean step. Windows
  measured inside one job (`throughput.window_images_per_sec`) are such batches already.

Derived figures are ratios of two cells (speedup, headroom, scaling efficiency, input-bound
share); their intervals are Fieller's for a ratio of two independent means, with Welch's
degrees of freedom. Fieller, unlike the delta method, stays correct when the denominator is
uncertain, and says "unbounded" when the denominator's interval reaches zero.

A difference is stated only when it is significant (`compare`): its interval excludes no
change, it is at least `FACTOR` (5%) in size, and, where both cells have at least
`MIN_RANK_SAMPLES` samples, a Mann-Whitney U test on the samples gives p < 0.05. This is
asv compare's rule (a factor threshold plus a test on the samples) with the interval added.

Nothing here imports TensorFlow; numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.contract.noise import CV_REPEATS_NOISY, CV_STEPS_NOISY, cv

CONFIDENCE = 0.95
FACTOR = 0.05  # differences under 5% are not called, however tight their interval
MIN_RANK_SAMPLES = 5  # below this, a rank test cannot reach p < 0.05 on both sides anyway
P_THRESHOLD = 0.05
MIN_REPEATS_T = 3
MIN_STEPS = 4  # batch means need at least 2 batches of 2 steps
MAX_BATCHES = 10

NO_DIFFERENCE = "no difference detected at this noise level"
BELOW_FACTOR = f"under {FACTOR:.0%}: too small to call"

# Two-sided 97.5% quantiles of Student's t, df = 1..30 (any statistics table).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


def t_quantile(df: float) -> float:
    """The 97.5% quantile of Student's t (two-sided 95%); df may be fractional (Welch)."""
    if not df > 0 or math.isnan(df):
        return math.inf
    if df <= 1:
        return _T975[0]
    if df <= 30:
        low = int(math.floor(df))
        high = min(low + 1, 30)
        # Linear in 1/df between table entries: accurate to ~0.1% for Welch's fractional df.
        if high == low:
            return _T975[low - 1]
        weight = (1 / low - 1 / df) / (1 / low - 1 / high)
        return _T975[low - 1] + weight * (_T975[high - 1] - _T975[low - 1])
    # Cornish-Fisher expansion about the normal quantile (error < 1e-4 for df > 30).
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error and degrees of freedom; `method` says where from.

    `se` is None where no interval can be had (one run of too few steps): the figure is
    shown without one, and nothing compared with it is ever called significant.
    """

    value: float
    se: float | None
    df: float | None
    method: str
    samples: tuple[float, ...] = ()  # what the interval was computed from (rates)
    cv_steps: float | None = None
    cv_repeats: float | None = None

    @property
    def half_width(self) -> float | None:
        if self.se is None or self.df is None:
            return None
        return t_quantile(self.df) * self.se

    @property
    def low(self) -> float:
        half = self.half_width
        return math.nan if half is None else self.value - half

    @property
    def high(self) -> float:
        half = self.half_width
        return math.nan if half is None else self.value + half

    @property
    def noisy(self) -> bool:
        return (self.cv_steps is not None and self.cv_steps > CV_STEPS_NOISY) or (
            self.cv_repeats is not None and self.cv_repeats > CV_REPEATS_NOISY
        )


def mean_estimate(samples: Sequence[float], method: str = "t") -> Estimate:
    """Student t over independent samples (at least 2; one sample has no interval)."""
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        return Estimate(math.nan, None, None, "no samples")
    if values.size < 2:
        return Estimate(float(values[0]), None, None, "one sample: no interval", tuple(values))
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    return Estimate(float(values.mean()), se, float(values.size - 1), method, tuple(values))


def batch_count(steps: int) -> int:
    """Batches for `steps` consecutive steps: about sqrt(n), 2..MAX_BATCHES, >= 2 steps each."""
    return max(2, min(MAX_BATCHES, math.isqrt(steps), steps // 2))


def batch_means(series: Sequence[float], batches: int | None = None) -> np.ndarray:
    """The means of `batches` consecutive, equal batches (a remainder of early steps dropped:
    the end of the series is furthest from warm-up)."""
    values = np.asarray(series, dtype=float)
    count = batch_count(values.size) if batches is None else batches
    size = values.size // count
    if size < 1:
        raise ValueError(f"{values.size} values cannot fill {count} batches")
    kept = values[values.size - size * count :]
    return kept.reshape(count, size).mean(axis=1)


def batch_means_estimate(series: Sequence[float], batches: int | None = None) -> Estimate:
    """The mean of an autocorrelated series with the batch-means standard error."""
    means = batch_means(series, batches)
    estimate = mean_estimate(means)
    return Estimate(
        float(np.mean(series)),
        estimate.se,
        estimate.df,
        f"batch means ({means.size} batches of {len(series) // means.size} steps)",
        tuple(means),
    )


def cell_estimate(
    repeat_rates: Sequence[float],
    repeat_steps: Sequence[Sequence[float]],
    repeat_windows: Sequence[Sequence[float]] = (),
) -> Estimate:
    """A cell's images/s: its value is the mean of its repeats' recorded rates.

    `repeat_steps`: each repeat's measured step times (a synchronous step: the slowest
    rank's); `repeat_windows`: each repeat's per-window rates, where the job measured
    several windows. With fewer than MIN_REPEATS_T repeats the interval comes from the
    windows if any repeat has at least two, else from batch means of the steps, pooled
    over the repeats, as a relative error applied to the recorded rate.
    """
    rates = [float(rate) for rate in repeat_rates]
    step_cvs = [value for value in (cv(steps) for steps in repeat_steps) if value is not None]
    cv_steps = max(step_cvs) if step_cvs else None
    cv_repeats = cv(rates)
    noise = {"cv_steps": cv_steps, "cv_repeats": cv_repeats}
    if len(rates) >= MIN_REPEATS_T:
        estimate = mean_estimate(rates, f"t over {len(rates)} repeats")
        return Estimate(**{**estimate.__dict__, **noise})
    value = float(np.mean(rates)) if rates else math.nan
    windows = [float(rate) for one in repeat_windows for rate in one]
    if len(windows) >= 2:
        estimate = mean_estimate(windows)
        relative = estimate.se / estimate.value if estimate.value > 0 else math.nan
        method = f"t over {len(windows)} measurement windows"
        return Estimate(value, value * relative, estimate.df, method, tuple(windows), **noise)
    pooled: list[float] = []
    sizes = []
    for steps in repeat_steps:
        if len(steps) >= MIN_STEPS:
            means = batch_means(steps)
            pooled.extend(means)
            sizes.append(len(steps) // means.size)
    if len(pooled) < 2:
        return Estimate(value, None, None, "too few steps for an interval", tuple(rates), **noise)
    times = mean_estimate(pooled)
    relative = times.se / times.value
    runs = f", {len(sizes)} runs" if len(sizes) > 1 else ""
    method = f"batch means ({len(pooled)} batches of {min(sizes)}+ steps{runs})"
    return Estimate(value, value * relative, times.df, method, tuple(pooled), **noise)


@dataclass(frozen=True)
class Interval:
    """A derived figure and its 95% interval (bounds may be +-inf: unbounded)."""

    value: float
    low: float
    high: float

    def excludes(self, point: float) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high)) and not (
            self.low <= point <= self.high
        )

    def shifted(self, offset: float, scale: float = 1.0) -> Interval:
        """offset + scale * x; a negative scale swaps the bounds."""
        ends = sorted((offset + scale * self.low, offset + scale * self.high))
        return Interval(offset + scale * self.value, ends[0], ends[1])


UNKNOWN = Interval(math.nan, math.nan, math.nan)


def ratio_interval(numerator: Estimate, denominator: Estimate) -> Interval:
    """Fieller's 95% interval for numerator / denominator, independent means.

    No interval (NaN bounds) when either side has none; (-inf, inf) when the denominator
    cannot be told from zero.
    """
    a, b = numerator.value, denominator.value
    ratio = a / b if b else math.nan
    if numerator.se is None or denominator.se is None or math.isnan(ratio):
        return Interval(ratio, math.nan, math.nan)
    var_a, var_b = numerator.se**2, denominator.se**2
    t = t_quantile(_welch_df(numerator, denominator, ratio))
    denominator_term = b * b - t * t * var_b
    if denominator_term <= 0:
        return Interval(ratio, -math.inf, math.inf)
    discriminant = (a * b) ** 2 - denominator_term * (a * a - t * t * var_a)
    root = math.sqrt(max(discriminant, 0.0))
    return Interval(ratio, (a * b - root) / denominator_term, (a * b + root) / denominator_term)


def difference(first: Estimate, second: Estimate) -> Estimate:
    """first - second for independent means, Welch's se and df (none if either has none)."""
    value = first.value - second.value
    if first.se is None or second.se is None:
        return Estimate(value, None, None, "difference: no interval")
    se, df = math.hypot(first.se, second.se), _welch_df(first, second, 1.0)
    return Estimate(value, se, df, "difference of means (Welch)")


def _welch_df(numerator: Estimate, denominator: Estimate, ratio: float) -> float:
    """Welch-Satterthwaite df for a - ratio * b."""
    part_a = numerator.se**2  # type: ignore[operator]
    part_b = ratio * ratio * denominator.se**2  # type: ignore[operator]
    total = part_a + part_b
    if total == 0:
        return math.inf
    terms = part_a**2 / numerator.df + part_b**2 / denominator.df  # type: ignore[operator]
    return math.inf if terms == 0 else total * total / terms


def mann_whitney_p(first: Sequence[float], second: Sequence[float]) -> float:
    """Two-sided p of the Mann-Whitney U test: exact without ties for small samples,
    else the normal approximation with tie correction and continuity correction."""
    x, y = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return math.nan
    pooled = np.concatenate([x, y])
    ranks = _ranks(pooled)
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    u_low = min(u, n1 * n2 - u)
    ties = np.unique(pooled).size < pooled.size
    if not ties and n1 * n2 <= 400:
        counts = _u_counts(n1, n2)
        p = 2 * counts[: int(math.floor(u_low)) + 1].sum() / counts.sum()
        return float(min(1.0, p))
    n = n1 + n2
    _, tie_sizes = np.unique(pooled, return_counts=True)
    correction = float((tie_sizes**3 - tie_sizes).sum()) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12 * (n + 1 - correction))
    if sigma == 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2))))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank."""
    order = values.argsort(kind="stable")
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _u_counts(n1: int, n2: int) -> np.ndarray:
    """How many arrangements give each U = 0..n1*n2 (the exact null distribution)."""
    # counts[i][j] is a polynomial in U; recurrence f(i, j) = f(i-1, j) shifted by j + f(i, j-1).
    table = [[np.zeros(1, dtype=float) for _ in range(n2 + 1)] for _ in range(n1 + 1)]
    for i in range(n1 + 1):
        for j in range(n2 + 1):
            if i == 0 or j == 0:
                table[i][j] = np.ones(1)
                continue
            size = i * j + 1
            counts = np.zeros(size)
            left = table[i - 1][j]
            counts[j : j + left.size] += left
            up = table[i][j - 1]
            counts[: up.size] += up
            table[i][j] = counts
    return table[n1][n2]


@dataclass(frozen=True)
class Comparison:
    """One cell against another: their ratio with its interval and the verdict."""

    ratio: Interval
    p_value: float | None  # Mann-Whitney on the samples; None where too few
    significant: bool
    verdict: str  # "faster", "slower", NO_DIFFERENCE or BELOW_FACTOR


def compare(numerator: Estimate, denominator: Estimate, *, factor: float = FACTOR) -> Comparison:
    """Is `numerator` different from `denominator`? See the module docstring for the rule."""
    ratio = ratio_interval(numerator, denominator)
    p_value = None
    if min(len(numerator.samples), len(denominator.samples)) >= MIN_RANK_SAMPLES and (
        numerator.se is not None and denominator.se is not None
    ):
        p_value = _samples_p(numerator, denominator)
    if not ratio.excludes(1.0) or (p_value is not None and not p_value < P_THRESHOLD):
        return Comparison(ratio, p_value, False, NO_DIFFERENCE)
    if abs(ratio.value - 1.0) < factor:
        return Comparison(ratio, p_value, False, BELOW_FACTOR)
    return Comparison(ratio, p_value, True, "faster" if ratio.value > 1 else "slower")


def _samples_p(numerator: Estimate, denominator: Estimate) -> float:
    """The rank test on rates: batch-mean step times are turned into rates first, both on
    the same relative scale as the estimate (rate = value * mean / sample)."""
    return mann_whitney_p(_as_rates(numerator), _as_rates(denominator))


def _as_rates(estimate: Estimate) -> list[float]:
    samples = np.asarray(estimate.samples, dtype=float)
    if estimate.method.startswith("batch means"):
        return list(estimate.value * samples.mean() / samples)
    return list(samples)


def difference_text(interval: Interval, *, signed: bool = True, pct: bool = True) -> str:
    """'+12.3% [+5.1%, +19.8%]'-style text of a figure and its interval."""
    return f"{_fmt(interval.value, signed, pct)} [{_fmt(interval.low, signed, pct)}, " + (
        f"{_fmt(interval.high, signed, pct)}]"
    )


def _fmt(value: float, signed: bool, pct: bool) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    if pct:
        return f"{value:+.1%}" if signed else f"{value:.1%}"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def scaled(estimate: Estimate, factor: float) -> Estimate:
    """`factor` x the estimate (e.g. N x the 1-GPU rate: what linear scaling would give)."""
    se = None if estimate.se is None else estimate.se * factor
    samples = estimate.samples
    if not estimate.method.startswith("batch means"):  # batch means hold step times
        samples = tuple(sample * factor for sample in samples)
    return Estimate(
        estimate.value * factor,
        se,
        estimate.df,
        estimate.method,
        samples,
        estimate.cv_steps,
        estimate.cv_repeats,
    )
