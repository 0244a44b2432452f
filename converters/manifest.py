"""`manifest.json`: what a conversion wrote, how, from what, and at what cost.

Written last and atomically by the converter, so that its presence means the shards beside
it are complete. `load_manifest` validates every field it relies on and rejects files from
another tool or from a newer format with a message naming the file and the key.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from converters.features import COMPRESSIONS, ENCODINGS, FEATURE_SPEC, FORMAT_VERSION, MANIFEST_NAME
from converters.labels import LABELS

KIND = "chexbench-tfrecord"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHARD_FILE = re.compile(r"[A-Za-z0-9_.-]+\.tfrecord")
_TF_COMPRESSION = {"none": "", "gzip": "GZIP"}


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or invalid; the message names file and key."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the manifest records it."""

    file: str
    records: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "records": self.records,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Manifest:
    """A loaded, validated manifest. `data` is the whole JSON document as read."""

    directory: Path
    format_version: int
    encoding: str
    compression: str
    image_size: int | None  # None: images stored at their source size
    splits: tuple[str, ...]
    stats: dict[str, Any]
    skipped: tuple[dict[str, Any], ...]
    options: dict[str, Any]
    source: dict[str, Any]
    feature_spec: dict[str, Any]
    shards: dict[str, tuple[ShardInfo, ...]] = field(default_factory=dict)
    labels: tuple[str, ...] = LABELS
    created_at: str = ""
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    def shard_paths(self, split: str) -> list[Path]:
        """Absolute paths of the split's shards, in order."""
        return [self.directory / shard.file for shard in self._split_shards(split)]

    def record_count(self, split: str) -> int:
        return sum(shard.records for shard in self._split_shards(split))

    @property
    def tf_compression(self) -> str:
        """The `compression_type` for tf.data.TFRecordDataset: "" or "GZIP"."""
        return _TF_COMPRESSION[self.compression]

    def _split_shards(self, split: str) -> tuple[ShardInfo, ...]:
        if split not in self.shards:
            known = ", ".join(self.splits) or "none"
            raise KeyError(f"{self.directory / MANIFEST_NAME}: no split {split!r} (has: {known})")
        return self.shards[split]


def manifest_path(directory: Path) -> Path:
    return Path(directory) / MANIFEST_NAME


