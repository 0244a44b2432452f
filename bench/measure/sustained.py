"""The tuned pipeline's reader alone on every core: where a pipeline's gap to its bound goes.

`reader_alone(source, image_size=, batch_size=, seconds=, processes=)` runs the host
decoder's own per-batch work (bench.input.host_batch.BatchReader: read by offset with the
CRC checked, parse, decode, resize, flip, write into a batch) in `processes` processes at
once, with no TensorFlow, no tf.data and no hand-off between processes, for `seconds` after
a warm-up, each process over all the source's examples in its own shuffled order, half of
them flipped. It reports their images/s together and their CPU per image.

Read beside the bound (bench.measure.bound): tuned / reader alone is what tf.data, the
training process and the hand-off to the decode workers cost; reader alone / bound is the
reader's own Python per record plus the machine with every core busy for seconds (the bound
takes each stage's least disturbed few milliseconds on one core). It is no bound: a
pipeline measured in a quieter moment can beat it.

Run as `python -m bench.measure.sustained` it is one such process (started by
`reader_alone`; it never imports TensorFlow). Protocol over its standard input and output:
u32 length and a pickled `ReaderSetup` in; the line `ready` out after the warm-up; one byte
in to start; one JSON line out at the end (images, bad_examples, wall_s, cpu_s).
"""

from __future__ import annotations

import json
import os
import pickle
import selectors
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import IO, Any

import numpy as np

from bench.input.batch_arrays import aligned_empty
from bench.input.decode_pool import child_environment
from bench.input.host_batch import BatchReader, BatchSource
from converters.labels import NUM_LABELS

LENGTH = struct.Struct("<I")
START_LIMIT_S = 60.0  # a process not ready by then (imports, warm-up) has failed
EXIT_WAIT_S = 5.0


@dataclass(frozen=True)
class ReaderSetup:
    """What one process reads: these examples, in batches, for this long."""

    source: BatchSource
    source_ids: tuple[int, ...]
    records: tuple[int, ...]
    batch_size: int
    warmup_batches: int
    seconds: float
    seed: int


def reader_alone(
    source: Any,
    *,
    image_size: int,
    batch_size: int,
    seconds: float,
    processes: int,
    warmup_batches: int = 3,
    seed: int = 0,
    sample: int | None = None,
) -> dict[str, Any]:
    """The reader's images/s in `processes` processes at once over `source` (a
    bench.input.sources.Source), or over its first `sample` examples only (the bound's
    sample: bench.measure.bound), and its CPU seconds per image; every process's figures.
    Raises RuntimeError naming the process that failed, with its stderr."""
    from bench.input.host_decode import batch_source, examples

    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1 example, not {sample}")
    source_ids, records = (found[:sample] for found in examples(source))
    spec = batch_source(source, image_size)
    with tempfile.TemporaryDirectory(prefix="chexbench-reader-") as logs:
        started = [_start(index, logs) for index in range(processes)]
        try:
            setup = ReaderSetup(
                source=spec,
                source_ids=tuple(source_ids.tolist()),
                records=tuple(records.tolist()),
                batch_size=batch_size,
                warmup_batches=warmup_batches,
                seconds=seconds,
                seed=seed * 1_000,
            )
            for index, (process, _) in enumerate(started):
                payload = pickle.dumps(replace(setup, seed=setup.seed + index))
                _send(process, LENGTH.pack(len(payload)) + payload)
            for index, started_one in enumerate(started):
                _expect_line(started_one, index, START_LIMIT_S, b"ready")
            for process, _ in started:  # all start together: every core busy at once
                _send(process, b"g")
            reports = [
                json.loads(_expect_line(one, index, START_LIMIT_S + seconds * 4, None))
                for index, one in enumerate(started)
            ]
        finally:
            for process, _ in started:
                if process.poll() is None:
                    process.kill()
                process.wait()
    bad = sum(report["bad_examples"] for report in reports)
    if bad:  # zeros instead of images: not the work of decoding them
        folder = os.path.dirname(source.files[0])
        raise RuntimeError(
            f"reading alone: {bad} examples read in {folder} could not be read or decoded "
            "(the benchmark's data must be intact; for records, python -m converters.verify "
            "names them)"
        )
    images = sum(report["images"] for report in reports)
    cpu_s = sum(report["cpu_s"] for report in reports)
    return {
        "images_per_sec": sum(report["images"] / report["wall_s"] for report in reports),
        "cpu_s_per_image": cpu_s / images if images else None,
        "processes": reports,
        "unit": "images/s; CPU seconds per image",
    }


