"""The bare-decoder ceiling: how fast this machine's CPUs decode the same images, no tf.data.

One process per core (spawned, TensorFlow never imported), each decoding a contiguous share
of the images with PIL and resizing them to image_size x image_size (skipped when equal).
Raw files are read from disk; TFRecords are read with a plain Python reader and their
tf.train.Example parsed by a minimal protobuf reader, then the payload is decoded
(png/jpeg with PIL, raw = np.frombuffer).

PIL has two bilinear resizes: `Image.resize` (antialiased when shrinking: more taps, a
smoother image) and an affine `Image.transform` (plain interpolation at pixel centres, the
pipelines' own arithmetic to within one gray level). Which is faster depends on the
shrink factor, so each worker times both on its warm-up pass and measures with the faster:
a ceiling is the best the bare decoder can do. Workers start, import, warm up and report
ready before the clock starts; the rate is all images over the slowest worker's time.
"""

from __future__ import annotations

import gzip
import io
import multiprocessing
import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from queue import Empty
from typing import Any

import numpy as np
from PIL import Image

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
_WANTED = frozenset({ENCODED, FORMAT, HEIGHT, WIDTH, CHANNELS})


@dataclass(frozen=True)
class Work:
    """One worker's share: image files, or (shard, first record, record count) ranges."""

    kind: str  # "raw" | "tfrecord"
    files: tuple[str, ...] = ()
    ranges: tuple[tuple[str, int, int], ...] = ()
    compression: str = "none"


def decoder_ceiling(
    source: Any,
    *,
    processes: int | None = None,
    image_size: int = 224,
    limit: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Images/s of bare PIL decoding of `source` (a bench.input.sources.Source, or a list of image
    files) in `processes` processes (default: one per core).

    `limit` caps the images decoded (the first ones); `seconds`, when given, keeps each
    worker cycling over its share until that much time has passed.
    """
    processes = processes or os.cpu_count() or 1
    shares = _split(source, processes, limit)
    context = multiprocessing.get_context("spawn")
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    workers = [
        context.Process(
            target=_worker, args=(share, image_size, seconds, ready, results, start), daemon=True
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            _get(ready, workers)
        start.set()
        outcomes = [_get(results, workers) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
    errors = [outcome["error"] for outcome in outcomes if outcome.get("error")]
    if errors:
        raise RuntimeError(f"decoder ceiling failed: {errors[0]}")
    images = sum(outcome["images"] for outcome in outcomes)
    wall_s = max(outcome["seconds"] for outcome in outcomes)
    return {
        "images_per_sec": images / wall_s if wall_s > 0 else None,
        "images": images,
        "wall_s": wall_s,
        "processes": len(shares),
        "per_process_s": [outcome["seconds"] for outcome in outcomes],
        "resize_methods": sorted({outcome["method"] for outcome in outcomes}),
        "warmup_s_by_method": [outcome["warmup_s"] for outcome in outcomes],
        "image_size": image_size,
        "decoder": f"PIL {Image.__version__}",
        "unit": "images/s",
    }


def _get(queue: Any, workers: list[Any]) -> Any:
    """The next message, or an error as soon as a worker has died without sending one."""
    while True:
        try:
            return queue.get(timeout=1.0)
        except Empty:
            dead = [worker.exitcode for worker in workers if worker.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a decoder-ceiling worker died (exit code {dead[0]})") from None


def _split(source: Any, processes: int, limit: int | None) -> list[Work]:
    """Contiguous shares of the first `limit` images, one per process (none empty)."""
    if getattr(source, "format", "raw") == "tfrecord":
        items = [
            (path, index)
            for path, count in zip(source.files, source.record_counts, strict=True)
            for index in range(count)
        ]
    else:
        items = [str(path) for path in getattr(source, "files", source)]
    items = items[:limit] if limit is not None else items
    if not items:
        raise ValueError("the decoder ceiling needs at least one image")
    count = min(processes, len(items))
    bounds = [len(items) * part // count for part in range(count + 1)]
    chunks = [items[bounds[part] : bounds[part + 1]] for part in range(count)]
    if getattr(source, "format", "raw") != "tfrecord":
        return [Work(kind="raw", files=tuple(chunk)) for chunk in chunks]
    compression = getattr(source, "compression", "none")
    return [
        Work(kind="tfrecord", ranges=_ranges(chunk), compression=compression) for chunk in chunks
    ]


def _ranges(chunk: Sequence[tuple[str, int]]) -> tuple[tuple[str, int, int], ...]:
    ranges: list[tuple[str, int, int]] = []
    for path, index in chunk:
        if ranges and ranges[-1][0] == path:
            ranges[-1] = (path, ranges[-1][1], ranges[-1][2] + 1)
        else:
            ranges.append((path, index, 1))
    return tuple(ranges)


def _worker(
    work: Work, image_size: int, seconds: float | None, ready: Any, results: Any, start: Any
) -> None:
    # The warm-up passes also warm the page cache and the imports.
    warmup_s: dict[str, float] = {}
    try:
        for method in RESIZE_METHODS:
            began = time.perf_counter()
            decode_share(work, image_size, limit_s=None, method=method)
            warmup_s[method] = time.perf_counter() - began
    except Exception as error:  # reported to the parent, which raises it
        ready.put(False)
        results.put({"error": f"{type(error).__name__}: {error}"})
        return
    method = min(warmup_s, key=warmup_s.__getitem__)
    ready.put(True)
    start.wait()
    began = time.perf_counter()
    images = decode_share(work, image_size, limit_s=seconds, method=method)
    results.put(
        {
            "images": images,
            "seconds": time.perf_counter() - began,
            "method": method,
            "warmup_s": warmup_s,
        }
    )


RESIZE_METHODS = ("resize", "affine")


def decode_share(
    work: Work, image_size: int, *, limit_s: float | None, method: str = "affine"
) -> int:
    """Decode the share (once, or cycling until limit_s); return the images decoded."""
    deadline = None if limit_s is None else time.perf_counter() + limit_s
    images = 0
    while True:
        for pixels in _decoded(work, image_size, method):
            images += 1 if pixels.size else 0
            if deadline is not None and time.perf_counter() >= deadline:
                return images
        if deadline is None:
            return images


def _decoded(work: Work, image_size: int, method: str) -> Iterator[np.ndarray]:
    if work.kind == "raw":
        for path in work.files:
            with Image.open(path) as image:
                yield resized(image, image_size, method)
        return
    for path, first, count in work.ranges:
        for record in _records(path, work.compression, first, count):
            yield decode_example(record, image_size, method)


def decode_example(record: bytes, image_size: int, method: str = "affine") -> np.ndarray:
    """A serialized tf.train.Example -> uint8 [S, S] pixels, as the pipelines decode it."""
    example = parse_example(record)
    data = example[ENCODED]
    if example[FORMAT] == b"raw":
        height, width, channels = example[HEIGHT], example[WIDTH], example[CHANNELS]
        pixels = np.frombuffer(data, np.uint8).reshape(height, width, channels)
        return resized(Image.fromarray(pixels[..., 0]), image_size, method)
    with Image.open(io.BytesIO(data)) as image:
        return resized(image, image_size, method)


def resized(image: Image.Image, image_size: int, method: str = "affine") -> np.ndarray:
    """Gray uint8 [S, S]: `affine` is the pipelines' bilinear (pixel centres, no
    antialiasing); `resize` is PIL's antialiased bilinear."""
    gray = image if image.mode == "L" else image.convert("L")
    if gray.size == (image_size, image_size):
        return np.asarray(gray)
    bilinear = Image.Resampling.BILINEAR
    if method == "resize":
        return np.asarray(gray.resize((image_size, image_size), bilinear))
    width, height = gray.size
    scale = (width / image_size, 0.0, 0.0, 0.0, height / image_size, 0.0)
    transformed = gray.transform((image_size, image_size), Image.Transform.AFFINE, scale, bilinear)
    return np.asarray(transformed)


