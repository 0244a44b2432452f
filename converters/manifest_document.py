"""The manifest document of a finished conversion: shards per split, options, source, cost and
skips (written by converters.manifest.write_manifest; fields in docs/tfrecord.md).
"""

from __future__ import annotations

import os
from typing import Any

from converters import features
from converters.chestxray import ChestXray14
from converters.labels import LABELS
from converters.manifest import utc_now
from converters.options import ConversionOptions
from converters.shards import ShardResult, file_sha256


def build_manifest_document(
    *,
    options: ConversionOptions,
    dataset: ChestXray14,
    results: list[ShardResult],
    missing: list[dict[str, Any]],
    wall_seconds: float,
    workers: int,
) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in options.splits:
        shards = sorted((r for r in results if r.split == split), key=lambda r: r.index)
        splits[split] = {
            "records": sum(shard.records for shard in shards),
            "shards": [
                {"file": s.file, "records": s.records, "bytes": s.bytes, "sha256": s.sha256}
                for s in shards
            ],
        }
    ordered = sorted(results, key=lambda r: (options.splits.index(r.split), r.index))
    converted = [r for r in results if not r.reused]
    images_this_run = sum(r.records for r in converted)
    summary = dataset.summary
    return {
        "format_version": features.FORMAT_VERSION,
        "kind": "chexbench-tfrecord",
        "created_at": utc_now(),
        "encoding": options.encoding,
        "compression": options.compression,
        "image_size": options.resize,
        "channels": 1,
        "labels": list(LABELS),
        "feature_spec": features.FEATURE_SPEC,
        "splits": splits,
        "options": {**options.to_dict(), "workers": workers},
        "source": {
            "path": str(options.source.resolve()),
            "csv": summary.csv_path.name,
            "csv_sha256": file_sha256(dataset.csv_path),
            "csv_rows": summary.rows,
            "images_found": summary.images_found,
            "listed_missing": len(summary.listed_missing),
            "unlisted": len(summary.unlisted),
            "bad_rows": [{"row": row, "reason": why} for row, why in summary.bad_rows],
        },
        "stats": {
            "wall_seconds": round(wall_seconds, 3),
            "images": sum(r.records for r in results),
            "images_this_run": images_this_run,
            # Null when every shard was re-used: no conversion rate was measured.
            "images_per_sec": (
                round(images_this_run / wall_seconds, 2)
                if images_this_run and wall_seconds
                else None
            ),
            "bytes_in": sum(r.bytes_in for r in results),
            "bytes_out": sum(r.bytes for r in results),
            "copied_unchanged": sum(r.copied for r in results),
            "shards": len(results),
            "reused_shards": len(results) - len(converted),
            "workers": workers,
            "cpu_count": os.cpu_count(),
        },
        "skipped": missing + [entry for r in ordered for entry in r.skipped],
        # Stored, but the file is not the format its name says (e.g. a JPEG named .png).
        "misnamed": [entry for r in ordered for entry in r.misnamed],
    }
