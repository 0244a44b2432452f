"""Checking one shard of a conversion: its size and sha256 against the manifest, then every record
read with TensorFlow's own reader (CRCs), parsed, its label and shape checked, its image
decoded (or a deterministic sample of them).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters import features
from converters.manifest import Manifest, ShardInfo
from converters.shards import file_sha256
from converters.verify_report import Problem


def _tf_message(error: Any) -> str:
    """A TensorFlow error's text without its function-node prefix and op suffix."""
    text = (error.message or type(error).__name__).splitlines()[0]
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:.*$", "", text).strip()


def _decode_shape(tf: Any, data: bytes, encoding: str, channels: int) -> tuple[int, ...]:
    if encoding == "png":
        return tuple(tf.io.decode_png(data, channels=0).shape)
    if encoding == "jpeg":
        return tuple(tf.io.decode_jpeg(data, channels=0).shape)
    return (len(data),)


def check_example(
    tf: Any, parsed: dict[str, Any], manifest: Manifest, *, decode: bool
) -> list[str]:
    """Problems with one parsed record (empty when it is good)."""
    problems = []
    stored_format = parsed[features.IMAGE_FORMAT].numpy().decode(errors="replace")
    if stored_format != manifest.encoding:
        problems.append(f"image/format is {stored_format!r}, manifest says {manifest.encoding!r}")
    height, width, channels = (
        int(parsed[key].numpy())
        for key in (features.IMAGE_HEIGHT, features.IMAGE_WIDTH, features.IMAGE_CHANNELS)
    )
    if min(height, width, channels) < 1:
        problems.append(f"bad shape {height}x{width}x{channels}")
    if manifest.image_size is not None and (height, width) != (manifest.image_size,) * 2:
        problems.append(f"stored {height}x{width}, manifest says {manifest.image_size} square")
    labels = parsed[features.LABEL].numpy()
    if labels.shape != (len(manifest.labels),) or not set(labels.tolist()) <= {0, 1}:
        problems.append(
            f"label is not a {len(manifest.labels)}-entry multi-hot vector: {labels.tolist()}"
        )
    if decode and not problems:
        data = parsed[features.IMAGE_ENCODED].numpy()
        try:
            shape = _decode_shape(tf, data, manifest.encoding, channels)
        except tf.errors.OpError as error:
            return [f"image does not decode: {_tf_message(error)}"]
        expected = (
            (height * width * channels,)
            if manifest.encoding == "raw"
            else (height, width, channels)
        )
        if shape != expected:
            problems.append(f"decoded shape {shape}, record says {expected}")
    return problems


def _sampled(manifest: Manifest, sample: int | None, seed: int) -> set[int] | None:
    """Global record indices to decode; None means all of them."""
    total = sum(manifest.record_count(split) for split in manifest.splits)
    if sample is None or sample >= total:
        return None
    return set(random.Random(seed).sample(range(total), sample))


def _read_records(tf: Any, path: Path, manifest: Manifest) -> Iterator[Any]:
    dataset = tf.data.TFRecordDataset(str(path), compression_type=manifest.tf_compression)
    yield from dataset


@dataclass(frozen=True)
class ShardToCheck:
    """One shard to check; picklable for a worker process. `decode` holds the shard's own
    record indices to decode (None: all)."""

    manifest: Manifest
    shard: ShardInfo
    decode: frozenset[int] | None


@dataclass
class ShardCheck:
    """What checking one shard found; the file names let the caller find duplicates."""

    shard: str
    records_read: int = 0
    images_decoded: int = 0
    problems: list[Problem] = field(default_factory=list)
    filenames: list[tuple[int, str]] = field(default_factory=list)  # (record index, name)


# (records read since the last report) -> None; a worker reports through a queue.
ProgressCallback = Callable[[int], None]
_REPORT_EVERY = 16


def check_shard(tf: Any, task: ShardToCheck, report: ProgressCallback | None = None) -> ShardCheck:
    """Check one shard's file and every record in it."""
    manifest, shard = task.manifest, task.shard
    path = manifest.directory / shard.file
    check = ShardCheck(shard=shard.file)

    def problem(message: str, record: int | None = None) -> None:
        check.problems.append(Problem(shard.file, record, message))

    if not path.is_file():
        problem("missing")
        return check
    size = path.stat().st_size
    if size != shard.bytes:
        problem(f"{size} bytes, manifest says {shard.bytes} (truncated or changed)")
    if file_sha256(path) != shard.sha256:
        problem("sha256 differs from the manifest")
    spec = features.tf_feature_spec(manifest.feature_spec)
    index = unreported = 0
    try:
        for record in _read_records(tf, path, manifest):
            decode = task.decode is None or index in task.decode
            messages, name = check_record(tf, record, spec, manifest, decode=decode)
            for message in messages:
                problem(message, index)
            if name is not None:
                check.filenames.append((index, name))
            check.images_decoded += int(decode)
            check.records_read += 1
            index += 1
            unreported += 1
            if report is not None and unreported >= _REPORT_EVERY:
                report(unreported)
                unreported = 0
    except tf.errors.OpError as error:  # DataLossError: a bad CRC or a truncated record
        first_line = _tf_message(error)
        problem(f"unreadable ({type(error).__name__}): {first_line}", index)
        return check
    finally:
        if report is not None and unreported:
            report(unreported)
    if index != shard.records:
        problem(f"{index} records, manifest says {shard.records}")
    return check


def check_record(
    tf: Any, record: Any, spec: dict[str, Any], manifest: Manifest, *, decode: bool
) -> tuple[list[str], str | None]:
    """Problems with one serialized record (parse, contents, decode) and its file name."""
    try:
        parsed = tf.io.parse_single_example(record, spec)
    except tf.errors.InvalidArgumentError as error:
        return [f"does not parse: {_tf_message(error)}"], None
    problems = check_example(tf, parsed, manifest, decode=decode)
    return problems, parsed[features.IMAGE_FILENAME].numpy().decode(errors="replace")


def shard_tasks(manifest: Manifest, *, sample: int | None, seed: int) -> list[ShardToCheck]:
    """Every shard in manifest order, with the records of the sample that fall in it."""
    chosen = _sampled(manifest, sample, seed)
    tasks, first_index = [], 0
    for split in manifest.splits:
        for shard in manifest.shards[split]:
            decode = (
                None
                if chosen is None
                else frozenset(
                    i - first_index for i in chosen if 0 <= i - first_index < shard.records
                )
            )
            tasks.append(ShardToCheck(manifest=manifest, shard=shard, decode=decode))
            first_index += shard.records
    return tasks
