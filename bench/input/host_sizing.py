"""How the tuned pipeline's host decoder (bench.input.host_decode) is sized: its decode
processes, the images per call into them, and the calls it keeps in flight."""

from __future__ import annotations

import os
from typing import Protocol

from bench.input import decode_pool
from bench.input.sources import Source

__all__ = [
    "HOST_CHUNK_BATCHES",
    "HOST_CHUNK_IMAGES",
    "cores",
    "decode_processes",
    "host_calls_in_flight",
    "host_chunk",
]


class PipelineOptions(Protocol):
    """The fields of bench.input.pipelines.PipelineOptions read here (that module imports
    this one)."""

    batch_size: int
    parallel_calls: int | None
    decode_processes: int | None
    local_ranks: int
    decode_chunk: int | None


def decode_processes(source: Source, options: PipelineOptions) -> int:
    """The host decoder's worker processes for this source (0: in the pipeline's threads).

    By default: for images of one stored size (resized conversions), the cores this process
    may use shared among the host's `local_ranks`, at least 1: there the per-record Python
    holds the GIL for much of the work (raw uint8 records: 1.7-1.8x with processes, per
    interleaved round of bench.pipeline_benchmark). Full-size images decode in the
    pipeline's threads: their decode releases the GIL for nearly all the work, and
    processes measured 0.87-0.98x threads there.
    """
    if options.decode_processes is not None:
        return options.decode_processes
    if source.stored_size is None:
        return 0
    return max(1, cores() // options.local_ranks)


# Images per call into decode processes, at least: each call costs the training process
# thread hand-offs and wake-ups in tf.data and the pool (about 1.5 ms of its CPU with both
# cores busy decoding), so fewer, larger calls leave the workers more of the cores.
# Measured (256 px JPEG records, batch 64, 2 cores, interleaved rounds of 3 s): the
# training process's CPU per image 20-22 us in calls of one batch, 10-13 in calls of 256
# images; 256 -> 512 images: -2.3 us [-2.9, -1.8], images/s x1.031 [1.004, 1.058] (16
# rounds). The price is shared memory: decode_pool's SLOTS_PER_PROCESS +
# LEASED_SLOTS_PER_PROCESS (7) slots of a chunk per worker, 25.7 MB each at 224 px.
HOST_CHUNK_IMAGES = 512
# Batches per call, at most: a call's batches arrive at once, and a consumer timing its
# steps sees bursts of that many (the default sweep's batches of 8 in calls of 256 images:
# its tuned pipeline cell's step times had a coefficient of variation of 604 %, naive's 23 %;
# in bursts of 8 its interval is +-10 % over 960 steps, +-47 % over 480).
HOST_CHUNK_BATCHES = 8


def host_chunk(source: Source, options: PipelineOptions) -> int:
    """Images per host decoder call: `decode_chunk`, else whole batches, enough for
    HOST_CHUNK_IMAGES but at most HOST_CHUNK_BATCHES, in decode processes; one batch in the
    pipeline's own threads, where a call costs no hand-off between processes."""
    if decode_processes(source, options) == 0:
        return options.batch_size
    if options.decode_chunk is not None:
        return options.decode_chunk
    batches = min(HOST_CHUNK_BATCHES, -(-HOST_CHUNK_IMAGES // options.batch_size))
    return batches * options.batch_size


def host_calls_in_flight(source: Source, options: PipelineOptions) -> int:
    """Host decoder calls the tuned pipeline keeps in flight: one per slot of its decode
    processes (0 when it decodes in its own threads: AUTOTUNE then)."""
    processes = decode_processes(source, options)
    if processes == 0:
        return 0
    return options.parallel_calls or processes * decode_pool.SLOTS_PER_PROCESS


def cores() -> int:
    """The cores this process may run on (its affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
