"""One batch read, decoded, resized and flipped on the host, without TensorFlow: the work of
the tuned pipeline's host decoder (bench.input.host_decode), whether it runs in the
pipeline's own threads or in decode worker processes (bench.input.decode_worker).

    BatchSource   what the reader needs of a bench.input.sources.Source (picklable)
    BatchReader   (source ids, records, flips) -> uint8 [B, S, S, 1], float32 labels
                  [B, 14], int32 problem codes [B]; written into given arrays or new ones

Each stage uses the fastest implementation measured here (bench.measure.bound): OpenCV
for PNG, resize and flip, libjpeg-turbo through simplejpeg (one gray channel, the fast
integer IDCT as TensorFlow's decode_jpeg by default), numpy for raw pixels; records are
read by offset with their CRCs checked, and parsed with protobuf's C parser (upb) through
a message class of the tf.train.Example wire format built here. A bad example never
raises: it comes back zeroed with its problem code.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from bench.input.batch_arrays import RecycledArrays, aligned_empty
from bench.input.problems import PROBLEM_NONE, PROBLEM_UNDECODABLE, PROBLEM_UNREADABLE
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

__all__ = ["BatchReader", "BatchSource", "available", "implementation"]

_HEADER = struct.Struct("<QI")
_NO_LABEL = (0,) * NUM_LABELS  # the label of an example not written: zeros
# Open shards and their record indexes, shared by every reader of this process (a fit
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
    return f"OpenCV {cv2.__version__} (PNG, resize, flip), {jpeg} (JPEG)"


@dataclass(frozen=True, kw_only=True)
class BatchSource:
    """A Source's fields the reader uses, and the size it writes (no TensorFlow type)."""

    format: str  # "raw" | "tfrecord"
    files: tuple[str, ...]
    image_size: int
    labels: tuple[tuple[int, ...], ...] = ()  # raw files: per file
    record_counts: tuple[int, ...] = ()  # tfrecord: per shard
    encoding: str | None = None  # the manifest's image format, when it states one
    compression: str = "none"


