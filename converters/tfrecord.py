"""Convert ChestX-ray14 into sharded TFRecords: `python -m converters.tfrecord SRC OUT`.

Each split's images (CSV order, from converters.chestxray) are cut into contiguous slices,
one per shard; a pool of processes writes whole shards, so the bytes of every shard depend
only on the plan, never on the worker count or timing. Shards are renamed into place when
complete and journaled; `manifest.json` is written last, atomically. See
docs/tfrecord.md for the record schema and the manifest fields.

This module is the command line. The stages: converters.options (what to make),
converters.shard_plan (which images go in which shard), converters.output_folder (OUT
refused, cleared or kept), converters.conversion (`convert`, the whole run),
converters.manifest_document (what the manifest says).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from converters import features
from converters.chestxray_layout import DatasetError
from converters.conversion import convert
from converters.manifest import Manifest
from converters.options import SPLITS, ConversionOptions
from converters.output_folder import OutputExistsError
from converters.pool import default_workers
from converters.resume import ResumeMismatchError
from converters.shards import StrictModeError


def summary_lines(manifest: Manifest) -> list[str]:
    """A one-screen summary of a finished conversion."""
    stats = manifest.stats
    size = f"{manifest.image_size}x{manifest.image_size}" if manifest.image_size else "source size"
    lines = [
        f"TFRecords in {manifest.directory}: {manifest.encoding}, {size}, "
        f"compression {manifest.compression}",
    ]
    source = manifest.source
    lines.append(
        f"  source {source['path']}: {source['csv_rows']} CSV rows, {source['images_found']} "
        f"images found, {source['listed_missing']} listed but missing, {source['unlisted']} "
        f"not in the CSV, {len(source['bad_rows'])} bad row(s)"
    )
    for split in manifest.splits:
        shards = manifest.shards[split]
        megabytes = sum(shard.bytes for shard in shards) / 1e6
        lines.append(
            f"  {split:5s} {manifest.record_count(split):7d} records in "
            f"{len(shards)} shard(s), {megabytes:.1f} MB"
        )
    rate = stats.get("images_per_sec")
    lines.append(
        f"  {stats['images']} images, {stats['bytes_in'] / 1e6:.1f} MB in -> "
        f"{stats['bytes_out'] / 1e6:.1f} MB out, {stats['wall_seconds']:.1f} s, "
        f"{rate if rate is not None else 'n/a'} images/s with {stats['workers']} worker(s)"
        + (f"; {stats['reused_shards']} shard(s) re-used" if stats["reused_shards"] else "")
    )
    if manifest.skipped:
        shown = "; ".join(
            f"{entry['filename']}: {entry['reason']}" for entry in manifest.skipped[:5]
        )
        more = f" ... and {len(manifest.skipped) - 5} more" if len(manifest.skipped) > 5 else ""
        lines.append(f"  WARNING: {len(manifest.skipped)} image(s) skipped: {shown}{more}")
    misnamed = manifest.data.get("misnamed") or []
    if misnamed:
        shown = "; ".join(f"{entry['filename']}: {entry['reason']}" for entry in misnamed[:5])
        more = f" ... and {len(misnamed) - 5} more" if len(misnamed) > 5 else ""
        lines.append(
            f"  WARNING: {len(misnamed)} image(s) not in the format their name says "
            f"(stored; --strict refuses them): {shown}{more}"
        )
    return lines


def _parse_splits(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return SPLITS if names == ("all",) else names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m converters.tfrecord",
        description="Convert a ChestX-ray14 folder into sharded TFRecords plus manifest.json.",
    )
    parser.add_argument("source", type=Path, help="ChestX-ray14 folder (CSV, split lists, images)")
    parser.add_argument("out", type=Path, help="output folder for shards and manifest.json")
    parser.add_argument(
        "--splits",
        type=_parse_splits,
        default=SPLITS,
        help="comma-separated: train,val,test (default) or all",
    )
    parser.add_argument(
        "--encoding",
        choices=features.ENCODINGS,
        default="png",
        help="png (lossless, default), jpeg or raw uint8 pixels",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    parser.add_argument(
        "--resize",
        type=int,
        default=None,
        metavar="N",
        help="store N x N images (default: source size, no re-encoding for png)",
    )
    parser.add_argument("--compression", choices=features.COMPRESSIONS, default="none")
    sharding = parser.add_mutually_exclusive_group()
    sharding.add_argument("--shard-count", type=int, default=None, help="shards per split")
    sharding.add_argument(
        "--target-shard-mb",
        type=float,
        default=150.0,
        help="aim for shards of about this size (default 150)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"processes (default: all cores, here {default_workers()})",
    )
    parser.add_argument("--seed", type=int, default=0, help="train/val split seed")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of train_val patients in val (default 0.1)",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N images per split")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted conversion, re-using complete shards",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a conversion in OUT")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1) instead of skipping a missing or unreadable image",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def options_from_args(args: argparse.Namespace) -> ConversionOptions:
    return ConversionOptions(
        source=args.source,
        out=args.out,
        splits=args.splits,
        encoding=args.encoding,
        quality=args.quality,
        resize=args.resize,
        compression=args.compression,
        shard_count=args.shard_count,
        target_shard_mb=args.target_shard_mb,
        workers=args.workers,
        seed=args.seed,
        val_fraction=args.val_fraction,
        limit=args.limit,
        resume=args.resume,
        overwrite=args.overwrite,
        strict=args.strict,
        progress=not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        options.validate()
        manifest = convert(options)
    except (OutputExistsError, ResumeMismatchError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StrictModeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except BrokenProcessPool as error:
        print(f"error: a worker process died ({error}); rerun with --resume", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: conversion failed: {error}", file=sys.stderr)
        return 1
    lines = summary_lines(manifest)
    print("\n".join(line for line in lines if not line.startswith("  WARNING")))
    for line in lines:
        if line.startswith("  WARNING"):
            print(line.strip(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
