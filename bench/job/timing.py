"""Step timing: per-step wall times, warm-up kept apart, and the figures derived from them.

Import this module early: `IMPORTED_AT` is taken at import, and with the process's create
time (psutil) it gives the job's start-up cost (interpreter, TensorFlow, Horovod, model
build and the first batch) up to the first timed step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

IMPORTED_AT = time.time()


def process_started_at() -> float:
    """When this process was created, on the time.time() clock."""
    return psutil.Process().create_time()


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear-interpolated percentile (fraction in [0, 1]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class StepTimes:
    """One rank's timings: warm-up steps apart from measured steps."""

    warmup_step_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    measured_start: float | None = None  # time.time() when the first measured step began
    measured_end: float | None = None
    first_step_at: float | None = None  # time.time() when the first step (any) began
    time_to_first_batch_s: float | None = None
    # Time inside the measured window spent on other work (fit: validation between epochs).
    paused_s: float = 0.0

    @property
    def measured_s(self) -> float | None:
        """Wall time of the measured steps: the window less the pauses inside it."""
        if self.measured_start is None or self.measured_end is None:
            return None
        return self.measured_end - self.measured_start - self.paused_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "warmup_step_s": self.warmup_step_s,
            "step_s": self.step_s,
            "measured_s": self.measured_s,
            "measured_start": self.measured_start,
            "measured_end": self.measured_end,
            "paused_s": self.paused_s,
            "first_step_at": self.first_step_at,
            "time_to_first_batch_s": self.time_to_first_batch_s,
            "startup_s": None
            if self.first_step_at is None
            else self.first_step_at - process_started_at(),
            "import_to_first_step_s": None
            if self.first_step_at is None
            else self.first_step_at - IMPORTED_AT,
        }


def time_steps(step: Callable[[], None], *, steps: int, warmup_steps: int) -> StepTimes:
    """Run `step` warmup_steps + steps times; `step` must block until its work is done."""
    times = StepTimes()
    for index in range(warmup_steps + steps):
        if index == warmup_steps:
            times.measured_start = time.time()
        began = time.perf_counter()
        if index == 0:
            times.first_step_at = time.time()
        step()
        elapsed = time.perf_counter() - began
        (times.warmup_step_s if index < warmup_steps else times.step_s).append(elapsed)
    times.measured_end = time.time()
    return times


def timing_section(per_rank: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The result's `timing` from every rank's `StepTimes.to_dict()`, in rank order."""
    startups = [rank["startup_s"] for rank in per_rank]
    first_batches = [rank["time_to_first_batch_s"] for rank in per_rank]
    return {
        "unit": "seconds",
        # The job is as slow to start as its slowest rank.
        "startup_s": _max_known(startups),
        "startup_s_per_rank": startups,
        "import_to_first_step_s_per_rank": [rank["import_to_first_step_s"] for rank in per_rank],
        "time_to_first_batch_s": _max_known(first_batches),
        "time_to_first_batch_s_per_rank": first_batches,
        "warmup_step_s": [rank["warmup_step_s"] for rank in per_rank],
        "step_s": [rank["step_s"] for rank in per_rank],
        "measured_s": [rank["measured_s"] for rank in per_rank],
    }


def throughput_section(
    per_rank: Sequence[dict[str, Any]], *, batch_per_rank: int
) -> dict[str, Any] | None:
    """Global images/s = ranks x batch x steps / the slowest rank's measured wall time."""
    ranks = len(per_rank)
    steps = len(per_rank[0]["step_s"])
    measured = [rank["measured_s"] for rank in per_rank]
    if steps == 0 or any(value is None or value <= 0 for value in measured):
        return None
    images_per_sec = ranks * batch_per_rank * steps / max(measured)
    pooled = [value for rank in per_rank for value in rank["step_s"]]
    windows = window_rates(per_rank, batch_per_rank=batch_per_rank)
    return {
        "unit": "images/s",
        "images_per_sec": images_per_sec,
        "images_per_sec_per_gpu": images_per_sec / ranks,
        "images_per_step": ranks * batch_per_rank,
        "step_p50_s": percentile(pooled, 0.50),
        "step_p90_s": percentile(pooled, 0.90),
        "step_p99_s": percentile(pooled, 0.99),
        "step_mean_s": sum(pooled) / len(pooled),
        # Consecutive measurement windows of the measured steps, each's images/s: their
        # spread gives the figure's interval (reports.stats) from one job.
        "window_images_per_sec": windows,
        "window_steps": steps // len(windows) if windows else None,
    }


MAX_WINDOWS = 10


def window_count(steps: int) -> int:
    """Windows for `steps` measured steps: about sqrt(steps), 2..MAX_WINDOWS, >= 2 steps
    each; 0 (no windows) below 4 steps."""
    if steps < 4:
        return 0
    return max(2, min(MAX_WINDOWS, math.isqrt(steps), steps // 2))


def window_rates(per_rank: Sequence[dict[str, Any]], *, batch_per_rank: int) -> list[float]:
    """images/s of each of `window_count` equal windows of consecutive measured steps, the
    earliest remainder left out (furthest from warm-up last); a window lasts as long as
    its slowest rank."""
    steps = min(len(rank["step_s"]) for rank in per_rank) if per_rank else 0
    count = window_count(steps)
    if count == 0:
        return []
    size = steps // count
    first = steps - size * count
    rates = []
    for window in range(count):
        start = first + window * size
        seconds = max(sum(rank["step_s"][start : start + size]) for rank in per_rank)
        if seconds <= 0:
            return []
        rates.append(len(per_rank) * batch_per_rank * size / seconds)
    return rates


def measured_window(per_rank: Sequence[dict[str, Any]]) -> tuple[float, float] | None:
    """From the first rank's start to the last rank's end of the measured steps."""
    starts = [rank["measured_start"] for rank in per_rank]
    ends = [rank["measured_end"] for rank in per_rank]
    if None in starts or None in ends:
        return None
    return (min(starts), max(ends))


def _max_known(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None
