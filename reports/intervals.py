"""95% intervals for the report: across repeats (Student t), between two cells' repeats
(Welch), and a bootstrap of the mean ROC AUC over validation examples (each run's bootstrap
distribution computed once; a difference of two runs pairs their draws index by index,
independent when their seeds differ).

Student's t quantiles are reports.stats' (one table for the whole report).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reports.stats import t_quantile

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


@dataclass(frozen=True)
class _SortedClass:
    """One class's examples in score order: the order, where tied groups start, positives."""

    order: np.ndarray
    starts: np.ndarray | None  # None: no ties, every example its own group
    positive: np.ndarray  # float32 0/1 in score order


def _sorted_classes(ranks: np.ndarray, labels: np.ndarray) -> list[_SortedClass]:
    prepared = []
    for index in range(ranks.shape[1]):
        order = np.argsort(ranks[:, index], kind="mergesort")
        sorted_ranks = ranks[order, index]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(sorted_ranks)) + 1))
        prepared.append(
            _SortedClass(
                order=order,
                starts=None if len(starts) == len(order) else starts,
                positive=labels[order, index].astype(np.float32),
            )
        )
    return prepared


def weighted_mean_auc(
    ranks: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    prepared: list[_SortedClass] | None = None,
) -> np.ndarray:
    """Mean over classes of the ROC AUC, one per row of `weights` (example weights [R, N]).

    Mann-Whitney with ties counted half, each example counted `weight` times: a bootstrap
    resample's AUC exactly. Classes with no positive or no negative weight are left out of
    that resample's mean (as bench.job.fit leaves undefined classes out); NaN if none is left.
    """
    classes = prepared if prepared is not None else _sorted_classes(ranks, labels)
    weights = np.asarray(weights, dtype=np.float32)
    per_class = np.full((weights.shape[0], len(classes)), np.nan)
    for index, item in enumerate(classes):
        w = weights[:, item.order]
        pos = w * item.positive
        if item.starts is not None:  # sum tied examples into one group each
            total = np.add.reduceat(w, item.starts, axis=1)
            pos = np.add.reduceat(pos, item.starts, axis=1)
        else:
            total = w
        neg = total - pos
        below = np.cumsum(neg, axis=1, dtype=np.float64) - neg
        pairs = pos.sum(axis=1, dtype=np.float64) * neg.sum(axis=1, dtype=np.float64)
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class[:, index] = np.where(pairs > 0, wins / pairs, np.nan)
    defined = ~np.isnan(per_class)
    counts = defined.sum(axis=1)
    sums = np.where(defined, per_class, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _resample_counts(rng: np.random.Generator, examples: int, size: int) -> np.ndarray:
    """[size, examples]: how often each example is drawn in each resample (with replacement)."""
    drawn = rng.integers(0, examples, size=(size, examples))
    offsets = np.arange(size)[:, None] * examples
    return np.bincount((drawn + offsets).ravel(), minlength=size * examples).reshape(size, examples)


def bootstrap_mean_auc(
    ranks: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> np.ndarray:
    """The mean AUC of `resamples` resamples (with replacement) of the examples; the same
    seed gives the same resamples (so two runs bootstrapped with one seed are paired)."""
    rng = np.random.default_rng(seed)
    prepared = _sorted_classes(ranks, labels)
    values = []
    for done in range(0, resamples, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, resamples - done)
        weights = _resample_counts(rng, labels.shape[0], size)
        values.append(weighted_mean_auc(ranks, labels, weights, prepared=prepared))
    return np.concatenate(values)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the defined values; NaNs if none is."""
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(defined, [2.5, 97.5])
    return float(low), float(high)