class BatchReader:
    """Reads, decodes, resizes and flips one batch; thread-safe (batches run in parallel)."""

    def __init__(self, source: BatchSource) -> None:
        if not available():
            raise RuntimeError("the host decoder needs OpenCV (opencv-python-headless)")
        if source.format == "tfrecord" and source.compression != "none":
            raise ValueError("the host decoder reads uncompressed shards only")
        cv2.setNumThreads(1)  # batches run in parallel: no nested thread pools
        self.source = source
        self.size = source.image_size
        self._labels = np.asarray(source.labels, np.float32).reshape(-1, NUM_LABELS)
        self._shard_keys = (
            [_shard_key(path) for path in source.files] if source.format == "tfrecord" else []
        )
        self._example = _example_class()
        self._open: dict[int, tuple[int, tuple[list[int], list[int]]]] = {}
        self._images = RecycledArrays((self.size, self.size, 1), np.uint8)

    def __call__(
        self,
        source_ids: np.ndarray,
        records: np.ndarray,
        flips: np.ndarray,
        out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, labels, problems) of the batch, in `out` (arrays of at least its
        length, overwritten) when given."""
        count = len(source_ids)
        if out is None:
            out = (
                self._images.take(count),
                aligned_empty((count, NUM_LABELS), np.float32),
                aligned_empty((count,), np.int32),
            )
        images, labels, problems = (array[:count] for array in out)
        # Per record, only plain Python values and one image view: numpy scalars, row
        # views and per-row label writes cost more than a small image's parse and read.
        planes = images[..., 0]
        found_labels: list[Any] = []
        codes: list[int] = []
        read = self._read
        triples = zip(source_ids.tolist(), records.tolist(), flips.tolist(), strict=True)
        for row, (source_id, record, flip) in enumerate(triples):
            problem, label = PROBLEM_NONE, _NO_LABEL
            if source_id >= 0:  # else the guard's end sentinel: zeros
                problem, image, found = read(source_id, record)
                if problem == PROBLEM_NONE:
                    try:
                        _place(image, planes[row], flip)
                        label = found
                    except cv2.error:  # e.g. an empty image: bad data, never a failed batch
                        problem = PROBLEM_UNDECODABLE
            if label is _NO_LABEL:
                planes[row] = 0
            found_labels.append(label)
            codes.append(problem)
        labels[...] = found_labels
        problems[...] = codes
        return images, labels, problems

    # -- one example --------------------------------------------------------------------
    def _read(self, source_id: int, record: int) -> tuple[int, np.ndarray | None, Any]:
        """(problem, gray image [H, W], label) of one example."""
        if self.source.format == "raw":
            path = self.source.files[source_id]
            try:
                with open(path, "rb") as stream:
                    encoded = stream.read()
            except OSError:
                return PROBLEM_UNDECODABLE, None, None
            name = path.lower()
            guessed = "jpeg" if name.endswith((".jpg", ".jpeg")) else "png"
            image = _decode(encoded, self.source.encoding or guessed)
            if image is None:
                return PROBLEM_UNDECODABLE, None, None
            return PROBLEM_NONE, image, self._labels[source_id]
        payload = self._record(source_id, record)
        if payload is None:
            return PROBLEM_UNREADABLE, None, None
        return self._from_example(payload)

    def _from_example(self, payload: bytes) -> tuple[int, np.ndarray | None, Any]:
        try:
            feature = self._example.FromString(payload).features.feature
            encoded = feature[features.IMAGE_ENCODED].bytes_list.value[0]
            image_format = feature[features.IMAGE_FORMAT].bytes_list.value[0].decode()
            label = feature[features.LABEL].int64_list.value[:]  # a list: 2x faster than tuple()
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
            image = _decode(encoded, image_format)
        if image is None:
            return PROBLEM_UNDECODABLE, None, None
        return PROBLEM_NONE, image, label

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
        found = self._open.get(shard)  # without the lock: looked up for every record
        if found is not None:
            return found
        key = self._shard_keys[shard]
        with _SHARDS_LOCK:
            if key not in _SHARDS:
                descriptor = os.open(key[0], os.O_RDONLY)
                index = _record_index(descriptor, self.source.record_counts[shard])
                _SHARDS[key] = (descriptor, index)
            found = self._open[shard] = _SHARDS[key]
        return found


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


def _place(image: np.ndarray, out: np.ndarray, flip: bool) -> None:
    """Resize `image` into `out` (bilinear, half-pixel centres, as TensorFlow), mirrored
    left-right when `flip`."""
    same = image.shape == out.shape
    if flip:
        resized = image if same else cv2.resize(image, out.shape[::-1], interpolation=_LINEAR)
        cv2.flip(resized, 1, dst=out)
    elif same:
        out[...] = image
    else:  # straight into the batch: no copy
        cv2.resize(image, out.shape[::-1], dst=out, interpolation=_LINEAR)


_LINEAR = cv2.INTER_LINEAR if cv2 is not None else None


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


_EXAMPLE_CLASS: list[Any] = []


def _example_class() -> Any:
    """A protobuf message class with tf.train.Example's wire format (tensorflow/core/
    example/{example,feature}.proto: the same messages, field numbers and types), built
    from a descriptor so that worker processes need not import TensorFlow."""
    if _EXAMPLE_CLASS:
        return _EXAMPLE_CLASS[0]
    proto = descriptor_pb2.FileDescriptorProto(
        name="chexbench/example.proto", package="chexbench.example", syntax="proto3"
    )
    label = descriptor_pb2.FieldDescriptorProto
    for name, kind in (
        ("BytesList", label.TYPE_BYTES),
        ("FloatList", label.TYPE_FLOAT),
        ("Int64List", label.TYPE_INT64),
    ):
        message = proto.message_type.add(name=name)
        message.field.add(name="value", number=1, type=kind, label=label.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, kind) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")),
        start=1,
    ):
        feature.field.add(
            name=name,
            number=number,
            type=label.TYPE_MESSAGE,
            type_name=f".chexbench.example.{kind}",
            label=label.LABEL_OPTIONAL,
            oneof_index=0,
        )
    feature_set = proto.message_type.add(name="Features")
    entry = feature_set.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=label.TYPE_STRING, label=label.LABEL_OPTIONAL)
    entry.field.add(
        name="value",
        number=2,
        type=label.TYPE_MESSAGE,
        type_name=".chexbench.example.Feature",
        label=label.LABEL_OPTIONAL,
    )
    feature_set.field.add(
        name="feature",
        number=1,
        type=label.TYPE_MESSAGE,
        type_name=".chexbench.example.Features.FeatureEntry",
        label=label.LABEL_REPEATED,
    )
    example = proto.message_type.add(name="Example")
    example.field.add(
        name="features",
        number=1,
        type=label.TYPE_MESSAGE,
        type_name=".chexbench.example.Features",
        label=label.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    found = message_factory.GetMessageClass(pool.FindMessageTypeByName("chexbench.example.Example"))
    _EXAMPLE_CLASS.append(found)
    return found
