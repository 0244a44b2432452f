"""Write tf.train.Example records and TFRecord files without importing TensorFlow.

The converter's worker processes only encode images and frame bytes; keeping TensorFlow out
of them makes each worker start in a fraction of a second instead of several, and keeps
the pool safe to start from a process that has TensorFlow's threads running. The output is
plain TFRecord (TensorFlow's reader and any other one reads it; the tests prove it with
TensorFlow's own parser):

    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

Examples are serialized deterministically: features sorted by name, as protobuf's
`SerializeToString(deterministic=True)` does, so a shard's bytes depend only on its inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import google_crc32c

_CRC_MASK_DELTA = 0xA282EAD8
_UINT32 = 0xFFFFFFFF
# zlib's default level, the one TensorFlow's own GZIP writer uses.
GZIP_LEVEL = 6

FeatureValue = bytes | int | Sequence[int]


def masked_crc32c(data: bytes) -> int:
    """The CRC32C of `data`, rotated and offset as the TFRecord format stores it."""
    return _mask(google_crc32c.value(data))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & _UINT32


def frame_parts(parts: Sequence[bytes]) -> list[bytes]:
    """One TFRecord around the concatenation of `parts`, without copying them.

    length | masked CRC of length | data | masked CRC of data.
    """
    checksum = google_crc32c.Checksum()
    size = 0
    for part in parts:
        checksum.update(part)
        size += len(part)
    length = struct.pack("<Q", size)
    data_crc = _mask(int.from_bytes(checksum.digest(), "big"))
    return [length, struct.pack("<I", masked_crc32c(length)), *parts, struct.pack("<I", data_crc)]


def _varint(value: int) -> bytes:
    # Negative int64 values are written as their 64-bit two's complement, as protobuf does.
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# A message under construction: its byte chunks and their total length. Large values (the
# image) stay one chunk, referenced, never copied, until the chunks reach the file.
_Message = tuple[list[bytes], int]


def _field(field_number: int, message: _Message) -> _Message:
    parts, size = message
    header = _varint((field_number << 3) | 2) + _varint(size)
    return [header, *parts], size + len(header)


def _bytes_value(data: bytes) -> _Message:
    return [data], len(data)


def _concat(*messages: _Message) -> _Message:
    return [part for parts, _ in messages for part in parts], sum(size for _, size in messages)


def _feature(value: FeatureValue) -> _Message:
    """A tf.train.Feature: bytes -> BytesList (field 1), ints -> packed Int64List (field 3)."""
    if isinstance(value, bytes):
        return _field(1, _field(1, _bytes_value(value)))
    ints = [value] if isinstance(value, int) else list(value)
    packed = b"".join(_varint(int(item)) for item in ints)
    int64_list = _field(1, _bytes_value(packed)) if ints else ([], 0)
    return _field(3, int64_list)


def example_parts(features: Mapping[str, FeatureValue]) -> list[bytes]:
    """A tf.train.Example holding `features` (bytes or int64 values/lists), as chunks."""
    entries = [
        _field(1, _concat(_field(1, _bytes_value(name.encode())), _field(2, _feature(value))))
        for name, value in sorted(features.items())
    ]
    parts, _ = _field(1, _concat(*entries))
    return parts


def serialize_example(features: Mapping[str, FeatureValue]) -> bytes:
    """A serialized tf.train.Example holding `features` (bytes or int64 values/lists)."""
    return b"".join(example_parts(features))


class _HashingFile:
    """A write-only file wrapper that hashes and counts the bytes that reach the disk."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class TFRecordFileWriter:
    """Writes records to `path`, optionally GZIP-compressed, tracking sha256 and size.

    The gzip header carries no file name and a zero mtime, so that equal inputs give equal
    bytes. `close()` flushes and fsyncs; the caller renames the file when it is complete.
    """

    def __init__(self, path: Path, *, compression: str = "none") -> None:
        if compression not in ("none", "gzip"):
            raise ValueError(f"compression must be 'none' or 'gzip', got {compression!r}")
        self.path = path
        self._raw = open(path, "wb")  # noqa: SIM115  (closed in close())
        self._hashing = _HashingFile(self._raw)
        self._gzip = (
            gzip.GzipFile(
                filename="", mode="wb", fileobj=self._hashing, compresslevel=GZIP_LEVEL, mtime=0
            )
            if compression == "gzip"
            else None
        )
        self.records = 0

    def write(self, serialized: bytes) -> None:
        """Append one record holding `serialized`."""
        self.write_parts([serialized])

    def write_parts(self, parts: Sequence[bytes]) -> None:
        """Append one record holding the concatenation of `parts` (see `example_parts`)."""
        target = self._gzip or self._hashing
        for chunk in frame_parts(parts):
            target.write(chunk)
        self.records += 1

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()  # writes the gzip trailer; leaves the underlying file open
        self._hashing.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()

    @property
    def sha256(self) -> str:
        return self._hashing.sha256.hexdigest()

    @property
    def size(self) -> int:
        return self._hashing.size

    def __enter__(self) -> TFRecordFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._raw.close()


def read_records(path: Path, *, compression: str = "none") -> list[bytes]:
    """Every record of a TFRecord file, CRCs checked (a small reader for tests and tools).

    Raises ValueError naming the record index on a bad CRC or a truncated file.
    """
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    records: list[bytes] = []
    offset = 0
    while offset < len(data):
        where = f"{path}: record {len(records)} at byte {offset}"
        if offset + 12 > len(data):
            raise ValueError(f"{where}: truncated header")
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
        if masked_crc32c(header) != length_crc:
            raise ValueError(f"{where}: length CRC mismatch")
        end = offset + 12 + length
        if end + 4 > len(data):
            raise ValueError(f"{where}: truncated record")
        payload = data[offset + 12 : end]
        (data_crc,) = struct.unpack("<I", data[end : end + 4])
        if masked_crc32c(payload) != data_crc:
            raise ValueError(f"{where}: data CRC mismatch")
        records.append(payload)
        offset = end + 4
    return records


def count_records(path: Path, *, compression: str = "none") -> int:
    """How many whole records a TFRecord file holds (framing only, CRCs not checked).

    A truncated last record is not counted, nor anything after a gzip stream that ends
    early or is corrupt. Cheap for uncompressed files (it seeks over payloads); a gzip
    file is decompressed once.
    """
    if compression == "gzip":
        with gzip.open(path, "rb") as stream:
            return _count_framed(stream, lambda length: len(stream.read(length)) == length)
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size

        def skip(length: int) -> bool:
            if stream.tell() + length > size:
                return False
            stream.seek(length, os.SEEK_CUR)
            return True

        return _count_framed(stream, skip)


def _count_framed(stream: BinaryIO, skip: Callable[[int], bool]) -> int:
    count = 0
    try:
        while True:
            header = stream.read(12)
            if len(header) < 12:
                return count
            (length,) = struct.unpack("<Q", header[:8])
            if not skip(length + 4):
                return count
            count += 1
    except (EOFError, OSError, zlib.error):  # a gzip stream cut short or corrupt
        return count