def _start(index: int, logs: str) -> tuple[subprocess.Popen[bytes], str]:
    log = os.path.join(logs, f"reader-{index}.stderr")
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.measure.sustained"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=child_environment(),
            bufsize=0,  # unbuffered: a line read never reads ahead of what select saw
        )
    return process, log


def _send(process: subprocess.Popen[bytes], data: bytes) -> None:
    assert process.stdin is not None
    view = memoryview(data)
    while view:
        view = view[process.stdin.write(view) or 0 :]


def _expect_line(
    started: tuple[subprocess.Popen[bytes], str], index: int, limit_s: float, expected: bytes | None
) -> bytes:
    """The next line of a process's output (`expected`, when given), within `limit_s`."""
    process, log = started
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = bool(selector.select(limit_s))
        line = process.stdout.readline() if ready else b""
    if not line.endswith(b"\n") or (expected is not None and line.strip() != expected):
        try:  # at the end of its output, the process is exiting: its code says why
            exited = process.wait(EXIT_WAIT_S) if ready and not line else process.poll()
        except subprocess.TimeoutExpired:
            exited = None
        if exited is None:
            process.kill()
            process.wait()
        with open(log, "rb") as stderr:
            tail = stderr.read()[-2000:].decode(errors="replace").strip()
        wanted = expected.decode() if expected else "its figures"
        what = f"exited with {exited}" if exited is not None else "did not answer"
        raise RuntimeError(
            f"reader process {index} {what} (expected {wanted} within {limit_s:g} s"
            f"{', got ' + repr(line[:200]) if line else ''}): {tail or 'no stderr'}"
        )
    return line


def serve(requests: IO[bytes], replies: IO[bytes]) -> int:
    header = requests.read(LENGTH.size)
    if len(header) < LENGTH.size:
        return 2
    setup: ReaderSetup = pickle.loads(requests.read(LENGTH.unpack(header)[0]))
    reader = BatchReader(setup.source)
    size, count = setup.source.image_size, setup.batch_size
    # One batch's arrays, written over and over, as a decode worker writes into its slots.
    out = (
        aligned_empty((count, size, size, 1), np.uint8),
        aligned_empty((count, NUM_LABELS), np.float32),
        aligned_empty((count,), np.int32),
    )
    batches = _batches(setup)
    for _ in range(setup.warmup_batches):
        reader(*next(batches), out=out)
    replies.write(b"ready\n")
    replies.flush()
    if not requests.read(1):
        return 0  # the parent is gone
    images = bad = 0
    began_cpu, began = time.process_time(), time.perf_counter()
    while (elapsed := time.perf_counter() - began) < setup.seconds:
        source_ids, records, flips = next(batches)
        bad += int(np.count_nonzero(reader(source_ids, records, flips, out=out)[2]))
        images += len(source_ids)
    cpu_s = time.process_time() - began_cpu
    figures = {"images": images, "bad_examples": bad, "wall_s": elapsed, "cpu_s": cpu_s}
    replies.write(json.dumps(figures).encode())
    replies.write(b"\n")
    replies.flush()
    return 0


def _batches(setup: ReaderSetup) -> Any:
    """Endless batches of (source ids, records, flips): each epoch in a fresh order."""
    generator = np.random.default_rng(setup.seed)
    source_ids = np.asarray(setup.source_ids, np.int64)
    records = np.asarray(setup.records, np.int64)
    if not len(source_ids):
        raise ValueError("the source has no examples to read")
    while True:
        order = generator.permutation(len(source_ids))
        flips = generator.integers(0, 2, len(order), dtype=np.uint8)
        for start in range(0, len(order) - setup.batch_size + 1, setup.batch_size):
            picked = order[start : start + setup.batch_size]
            yield source_ids[picked], records[picked], flips[start : start + setup.batch_size]
        if len(order) < setup.batch_size:  # fewer examples than a batch: repeat them
            picked = np.resize(order, setup.batch_size)
            yield source_ids[picked], records[picked], np.resize(flips, setup.batch_size)


def main() -> int:
    # The protocol owns the original standard output; stray prints go to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    raise SystemExit(main())
