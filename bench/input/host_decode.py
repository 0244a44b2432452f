"""The tuned pipeline's host decoder: a whole batch read, decoded, resized and flipped in one
call, with OpenCV and libjpeg-turbo (simplejpeg), outside TensorFlow's per-record stages.

Why: timed stage by stage (bench.measure.bound, docs/pipelines.md), tf.data's own cost per
record (reading a record through TFRecordDataset, zipping, shuffling, interleaving: ~40 us
of CPU) and TensorFlow's resize (~50 us for 256 -> 224 px) are each larger than everything
a 256 px raw uint8 image needs (~40 us), and TensorFlow decodes JPEG slower than
libjpeg-turbo straight to one channel. So where it can, the tuned pipeline streams only
(file index, record index) pairs through tf.data, and one `tf.numpy_function` per batch
does the rest on the host, with the fastest implementation of each stage; the GIL is
released inside OpenCV, libjpeg-turbo and file reads, so parallel batches overlap.

    host_elements(source, plan)  {source_id, record} per example: sharded, shuffled whole
                                 (a true shuffle per epoch: records are read by index), repeated
    HostDecoder(source, size)    (source ids, records, flips) -> (uint8 [B, S, S, 1],
                                 float32 labels [B, 14], int32 problem codes [B])

A bad example never fails the call: it comes back zeroed with its problem code
(unreadable: missing, truncated or with a bad CRC; undecodable: not an Example, not an
image, not the source's format), and the bad-data guard names it (bench.input.guard).

Not used through a tf.data service (a Python function cannot run on a remote worker), for
gzip shards (no random access), by the naive pipeline (TensorFlow's per-image reference),
or where OpenCV is missing; `decoder_name` says which decoder a pipeline uses.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Any

import numpy as np
import tensorflow as tf

from bench.input.sources import (
    PROBLEM_NONE,
    PROBLEM_UNDECODABLE,
    PROBLEM_UNREADABLE,
    Element,
    ReadPlan,
    Source,
    is_jpeg_name,
    uses_file_sharding,
)
from converters import features
from converters.labels import NUM_LABELS
from converters.records import masked_crc32c

try:  # optional at import: without OpenCV every pipeline decodes with TensorFlow
    import cv2
except ImportError:  # pragma: no cover - exercised where OpenCV is not installed
    cv2 = None
try:
    import simplejpeg
except ImportError:  # pragma: no cover - OpenCV then decodes JPEG too
    simplejpeg = None

__all__ = ["HostDecoder", "available", "host_elements", "implementation"]

_HEADER = struct.Struct("<QI")
LINEAR = cv2.INTER_LINEAR if cv2 is not None else None
# Open shards and their record indexes, shared by every decoder of this process (a fit
# builds an evaluation pipeline per epoch): keyed by path and identity, so that a file
# rewritten in place is opened afresh, and never closed while a reader may still use it.
ShardKey = tuple[str, int, int, int]  # path, inode, size, mtime (ns)
_SHARDS: dict[ShardKey, tuple[int, tuple[list[int], list[int]]]] = {}
_SHARDS_LOCK = threading.Lock()


def available() -> bool:
    """Whether the host decoder can run here (OpenCV installed)."""
    return cv2 is not None


def implementation() -> str:
    """The libraries the host decoder uses, with versions, for the result files."""
    jpeg = f"simplejpeg {simplejpeg.__version__}" if simplejpeg is not None else "OpenCV"
    return f"host per batch: OpenCV {cv2.__version__} (PNG, resize, flip), {jpeg} (JPEG)"


def host_elements(source: Source, plan: ReadPlan) -> tf.data.Dataset:
    """{source_id, record} for this worker's examples (whole shards or every n-th element,
    as bench.input.sources shards them): evaluation in a stable order, training shuffled
    whole each epoch and repeated (records are read by index: no shard order or shuffle
    buffer limits the mixing). Never served by a tf.data service (see above)."""
    if source.format == "raw":
        source_ids = np.arange(len(source.files), dtype=np.int64)
        records = np.full(len(source.files), -1, np.int64)
    else:
        source_ids = np.repeat(np.arange(len(source.files)), source.record_counts).astype(np.int64)
        records = np.concatenate([np.arange(count) for count in source.record_counts])
    records = records.astype(np.int64)
    if source.format == "tfrecord" and uses_file_sharding(source, plan):
        # Whole shards per worker, as TensorFlow's road reads them (a node may hold its own).
        mine = source_ids % plan.num_workers == plan.worker_index
    else:
        mine = np.arange(len(source_ids)) % plan.num_workers == plan.worker_index
    source_ids, records = source_ids[mine], records[mine]
    elements = tf.data.Dataset.from_tensor_slices({"source_id": source_ids, "record": records})
    if plan.training:
        elements = elements.shuffle(
            max(len(source_ids), 1), seed=plan.shuffle_seed, reshuffle_each_iteration=True
        )
    return elements.repeat() if plan.repeat else elements


class HostDecoder:
    """Reads, decodes, resizes and flips one batch; thread-safe (batches run in parallel)."""

    def __init__(self, source: Source, image_size: int) -> None:
        if not available():
            raise RuntimeError("the host decoder needs OpenCV (opencv-python-headless)")
        if source.format == "tfrecord" and source.compression != "none":
            raise ValueError("the host decoder reads uncompressed shards only")
        cv2.setNumThreads(1)  # tf.data runs batches in parallel: no nested thread pools
        self.source = source
        self.size = image_size
        self._labels = np.asarray(source.labels, np.float32).reshape(-1, NUM_LABELS)
        self._shard_keys = (
            [_shard_key(path) for path in source.files] if source.format == "tfrecord" else []
        )

    def __call__(
        self, source_ids: np.ndarray, records: np.ndarray, flips: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count = len(source_ids)
        images = np.zeros((count, self.size, self.size, 1), np.uint8)
        labels = np.zeros((count, NUM_LABELS), np.float32)
        problems = np.zeros(count, np.int32)
        for row in range(count):
            source_id = int(source_ids[row])
            if source_id < 0:  # the guard's end sentinel
                continue
            problem, image, label = self._example(source_id, int(records[row]))
            problems[row] = problem
            if problem != PROBLEM_NONE:
                continue
            labels[row] = label
            try:
                self._place(image, images[row, :, :, 0], bool(flips[row]))
            except cv2.error:  # e.g. an empty image: bad data, never a failed batch
                problems[row] = PROBLEM_UNDECODABLE
        return images, labels, problems

    def tf_decoder(self) -> Any:
        """The batch decoder for bench.input.guard: (elements, flips) -> (images, labels,
        problems) tensors, through one numpy_function call per batch."""

        def decode(elements: Element, flips: tf.Tensor) -> tuple[tf.Tensor, ...]:
            images, labels, problems = tf.numpy_function(
                self,
                [elements["source_id"], elements["record"], flips],
                [tf.uint8, tf.float32, tf.int32],
                stateful=False,
            )
            return (
                tf.ensure_shape(images, [None, self.size, self.size, 1]),
                tf.ensure_shape(labels, [None, NUM_LABELS]),
                tf.ensure_shape(problems, [None]),
            )

        return decode

    # -- one example --------------------------------------------------------------------
    def _example(self, source_id: int, record: int) -> tuple[int, np.ndarray | None, Any]:
        """(problem, gray image [H, W], label) of one example."""
        if self.source.format == "raw":
            try:
                with open(self.source.files[source_id], "rb") as stream:
                    encoded = stream.read()
            except OSError:
                return PROBLEM_UNDECODABLE, None, None
            path = self.source.files[source_id]
            image = self._decode(
                encoded, self.source.encoding or ("jpeg" if is_jpeg_name(path) else "png")
            )
            if image is None:
                return PROBLEM_UNDECODABLE, None, None
            return PROBLEM_NONE, image, self._labels[source_id]
        payload = self._record(source_id, record)
        if payload is None:
            return PROBLEM_UNREADABLE, None, None
        return self._from_example(payload)

    def _from_example(self, payload: bytes) -> tuple[int, np.ndarray | None, Any]:
        try:
            feature = tf.train.Example.FromString(payload).features.feature
            encoded = feature[features.IMAGE_ENCODED].bytes_list.value[0]
            image_format = feature[features.IMAGE_FORMAT].bytes_list.value[0].decode()
            label = tuple(feature[features.LABEL].int64_list.value)  # a tuple: fast to copy
            expected = self.source.encoding
            if len(label) != NUM_LABELS or (expected is not None and image_format != expected):
                return PROBLEM_UNDECODABLE, None, None
            if image_format == "raw":
                shape = [
                    feature[name].int64_list.value[0]
                    for name in (
                        features.IMAGE_HEIGHT,
                        features.IMAGE_WIDTH,
                        features.IMAGE_CHANNELS,
                    )
                ]
        except Exception:
            return PROBLEM_UNDECODABLE, None, None
        if image_format == "raw":
            image = _raw_pixels(encoded, *shape)
        else:
            image = self._decode(encoded, image_format)
        if image is None:
            return PROBLEM_UNDECODABLE, None, None
        return PROBLEM_NONE, image, label

    @staticmethod
    def _decode(encoded: bytes, image_format: str) -> np.ndarray | None:
        """Gray uint8 [H, W], or None where the bytes are not such an image."""
        try:
            if image_format == "jpeg" and simplejpeg is not None:
                # Fast integer IDCT, as TensorFlow's decode_jpeg by default; one channel out.
                return simplejpeg.decode_jpeg(encoded, colorspace="GRAY", fastdct=True)[..., 0]
            if image_format in ("png", "jpeg"):
                return cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_GRAYSCALE)
        except (ValueError, cv2.error):
            return None
        return None

    def _place(self, image: np.ndarray, out: np.ndarray, flip: bool) -> None:
        """Resize `image` into `out` (bilinear, half-pixel centres, as TensorFlow), mirrored
        left-right when `flip`."""
        same = image.shape == out.shape
        if flip:
            resized = image if same else cv2.resize(image, out.shape[::-1], interpolation=LINEAR)
            cv2.flip(resized, 1, dst=out)
        elif same:
            out[...] = image
        else:  # straight into the batch: no copy
            cv2.resize(image, out.shape[::-1], dst=out, interpolation=LINEAR)

    # -- records by index ---------------------------------------------------------------
    def _record(self, shard: int, record: int) -> bytes | None:
        """Record `record` of shard `shard`, its data CRC checked; None where it cannot be
        read (beyond a truncation, a bad CRC)."""
        descriptor, (offsets, lengths) = self._shard(shard)
        if not 0 <= record < len(offsets):
            return None
        length = lengths[record]
        data = os.pread(descriptor, length + 4, offsets[record])
        if len(data) != length + 4:
            return None
        payload = data[:length]
        if masked_crc32c(payload) != int.from_bytes(data[length:], "little"):
            return None
        return payload

    def _shard(self, shard: int) -> tuple[int, tuple[list[int], list[int]]]:
        key = self._shard_keys[shard]
        with _SHARDS_LOCK:
            if key not in _SHARDS:
                descriptor = os.open(key[0], os.O_RDONLY)
                index = _record_index(descriptor, self.source.record_counts[shard])
                _SHARDS[key] = (descriptor, index)
            return _SHARDS[key]


def _shard_key(path: str) -> ShardKey:
    status = os.stat(path)
    return (path, status.st_ino, status.st_size, status.st_mtime_ns)


def _record_index(descriptor: int, expected: int) -> tuple[list[int], list[int]]:
    """(payload offsets, lengths) of a shard's whole records, its headers' CRCs checked;
    it stops at the first record that is cut or whose header is corrupt."""
    size = os.fstat(descriptor).st_size
    offsets: list[int] = []
    lengths: list[int] = []
    position = 0
    while len(offsets) < expected and position + 16 <= size:
        header = os.pread(descriptor, 12, position)
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc or position + 16 + length > size:
            break
        offsets.append(position + 12)
        lengths.append(length)
        position += 16 + length
    return offsets, lengths


def _raw_pixels(encoded: bytes, height: int, width: int, channels: int) -> np.ndarray | None:
    if height < 1 or width < 1 or channels not in (1, 3, 4):
        return None
    if len(encoded) != height * width * channels:
        return None
    pixels = np.frombuffer(encoded, np.uint8).reshape(height, width, channels)
    if channels == 1:
        return pixels[..., 0]
    return cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_RGB2GRAY)
