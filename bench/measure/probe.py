"""The pipeline-only probe: what an input pipeline supplies with no model behind it.

`probe` pulls batches from a dataset as fast as it gives them and records everything a
report needs to judge the figure: the first batch (iterator start-up) and the warm-up
batches, excluded from the rate but kept; every measured batch's time; the images per
second between the window's first and last stalls (below); latency percentiles; host CPU
use of the pipeline's processes (this one and its decode workers) and of the whole machine.
The pipeline bound (bench.measure.bound) is the reference to put beside it.

A tf.data dataset is consumed as a training step consumes it, in a compiled function
(bench.measure.graph_consumer; each batch timed in the graph), not by Python's `next()`,
whose own CPU per batch the pipeline does not spend in training; any other iterable by
`next()`. TensorFlow is imported only for a tf.data dataset (it is loaded by then).

The rate runs from stall to stall: from the arrival of the window's first batch the consumer
had to wait for (at least STALL_SHARE of the window's mean batch time) to its last one, where
the pipeline's buffers are in the same state (drained, the consumer waiting). A pipeline that
makes whole batches per call, several calls at a time, delivers them in bursts; counted over
the whole window, batches made before it (during the warm-up) count in it at no cost. Measured:
full-size PNG records, two batches of 64 at a time: 374-380 images/s over the whole window,
336-342 from stall to stall.

Each end of that window can still be off by up to one burst: at a stall the calls in flight
are part done, by a share that differs from one stall to the next. Over a window of few
bursts that is a large share of it (png 256 px records in calls of 512 images: 9-11 bursts in
3 s, rounds of 3,088-3,642 images/s, the best one 5 % over its bound). So with `min_seconds`
the window also spans at least MIN_STALLS stalls where they come within MAX_WINDOW_FACTOR
times `min_seconds`: one burst at either end of 40 is 2.5 % at most.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import psutil

__all__ = ["ProbeResult", "probe"]

HOST_CPU_MIN_WINDOW_S = 0.25  # machine-wide CPU below this is not reported (tick counts)
STALL_SHARE = 0.5  # of the window's mean batch time: a batch the consumer waited for
MIN_STALLS = 40  # stalls a window with `min_seconds` spans, where they fit in ...
MAX_WINDOW_FACTOR = 4.0  # ... this many times `min_seconds`
STALL_TO_STALL = "from the first stall to the last"
WHOLE_WINDOW = "the whole window (fewer than two stalls)"


@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """One probe of one dataset. Times in seconds, CPU in percent, rates in images/s."""

    batch_size: int  # nominal, per batch
    batches: int  # measured batches (fewer than asked when the dataset ended)
    images: int  # images in the measured batches
    measured_s: float | None
    images_per_sec: float | None  # rate_images / rate_s; None (with `note`) when nothing was
    # measured
    rate_images: int | None  # images the rate counts: those after the first stall, to the last
    rate_s: float | None  # their window: measured_s less the batches left out either side
    rate_window: str | None  # STALL_TO_STALL, or WHOLE_WINDOW where stalls were too few
    time_to_first_batch_s: float  # iterator creation + first batch; always excluded
    warmup_batches: int
    warmup_batch_s: list[float]  # the excluded warm-up batches after the first
    batch_s: list[float]  # every measured batch
    latency_p50_s: float | None
    latency_p90_s: float | None
    latency_p99_s: float | None
    # The pipeline's processes over the measured window (this one and its decode workers,
    # bench.input.decode_pool); 100 = one core.
    process_cpu_pct: float | None
    host_cpu_pct: float | None  # the whole machine over the window; 100 = every core busy
    cpu_count: int
    exhausted: bool  # the dataset ended before the asked-for batches
    skipped_examples: int | None = None  # bad examples dropped (skip_bad), else None
    # Of that, the decode workers' (as they report it per batch; None: none worked).
    worker_cpu_pct: float | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["units"] = {"time": "seconds", "rate": "images/s", "cpu": "percent"}
        return result


def probe(
    dataset: Iterable[Any],
    *,
    batch_size: int,
    batches: int,
    warmup_batches: int,
    min_seconds: float = 0.0,
) -> ProbeResult:
    """Pull 1 + warmup_batches + batches batches from `dataset` and time them.

    With `min_seconds`, measuring goes on past `batches` until the measured window is at
    least that long (or the dataset ends): fast pipelines otherwise give windows too
    short to mean anything; then on until it spans MIN_STALLS stalls, for at most
    MAX_WINDOW_FACTOR x `min_seconds` in all (a pipeline that delivers in bursts).
    """
    if batches < 1 or warmup_batches < 0:
        raise ValueError(
            f"need batches >= 1 and warmup_batches >= 0, got {batches}, " f"{warmup_batches}"
        )
    try:
        return _probe(dataset, batch_size, batches, warmup_batches, min_seconds)
    finally:
        # A tf.data iterator sits in reference cycles (its compiled consumer): collected
        # only when Python's cyclic collector runs, and until then its threads go on
        # filling their buffers, CPU that the next measurement in this process (another
        # probe, the bound's stage timings) would be charged (~1 s of a core, measured).
        gc.collect()


def _probe(
    dataset: Iterable[Any],
    batch_size: int,
    batches: int,
    warmup_batches: int,
    min_seconds: float,
) -> ProbeResult:
    started = time.perf_counter()
    iterator = iter(dataset)
    created_s = time.perf_counter() - started
    # Made before the first batch, so that no batch is made while it is traced.
    set_up = time.perf_counter()
    pull, consumer = _puller(dataset, iterator)
    consumer_setup_s = time.perf_counter() - set_up
    began = time.perf_counter()
    first = pull(1)
    time_to_first = created_s + (time.perf_counter() - began)
    if not first:
        return _empty(batch_size, time_to_first, "the dataset yielded no batch")
    warmup = [batch for _ in range(warmup_batches) for batch in pull(1)]
    # process_time() is this process's user + system CPU, every thread, in nanoseconds;
    # psutil's cpu_times() counts clock ticks (10 ms) and reads 0 % or 300 % on short windows.
    cpu_before = time.process_time()
    workers_before = _workers_cpu_s()
    psutil.cpu_percent(interval=None)  # starts the machine-wide window
    window_start = time.perf_counter()
    measured = pull(batches)
    while len(measured) >= batches and _window_short(measured, window_start, min_seconds):
        # In steps of a quarter of what was measured so far: few calls, little overshoot.
        more = pull(max(1, len(measured) // 4))
        if not more:
            break
        measured += more
    measured_s = time.perf_counter() - window_start
    host_pct = psutil.cpu_percent(interval=None)
    cpu_after = time.process_time()
    workers_after = _workers_cpu_s()
    times = [seconds for seconds, _ in measured]
    images = sum(count for _, count in measured)
    exhausted = len(warmup) < warmup_batches or len(measured) < batches
    percentiles = _percentiles(times)
    process_pct = worker_pct = None
    if measured_s > 0:
        process_pct = 100.0 * (cpu_after - cpu_before) / measured_s
    spent = sum(
        workers_after[pid] - workers_before[pid]
        for pid in workers_before.keys() & workers_after.keys()
    )
    if spent > 0 and process_pct is not None:  # idle workers of other pipelines add nothing
        worker_pct = 100.0 * spent / measured_s
        process_pct += worker_pct
    if measured_s < HOST_CPU_MIN_WINDOW_S:
        host_pct = None  # /proc/stat counts 10 ms ticks: a shorter window reads noise
    rate_images, rate_s, rate_window = rate_span(measured, measured_s)
    return ProbeResult(
        batch_size=batch_size,
        batches=len(measured),
        images=images,
        measured_s=measured_s if measured else None,
        images_per_sec=rate_images / rate_s if measured and rate_s > 0 else None,
        rate_images=rate_images if measured else None,
        rate_s=rate_s if measured else None,
        rate_window=rate_window if measured else None,
        time_to_first_batch_s=time_to_first,
        warmup_batches=len(warmup),
        warmup_batch_s=[seconds for seconds, _ in warmup],
        batch_s=times,
        latency_p50_s=percentiles[0],
        latency_p90_s=percentiles[1],
        latency_p99_s=percentiles[2],
        process_cpu_pct=process_pct if measured else None,
        host_cpu_pct=host_pct if measured else None,
        cpu_count=os.cpu_count() or 1,
        exhausted=exhausted,
        skipped_examples=_skipped(dataset),
        worker_cpu_pct=worker_pct if measured else None,
        note=_note(len(warmup), len(measured), warmup_batches, batches),
        extra={"consumer": consumer, "consumer_setup_s": consumer_setup_s},
    )


def _window_short(measured: list[tuple[float, int]], start: float, min_seconds: float) -> bool:
    """Whether a window with `min_seconds` should go on (see the module's docstring)."""
    elapsed = time.perf_counter() - start
    if elapsed < min_seconds:
        return True
    if min_seconds <= 0 or elapsed >= MAX_WINDOW_FACTOR * min_seconds:
        return False
    return stall_count([seconds for seconds, _ in measured]) < MIN_STALLS


def stall_count(times: list[float]) -> int:
    """How many batches of `times` the consumer waited for (see _stalls)."""
    return len(_stalls(times))


def _stalls(times: list[float]) -> list[int]:
    """Indices of the batches the consumer waited for: at least STALL_SHARE of the mean
    batch time."""
    if not times:
        return []
    threshold = STALL_SHARE * sum(times) / len(times)
    return [index for index, seconds in enumerate(times) if seconds >= threshold]


def rate_span(measured: list[tuple[float, int]], measured_s: float) -> tuple[int, float, str]:
    """(images, seconds, how) of the window the rate counts: the batches after the first
    stall up to the last one, over measured_s less the left-out batches' times (the pulls'
    own gaps stay in: a rate too low, never too high). The whole window where fewer than two
    stalls leave at least half the batches between them."""
    times = [seconds for seconds, _ in measured]
    whole = (sum(count for _, count in measured), measured_s, WHOLE_WINDOW)
    if len(times) < 3:
        return whole
    stalls = _stalls(times)
    if len(stalls) < 2 or stalls[-1] - stalls[0] < len(times) // 2:
        return whole
    first, last = stalls[0] + 1, stalls[-1]
    left_out = sum(times[:first]) + sum(times[last + 1 :])
    images = sum(count for _, count in measured[first : last + 1])
    return images, measured_s - left_out, STALL_TO_STALL


def _workers_cpu_s() -> dict[int, float]:
    """CPU seconds of each live decode worker of this process (bench.input.decode_pool,
    TensorFlow-free), as each reported it with its last batch."""
    from bench.input.decode_pool import workers_cpu_s

    return workers_cpu_s()


Puller = Callable[[int], list[tuple[float, int]]]
PYTHON_CONSUMER = "batches pulled by Python's next(), one call per batch"


def _puller(dataset: Any, iterator: Any) -> tuple[Puller, str]:
    """How batches are pulled from `iterator`, and its description for the results."""
    if "tensorflow" in sys.modules:
        from bench.measure import graph_consumer

        if graph_consumer.is_dataset(dataset):
            return graph_consumer.GraphPuller(iterator), graph_consumer.CONSUMER
    return (lambda count: _timed_batches(iterator, count)), PYTHON_CONSUMER


def _timed_batches(iterator: Any, count: int) -> list[tuple[float, int]]:
    """(seconds, images) per batch, for up to `count` batches."""
    timed: list[tuple[float, int]] = []
    for _ in range(count):
        start = time.perf_counter()
        batch = next(iterator, None)
        elapsed = time.perf_counter() - start
        if batch is None:
            break
        timed.append((elapsed, _batch_images(batch)))
    return timed


def _batch_images(batch: Any) -> int:
    """The leading dimension of the batch's first tensor (the images)."""
    first = batch
    while isinstance(first, tuple | list):
        first = first[0]
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return int(first.shape[0])


def _percentiles(times: list[float]) -> tuple[float | None, float | None, float | None]:
    if not times:
        return None, None, None
    p50, p90, p99 = np.percentile(np.asarray(times), [50, 90, 99])
    return float(p50), float(p90), float(p99)


def _skipped(dataset: Any) -> int | None:
    from bench.input.pipelines import skipped_count  # TensorFlow is loaded by now

    try:
        return skipped_count(dataset)
    except TypeError:  # not a tf.data.Dataset: cannot be a key of the guard registry
        return None


def _note(warmed: int, measured: int, warmup_batches: int, batches: int) -> str | None:
    if warmed < warmup_batches:
        return f"the dataset ended during warm-up ({warmed} of {warmup_batches} batches)"
    if measured < batches:
        return f"the dataset ended after {measured} of {batches} measured batches"
    return None


def _empty(batch_size: int, time_to_first: float, note: str) -> ProbeResult:
    return ProbeResult(
        batch_size=batch_size,
        batches=0,
        images=0,
        measured_s=None,
        images_per_sec=None,
        rate_images=None,
        rate_s=None,
        rate_window=None,
        time_to_first_batch_s=time_to_first,
        warmup_batches=0,
        warmup_batch_s=[],
        batch_s=[],
        latency_p50_s=None,
        latency_p90_s=None,
        latency_p99_s=None,
        process_cpu_pct=None,
        host_cpu_pct=None,
        cpu_count=os.cpu_count() or 1,
        exhausted=True,
        note=note,
    )
