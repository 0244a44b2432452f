"""95% intervals for the report: across repeats (Student t), between two cells' repeats
(Welch), and a bootstrap of the mean ROC AUC over validation examples.

No SciPy: the two-sided 95% t quantiles are tabulated (df 1-30; beyond, 1.96 is within 2%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
# t_{0.975, df}, df = 1..30.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20171114  # fixed: the same results give the same report
BOOTSTRAP_CHUNK = 100


@dataclass(frozen=True)
class Interval:
    """An estimate and its 95% interval (low, high); `half` for a symmetric one."""

    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def t_quantile(df: float) -> float:
    """Two-sided 95% Student t quantile; fractional df (Welch) rounds down (conservative)."""
    whole = max(1, int(math.floor(df)))
    return T_975[whole - 1] if whole <= len(T_975) else 1.96


def mean_interval(values: Sequence[float]) -> Interval | None:
    """The mean and its 95% t interval; None for fewer than two values."""
    if len(values) < 2:
        return None
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    half = t_quantile(len(array) - 1) * float(array.std(ddof=1)) / math.sqrt(len(array))
    return Interval(mean, mean - half, mean + half)


def welch_interval(first: Sequence[float], second: Sequence[float]) -> Interval | None:
    """mean(second) - mean(first) with a Welch 95% interval; None unless both have >= 2."""
    if len(first) < 2 or len(second) < 2:
        return None
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference = float(b.mean() - a.mean())
    spread = math.sqrt(va + vb)
    if spread == 0:
        return Interval(difference, difference, difference)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(df) * spread
    return Interval(difference, difference - half, difference + half)


def weighted_mean_auc(ranks: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over classes of the ROC AUC, one per row of `weights` (example weights [R, N]).

    Mann-Whitney with ties counted half, each example counted `weight` times: a bootstrap
    resample's AUC exactly. Classes with no positive or no negative weight are left out of
    that resample's mean (as bench.fit leaves undefined classes out); NaN if none is left.
    """
    resamples = weights.shape[0]
    per_class = np.full((resamples, ranks.shape[1]), np.nan)
    for index in range(ranks.shape[1]):
        order = np.argsort(ranks[:, index], kind="mergesort")
        sorted_ranks = ranks[order, index]
        positive = labels[order, index].astype(bool)
        starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_ranks)) + 1))
        w = weights[:, order]
        pos = np.add.reduceat(np.where(positive, w, 0.0), starts, axis=1)
        neg = np.add.reduceat(np.where(positive, 0.0, w), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class[:, index] = np.where(pairs > 0, wins / pairs, np.nan)
    defined = ~np.isnan(per_class)
    counts = defined.sum(axis=1)
    sums = np.where(defined, per_class, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def bootstrap_auc_difference(
    first: tuple[np.ndarray, np.ndarray],
    second: tuple[np.ndarray, np.ndarray],
    *,
    paired: bool,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile 95% interval of mean AUC(second) - mean AUC(first) over resampled examples.

    `first`, `second`: (score ranks, labels), each [examples, classes]. Paired: the same
    resample of examples for both (they must be the same examples in the same order);
    unpaired: independent resamples (wider, for validation sets that do not line up).
    """
    rng = np.random.default_rng(seed)
    count_a, count_b = first[1].shape[0], second[1].shape[0]
    if paired and count_a != count_b:
        raise ValueError(f"paired bootstrap needs equal examples, got {count_a} and {count_b}")
    differences = []
    done = 0
    while done < resamples:
        size = min(BOOTSTRAP_CHUNK, resamples - done)
        weights_a = rng.multinomial(count_a, np.full(count_a, 1.0 / count_a), size=size)
        weights_b = (
            weights_a
            if paired
            else rng.multinomial(count_b, np.full(count_b, 1.0 / count_b), size=size)
        )
        auc_a = weighted_mean_auc(*first, weights_a.astype(np.float64))
        auc_b = weighted_mean_auc(*second, weights_b.astype(np.float64))
        differences.append(auc_b - auc_a)
        done += size
    values = np.concatenate(differences)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