def utc_now() -> str:
    """The one timestamp format of manifests and result files: UTC ISO-8601, "Z"."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write JSON to a temporary name in the same folder, fsync, rename: all or nothing."""
    write_text_atomic(path, json.dumps(document, indent=2, sort_keys=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` so that a reader sees the old file or the whole new one, durably."""
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the file from other users
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_manifest(directory: Path, document: dict[str, Any]) -> Manifest:
    """Validate `document` as `load_manifest` would, then write it atomically."""
    path = manifest_path(directory)
    manifest = parse_manifest(document, directory=Path(directory), where=path)
    write_json_atomic(path, document)
    return manifest


def load_manifest(directory: Path) -> Manifest:
    """Read and validate `directory/manifest.json`; raises ManifestError naming file and key."""
    directory = Path(directory)
    path = manifest_path(directory)
    if not path.is_file():
        raise ManifestError(f"{path}: not found ({directory} is not a TFRecord conversion)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot read: {error}") from error
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON: {error}") from error
    return parse_manifest(document, directory=directory, where=path)


def _require(
    document: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path, prefix: str = ""
) -> Any:
    if key not in document:
        raise ManifestError(f"{where}: missing key {prefix + key!r}")
    value = document[key]
    # bool is an int in Python; a count or size given as true/false is still wrong.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ManifestError(f"{where}: key {prefix + key!r}: expected {kind}, got a boolean")
    if not isinstance(value, kind):
        raise ManifestError(
            f"{where}: key {prefix + key!r}: expected {_kind_name(kind)}, "
            f"got {type(value).__name__}"
        )
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if item is type(None) else item.__name__ for item in kinds)


def _check_version(document: dict[str, Any], where: Path) -> int:
    version = _require(document, "format_version", int, where)
    if version > FORMAT_VERSION:
        raise ManifestError(
            f"{where}: key 'format_version' is {version}, newer than this chexbench reads "
            f"(up to {FORMAT_VERSION}): upgrade chexbench to read this conversion"
        )
    if version < 1:
        raise ManifestError(f"{where}: key 'format_version' is {version}: not a valid version")
    if version < FORMAT_VERSION:
        raise ManifestError(
            f"{where}: key 'format_version' is {version}, older than this chexbench reads "
            f"({FORMAT_VERSION}): convert the data set again with `python -m converters.tfrecord`"
        )
    return version


def _parse_shard(entry: Any, where: Path, prefix: str) -> ShardInfo:
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: key {prefix!r}: expected an object")
    file_name = _require(entry, "file", str, where, prefix + ".")
    if not _SHARD_FILE.fullmatch(file_name):
        raise ManifestError(f"{where}: key {prefix + '.file'!r}: {file_name!r} is not a shard name")
    records = _require(entry, "records", int, where, prefix + ".")
    size = _require(entry, "bytes", int, where, prefix + ".")
    digest = _require(entry, "sha256", str, where, prefix + ".")
    if records < 0 or size < 0:
        raise ManifestError(f"{where}: key {prefix!r}: negative records or bytes")
    if not _SHA256.fullmatch(digest):
        raise ManifestError(
            f"{where}: key {prefix + '.sha256'!r}: expected 64 lowercase hex digits"
        )
    return ShardInfo(file=file_name, records=records, bytes=size, sha256=digest)


def _parse_splits(document: dict[str, Any], where: Path) -> dict[str, tuple[ShardInfo, ...]]:
    splits = _require(document, "splits", dict, where)
    parsed: dict[str, tuple[ShardInfo, ...]] = {}
    for name, split in splits.items():
        prefix = f"splits.{name}"
        if not isinstance(split, dict):
            raise ManifestError(f"{where}: key {prefix!r}: expected an object")
        entries = _require(split, "shards", list, where, prefix + ".")
        shards = tuple(
            _parse_shard(entry, where, f"{prefix}.shards[{index}]")
            for index, entry in enumerate(entries)
        )
        records = _require(split, "records", int, where, prefix + ".")
        if records != sum(shard.records for shard in shards):
            raise ManifestError(
                f"{where}: key {prefix + '.records'!r} is {records} but its shards hold "
                f"{sum(shard.records for shard in shards)}"
            )
        parsed[name] = shards
    return parsed


def parse_manifest(document: Any, *, directory: Path, where: Path) -> Manifest:
    """Validate a manifest document (already parsed JSON) and build a Manifest."""
    if not isinstance(document, dict):
        raise ManifestError(f"{where}: expected a JSON object at the top level")
    kind = _require(document, "kind", str, where)
    if kind != KIND:
        raise ManifestError(f"{where}: key 'kind' is {kind!r}, expected {KIND!r}")
    version = _check_version(document, where)
    encoding = _require(document, "encoding", str, where)
    if encoding not in ENCODINGS:
        raise ManifestError(f"{where}: key 'encoding' is {encoding!r}, expected one of {ENCODINGS}")
    compression = _require(document, "compression", str, where)
    if compression not in COMPRESSIONS:
        raise ManifestError(
            f"{where}: key 'compression' is {compression!r}, expected one of {COMPRESSIONS}"
        )
    image_size = _require(document, "image_size", (int, type(None)), where)
    labels = tuple(_require(document, "labels", list, where))
    if labels != LABELS:
        raise ManifestError(f"{where}: key 'labels' differs from the label order {list(LABELS)}")
    feature_spec = _require(document, "feature_spec", dict, where)
    missing = sorted(set(FEATURE_SPEC) - set(feature_spec))
    if missing:
        raise ManifestError(f"{where}: key 'feature_spec' lacks {', '.join(missing)}")
    shards = _parse_splits(document, where)
    return Manifest(
        directory=directory,
        format_version=version,
        encoding=encoding,
        compression=compression,
        image_size=image_size,
        splits=tuple(shards),
        stats=_require(document, "stats", dict, where),
        skipped=tuple(_require(document, "skipped", list, where)),
        options=_require(document, "options", dict, where),
        source=_require(document, "source", dict, where),
        feature_spec=feature_spec,
        shards=shards,
        labels=labels,
        created_at=_require(document, "created_at", str, where),
        data=document,
    )
