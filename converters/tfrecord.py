"""Convert ChestX-ray14 into sharded TFRecords: `python -m converters.tfrecord SRC OUT`.

Each split's images (CSV order, from converters.chestxray) are cut into contiguous slices,
one per shard; a pool of processes writes whole shards, so the bytes of every shard depend
only on the plan, never on the worker count or timing. Shards are renamed into place when
complete and journaled; `manifest.json` is written last, atomically. See
docs/tfrecord.md for the record schema and the manifest fields.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue
import re
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from converters import features
from converters.chestxray import ChestXray14, DatasetError, ImageRecord, read_chestxray14
from converters.children import die_with_parent
from converters.labels import LABELS
from converters.lock import LOCK_NAME, exclusive
from converters.manifest import (
    Manifest,
    ManifestError,
    load_manifest,
    manifest_path,
    utc_now,
    write_manifest,
)
from converters.resume import ResumeMismatchError, check_resume, record_options
from converters.shards import (
    JOURNAL_DIR,
    PARTIAL_SUFFIX,
    ShardItem,
    ShardResult,
    ShardTask,
    StrictModeError,
    file_sha256,
    reusable_result,
    write_shard,
)
from converters.skips import missing_images, refuse_skips_under_strict, rejected_rows

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Bytes per stored pixel, to size shards for --target-shard-mb before anything is encoded.
# Rough figures for radiographs; shards land near the target, not on it.
_BYTES_PER_PIXEL = {"png": 0.6, "jpeg": 0.25, "raw": 1.0}
# Output size relative to the source PNG when images keep their size.
_SIZE_VS_SOURCE = {"png": 1.0, "jpeg": 0.5, "raw": 2.5}
_SHARD_FILE = re.compile(r"[A-Za-z0-9_]+-\d{5}-of-\d{5}\.tfrecord")
_POLL_SECONDS = 0.2


class OutputExistsError(ValueError):
    """OUT already holds a conversion and neither --overwrite nor --resume was given."""


@dataclass(frozen=True, kw_only=True)
class ConversionOptions:
    """What to convert and how; see `python -m converters.tfrecord --help`."""

    source: Path
    out: Path
    splits: tuple[str, ...] = SPLITS
    encoding: str = "png"
    quality: int = 95
    resize: int | None = None
    compression: str = "none"
    shard_count: int | None = None
    target_shard_mb: float = 150.0
    workers: int | None = None
    seed: int = 0
    val_fraction: float = 0.1
    limit: int | None = None
    resume: bool = False
    overwrite: bool = False
    strict: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        # Accept str paths and list splits from callers; store the canonical types.
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "splits", tuple(self.splits))

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        checks = [
            (
                self.encoding in features.ENCODINGS,
                f"encoding must be one of "
                f"{', '.join(features.ENCODINGS)}, got {self.encoding!r}",
            ),
            (
                self.compression in features.COMPRESSIONS,
                f"compression must be one of "
                f"{', '.join(features.COMPRESSIONS)}, got {self.compression!r}",
            ),
            (1 <= self.quality <= 100, f"quality must be 1..100, got {self.quality}"),
            (self.resize is None or self.resize >= 1, f"resize must be >= 1, got {self.resize}"),
            (
                self.shard_count is None or self.shard_count >= 1,
                f"shard count must be >= 1, got {self.shard_count}",
            ),
            (self.target_shard_mb > 0, f"target shard MB must be > 0, got {self.target_shard_mb}"),
            (
                self.workers is None or self.workers >= 1,
                f"workers must be >= 1, got {self.workers}",
            ),
            (
                0.0 <= self.val_fraction < 1.0,
                f"val fraction must be in [0, 1), got {self.val_fraction}",
            ),
            (self.limit is None or self.limit >= 1, f"limit must be >= 1, got {self.limit}"),
            (not (self.resume and self.overwrite), "give --resume or --overwrite, not both"),
            (bool(self.splits), "no splits requested"),
        ]
        checks += [
            (split in SPLITS, f"unknown split {split!r} (expected {', '.join(SPLITS)} " "or all)")
            for split in self.splits
        ]
        checks.append((len(set(self.splits)) == len(self.splits), "a split is named twice"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = str(self.source)
        data["out"] = str(self.out)
        data["splits"] = list(self.splits)
        del data["progress"]  # how it was shown, not what was made
        return data


# --- planning ------------------------------------------------------------------------------


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


# --- the output folder ---------------------------------------------------------------------


def conversion_leftovers(out: Path) -> list[Path]:
    """Files in `out` that a conversion writes: manifest, shards, partial shards, journal."""
    if not out.is_dir():
        return []
    found = []
    for entry in sorted(out.iterdir()):
        name = entry.name
        if (
            name == features.MANIFEST_NAME
            or name == JOURNAL_DIR
            or _SHARD_FILE.fullmatch(name)
            or (name.startswith(".") and name.endswith(PARTIAL_SUFFIX))
        ):
            found.append(entry)
    return found


def prepare_output(options: ConversionOptions, planned_files: set[str]) -> None:
    """Refuse, clear or keep what `out` holds, as --overwrite / --resume say.

    The old manifest goes first, so that a crash from here on never leaves a manifest that
    vouches for shards being rewritten.
    """
    out = options.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    leftovers = conversion_leftovers(out)
    if leftovers and not (options.overwrite or options.resume):
        names = ", ".join(path.name for path in leftovers[:4])
        more = f" and {len(leftovers) - 4} more" if len(leftovers) > 4 else ""
        raise OutputExistsError(
            f"{out}: already holds a conversion ({names}{more}); pass --resume to finish it "
            "or --overwrite to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest_path(out).unlink(missing_ok=True)
    for path in leftovers:
        keep = options.resume and (path.name in planned_files or path.name == JOURNAL_DIR)
        if keep or path.name == features.MANIFEST_NAME:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


# --- running -------------------------------------------------------------------------------

_progress_queue: Any = None
_parent_pid: int | None = None


class ParentGoneError(RuntimeError):
    """The converting process died; an orphaned worker stops instead of finishing a shard."""


def _init_worker(progress_queue: Any, parent_pid: int | None) -> None:
    """`parent_pid` is the converting process when it is this worker's parent (fork, spawn);
    None under forkserver, where the parent is the server process."""
    global _progress_queue, _parent_pid
    _progress_queue = progress_queue
    _parent_pid = parent_pid
    if parent_pid is not None:
        die_with_parent(parent_pid)


def _pool_write_shard(task: ShardTask) -> ShardResult:
    def report(images: int, bytes_in: int, bytes_out: int) -> None:
        # Without this check a worker orphaned by a killed run would still rename its shard
        # into a folder that a new run may already be writing.
        if _parent_pid is not None and os.getppid() != _parent_pid:
            raise ParentGoneError(f"the conversion process {_parent_pid} is gone")
        _progress_queue.put((images, bytes_in, bytes_out))

    try:
        return write_shard(task, report)  # removes its partial file on any error
    except ParentGoneError:
        os._exit(1)  # nobody is left to take a result or to send the next task


class _Progress:
    """tqdm on stderr: images, ETA, and source MB/s read."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            unit="img",
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            desc="converting",
        )
        self.started = time.perf_counter()
        self.bytes_in = 0
        self.last_postfix = 0.0

    def update(self, images: int, bytes_in: int, _bytes_out: int = 0) -> None:
        self.bytes_in += bytes_in
        self.bar.update(images)
        now = time.perf_counter()
        if now - self.last_postfix > 0.5:
            rate = self.bytes_in / 1e6 / max(now - self.started, 1e-9)
            self.bar.set_postfix_str(f"{rate:.1f} MB/s in", refresh=False)
            self.last_postfix = now

    def close(self) -> None:
        self.bar.close()


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pool_start_method() -> str:
    """fork (instant) unless TensorFlow is loaded here: its threads make forking unsafe, so
    then forkserver (workers fork from a clean server process), or spawn where neither exists.
    The workers never use TensorFlow themselves.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and "tensorflow" not in sys.modules:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _run_in_pool(tasks: list[ShardTask], workers: int, progress: _Progress) -> list[ShardResult]:
    """Write shards in a process pool. A worker that dies (OOM killer, a signal) raises
    BrokenProcessPool here instead of leaving the run waiting forever for its shard."""
    method = pool_start_method()
    context = multiprocessing.get_context(method)
    parent_pid = None if method == "forkserver" else os.getpid()
    progress_queue = context.Queue()
    results: list[ShardResult] = []
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress_queue, parent_pid),
    ) as pool:
        pending = {pool.submit(_pool_write_shard, task) for task in tasks}
        try:
            while pending:
                done, pending = wait(pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
                _drain(progress_queue, progress)
                results.extend(future.result() for future in done)  # re-raises a worker's error
        except BaseException:
            for future in pending:
                future.cancel()  # shards not started are dropped; running ones finish
            raise
    _drain(progress_queue, progress)
    return results


def _drain(progress_queue: Any, progress: _Progress) -> None:
    while True:
        try:
            progress.update(*progress_queue.get_nowait())
        except queue.Empty:
            return


def run_tasks(tasks: list[ShardTask], *, workers: int, progress: _Progress) -> list[ShardResult]:
    """Write every task's shard; one process when `workers` is 1, else a pool."""
    if workers <= 1 or len(tasks) <= 1:
        return [write_shard(task, progress.update) for task in tasks]
    return _run_in_pool(tasks, min(workers, len(tasks)), progress)


