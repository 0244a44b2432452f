"""The shard plan: each split's images (CSV order) cut into contiguous slices, one per shard,
sized by --shard-count or --target-shard-mb, so that every shard's bytes depend only on the plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from converters.chestxray import ChestXray14
from converters.chestxray_csv import ImageRecord
from converters.options import ConversionOptions
from converters.shards import ShardItem, ShardTask

# Bytes per stored pixel, to size shards for --target-shard-mb before anything is encoded.
# Rough figures for radiographs; shards land near the target, not on it.
_BYTES_PER_PIXEL = {"png": 0.6, "jpeg": 0.25, "raw": 1.0}
# Output size relative to the source PNG when images keep their size.
_SIZE_VS_SOURCE = {"png": 1.0, "jpeg": 0.5, "raw": 2.5}


def _shard_items(records: list[ImageRecord]) -> list[ShardItem]:
    items = []
    for record in records:
        assert record.path is not None  # split() returns only images on disk
        try:
            size = record.path.stat().st_size
        except OSError:
            size = -1  # vanished since the folder was read: the shard writer skips it
        items.append(
            ShardItem(
                filename=record.filename,
                path=str(record.path),
                labels=record.labels,
                patient_id=record.patient_id,
                row=record.row,
                source_bytes=size,
            )
        )
    return items


def estimate_bytes(items: Sequence[ShardItem], options: ConversionOptions) -> float:
    """Expected shard bytes for `items`, before anything is encoded (sizes the shards)."""
    if options.resize is not None:
        return len(items) * options.resize**2 * _BYTES_PER_PIXEL[options.encoding]
    return sum(max(item.source_bytes, 0) for item in items) * _SIZE_VS_SOURCE[options.encoding]


def shard_count_for(items: Sequence[ShardItem], options: ConversionOptions) -> int:
    """Shards for one split: the given count or the size target, never more than images."""
    if not items:
        return 0
    if options.shard_count is not None:
        wanted = options.shard_count
    else:
        wanted = math.ceil(estimate_bytes(items, options) / (options.target_shard_mb * 1e6))
    return max(1, min(wanted, len(items)))


def plan_tasks(dataset: ChestXray14, options: ConversionOptions) -> list[ShardTask]:
    """Every shard to write, in manifest order: split by split, shard k = k-th slice."""
    tasks: list[ShardTask] = []
    for split in options.splits:
        records = dataset.split(split, val_fraction=options.val_fraction, seed=options.seed)
        items = _shard_items(records[: options.limit] if options.limit else records)
        count = shard_count_for(items, options)
        for index in range(count):
            start, stop = index * len(items) // count, (index + 1) * len(items) // count
            tasks.append(
                ShardTask(
                    out_dir=str(options.out),
                    split=split,
                    index=index,
                    count=count,
                    items=tuple(items[start:stop]),
                    encoding=options.encoding,
                    quality=options.quality,
                    resize=options.resize,
                    compression=options.compression,
                    strict=options.strict,
                )
            )
    return tasks