def _records(path: str, compression: str, first: int, count: int) -> Iterator[bytes]:
    """Records first..first+count-1 of a TFRecord file (CRCs not checked: the ceiling)."""
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "rb") as stream:
        for index in range(first + count):
            header = stream.read(12)
            if len(header) < 12:
                raise ValueError(f"{path}: truncated at record {index}")
            (length,) = struct.unpack("<Q", header[:8])
            if index < first:
                stream.seek(length + 4, os.SEEK_CUR)
                continue
            data = stream.read(length)
            stream.read(4)
            yield data


def parse_example(data: bytes) -> dict[str, Any]:
    """The image features of a serialized tf.train.Example, without protobuf or TensorFlow.

    Example{1: Features{1: map entry{1: key, 2: Feature{1: BytesList{1: bytes},
    3: Int64List{1: int64 (packed or not)}}}}}. Returns bytes for bytes features and an int
    for int64 features, for the image keys only.
    """
    view = memoryview(data)
    found: dict[str, Any] = {}
    for number, features in _fields(view):
        if number != 1:
            continue
        for entry_number, entry in _fields(features):
            if entry_number == 1:
                key, value = _map_entry(entry)
                if key in _WANTED:
                    found[key] = _feature_value(value)
    return found


def _map_entry(entry: memoryview) -> tuple[str, memoryview]:
    key, value = "", memoryview(b"")
    for number, item in _fields(entry):
        if number == 1:
            key = bytes(item).decode("utf-8")
        elif number == 2:
            value = item
    return key, value


def _feature_value(feature: memoryview) -> Any:
    for number, payload in _fields(feature):
        if number == 1:  # BytesList
            values = [bytes(item) for inner, item in _fields(payload) if inner == 1]
            return values[0] if values else b""
        if number == 3:  # Int64List, packed
            for inner, item in _fields(payload):
                if inner == 1:
                    value, _ = _varint(item, 0) if isinstance(item, memoryview) else (item, 0)
                    return value
    return None


def _fields(view: memoryview) -> Iterator[tuple[int, Any]]:
    """(field number, memoryview for length-delimited or int for varint) of a message."""
    position = 0
    while position < len(view):
        tag, position = _varint(view, position)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, position = _varint(view, position)
            yield number, value
        elif wire_type == 2:
            length, position = _varint(view, position)
            yield number, view[position : position + length]
            position += length
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