# --- the manifest --------------------------------------------------------------------------


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


# --- the whole conversion ------------------------------------------------------------------


def convert(options: ConversionOptions) -> Manifest:
    """Convert `options.source` into `options.out`; returns the written manifest.

    Raises ValueError (bad options), DatasetError (unreadable data set),
    OutputExistsError (OUT holds a conversion), StrictModeError (--strict and a skip).
    """
    options.validate()
    started = time.perf_counter()
    dataset = read_chestxray14(Path(options.source))
    missing = missing_images(dataset, options.splits)
    rejected = rejected_rows(dataset, options.splits)
    if options.strict:
        refuse_skips_under_strict(dataset, missing, rejected)
    tasks = plan_tasks(dataset, options)
    if not tasks:
        raise DatasetError(
            f"no images on disk for the requested splits ({', '.join(options.splits)})",
            path=Path(options.source),
        )
    if options.out.exists() and not options.out.is_dir():
        raise ValueError(f"{options.out}: exists and is not a folder")
    # One preparer at a time per OUT: a second waits, then finds the first one's work.
    with exclusive(options.out / LOCK_NAME, what=f"the conversion in {options.out}"):
        finished = _finished_conversion(options, tasks) if options.resume else None
        if finished is not None:
            return finished
        return _convert_locked(
            options, dataset=dataset, tasks=tasks, skipped=missing + rejected, started=started
        )


