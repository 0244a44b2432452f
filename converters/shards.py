"""One shard: its planned content, writing it crash-safely, and the journal that lets a
later `--resume` re-use it.

A shard is written to `.<name>.partial` in the output folder, fsynced, and renamed to its
final name only when complete; then a small journal entry (`.journal/<name>.json`, written
atomically) records the plan hash, record count, size and sha256. A shard is re-used only
when its journal's plan hash equals the new plan's and the file's sha256 still matches.
Shards hold no timestamps, so equal plans give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from converters import features
from converters.imageio import ImageReadError, load_image
from converters.manifest import fsync_directory, write_json_atomic
from converters.records import TFRecordFileWriter, example_parts

JOURNAL_DIR = ".journal"
PARTIAL_SUFFIX = ".partial"
# Bump when the bytes written for the same inputs change, so old shards are not re-used.
WRITER_REVISION = 1
_HASH_CHUNK = 1 << 20

# (images done, source bytes read, record bytes written) since the last report.
ProgressCallback = Callable[[int, int, int], None]


class StrictModeError(RuntimeError):
    """An image had to be skipped while --strict was given (exit code 1)."""


@dataclass(frozen=True)
class ShardItem:
    """One image planned into a shard."""

    filename: str
    path: str
    labels: tuple[int, ...]
    patient_id: int
    row: int
    source_bytes: int


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to write one shard; picklable, no open resources."""

    out_dir: str
    split: str
    index: int
    count: int
    items: tuple[ShardItem, ...]
    encoding: str
    quality: int
    resize: int | None
    compression: str
    strict: bool = False

    @property
    def file(self) -> str:
        return features.shard_name(self.split, self.index, self.count)

    def plan_hash(self) -> str:
        """sha256 of everything that decides the shard's bytes (never paths or times)."""
        content = {
            "format_version": features.FORMAT_VERSION,
            "writer_revision": WRITER_REVISION,
            "encoding": self.encoding,
            "quality": self.quality if self.encoding == "jpeg" else None,
            "resize": self.resize,
            "compression": self.compression,
            "file": self.file,
            "items": [
                [item.filename, list(item.labels), item.patient_id, item.source_bytes]
                for item in self.items
            ],
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ShardResult:
    """What was written for one shard (or found complete and re-used)."""

    split: str
    index: int
    file: str
    records: int
    bytes: int
    sha256: str
    bytes_in: int
    copied: int  # records whose source PNG bytes were stored unchanged
    skipped: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    reused: bool = False
    plan_hash: str = ""
    # Images stored whose file is not what its name says (a JPEG named .png): the format found.
    misnamed: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_journal(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = list(self.skipped)
        data["misnamed"] = list(self.misnamed)
        data.pop("reused")
        return data

    @classmethod
    def from_journal(cls, data: dict[str, Any]) -> ShardResult:
        # A journal without "misnamed" predates the check: it cannot say what it stored.
        return cls(
            **{
                **data,
                "skipped": tuple(data["skipped"]),
                "misnamed": tuple(data["misnamed"]),
                "reused": True,
            }
        )


def example_features(
    item: ShardItem, image_data: bytes, *, encoding: str, height: int, width: int, channels: int
) -> dict[str, bytes | int | tuple[int, ...]]:
    """The tf.train.Example features of one image, keyed by converters.features names."""
    return {
        features.IMAGE_ENCODED: image_data,
        features.IMAGE_FORMAT: encoding.encode(),
        features.IMAGE_HEIGHT: height,
        features.IMAGE_WIDTH: width,
        features.IMAGE_CHANNELS: channels,
        features.IMAGE_FILENAME: item.filename.encode(),
        features.LABEL: item.labels,
        features.PATIENT_ID: item.patient_id,
    }


def _skip_entry(task: ShardTask, item: ShardItem, reason: str) -> dict[str, Any]:
    return {"split": task.split, "filename": item.filename, "row": item.row, "reason": reason}


@dataclass
class _Tally:
    """What a shard's writing has read, copied and skipped so far."""

    bytes_in: int = 0
    copied: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    misnamed: list[dict[str, Any]] = field(default_factory=list)


def _named_format(path: str) -> str | None:
    """The image format a file's name claims (only .png is claimed by NIH's layout)."""
    return "PNG" if path.lower().endswith(".png") else None


def _write_item(
    task: ShardTask,
    item: ShardItem,
    writer: TFRecordFileWriter,
    tally: _Tally,
    report: ProgressCallback | None,
) -> None:
    """Encode one image and append its record, or record why it is skipped."""
    try:
        image = load_image(
            Path(item.path), encoding=task.encoding, quality=task.quality, resize=task.resize
        )
    except ImageReadError as error:
        if task.strict:
            raise StrictModeError(f"{item.path}: {error} (row {item.row}; --strict)") from error
        tally.skipped.append(_skip_entry(task, item, str(error)))
        if report is not None:
            report(1, 0, 0)
        return
    claimed = _named_format(item.path)
    if claimed is not None and image.source_format != claimed:
        reason = (
            f"named .{claimed.lower()} but the file is {image.source_format}; stored as "
            f"{task.encoding} from its decoded pixels"
        )
        if task.strict:
            raise StrictModeError(f"{item.path}: {reason} (row {item.row}; --strict)")
        tally.misnamed.append({**_skip_entry(task, item, reason), "format": image.source_format})
    record = example_features(
        item,
        image.data,
        encoding=task.encoding,
        height=image.height,
        width=image.width,
        channels=image.channels,
    )
    before = writer.size
    writer.write_parts(example_parts(record))
    tally.bytes_in += image.source_bytes
    tally.copied += int(image.copied)
    if report is not None:
        report(1, image.source_bytes, writer.size - before)


def write_shard(task: ShardTask, report: ProgressCallback | None = None) -> ShardResult:
    """Write `task`'s shard under a temporary name, then rename it and journal it."""
    out_dir = Path(task.out_dir)
    partial = out_dir / f".{task.file}{PARTIAL_SUFFIX}"
    tally = _Tally()
    try:
        with TFRecordFileWriter(partial, compression=task.compression) as writer:
            for item in task.items:
                _write_item(task, item, writer, tally, report)
    except BaseException:
        partial.unlink(missing_ok=True)  # a partial shard must never look complete
        raise
    os.replace(partial, out_dir / task.file)
    fsync_directory(out_dir)
    result = ShardResult(
        split=task.split,
        index=task.index,
        file=task.file,
        records=writer.records,
        bytes=writer.size,
        sha256=writer.sha256,
        bytes_in=tally.bytes_in,
        copied=tally.copied,
        skipped=tuple(tally.skipped),
        plan_hash=task.plan_hash(),
        misnamed=tuple(tally.misnamed),
    )
    write_journal(out_dir, result)
    return result


def journal_path(out_dir: Path, file: str) -> Path:
    return out_dir / JOURNAL_DIR / f"{file}.json"


def write_journal(out_dir: Path, result: ShardResult) -> None:
    (out_dir / JOURNAL_DIR).mkdir(exist_ok=True)
    write_json_atomic(journal_path(out_dir, result.file), result.to_journal())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def reusable_result(task: ShardTask) -> ShardResult | None:
    """The journaled result of `task`'s shard when the file on disk is that complete shard."""
    out_dir = Path(task.out_dir)
    final = out_dir / task.file
    try:
        data = json.loads(journal_path(out_dir, task.file).read_text(encoding="utf-8"))
        result = ShardResult.from_journal(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None  # no journal, or one we cannot trust: write the shard again
    if result.plan_hash != task.plan_hash() or not final.is_file():
        return None
    if final.stat().st_size != result.bytes or file_sha256(final) != result.sha256:
        return None
    return result