def _finished_conversion(options: ConversionOptions, tasks: list[ShardTask]) -> Manifest | None:
    """Under --resume: refuse other options; return OUT's manifest, untouched, when it is
    already this very conversion, complete (every planned shard journaled and intact)."""
    try:
        document = json.loads(manifest_path(options.out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        document = None
    check_resume(
        options.out,
        JOURNAL_DIR,
        document if isinstance(document, dict) else None,
        options.to_dict(),
    )
    if document is None:
        return None
    try:
        manifest = load_manifest(options.out)
    except ManifestError:
        return None
    listed = {shard.file for split in manifest.splits for shard in manifest.shards[split]}
    if listed != {task.file for task in tasks}:
        return None
    if not all(reusable_result(task) for task in tasks):
        return None
    return manifest


def _convert_locked(
    options: ConversionOptions,
    *,
    dataset: ChestXray14,
    tasks: list[ShardTask],
    skipped: list[dict[str, Any]],
    started: float,
) -> Manifest:
    prepare_output(options, {task.file for task in tasks})
    record_options(options.out, JOURNAL_DIR, options.to_dict())
    reused = [found for task in tasks if (found := reusable_result(task))] if options.resume else []
    reused_files = {result.file for result in reused}
    to_write = [task for task in tasks if task.file not in reused_files]
    workers = min(options.workers or default_workers(), max(len(to_write), 1))
    progress = _Progress(sum(len(task.items) for task in tasks), enabled=options.progress)
    try:
        progress.update(sum(r.records + len(r.skipped) for r in reused), 0)
        written = run_tasks(to_write, workers=workers, progress=progress)
    finally:
        progress.close()
    document = build_manifest_document(
        options=options,
        dataset=dataset,
        results=reused + written,
        missing=skipped,
        wall_seconds=time.perf_counter() - started,
        workers=workers,
    )
    return write_manifest(options.out, document)


# --- the command line ----------------------------------------------------------------------


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
