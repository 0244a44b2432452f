"""The whole conversion, `convert(options)`: read the data set, plan the shards, prepare OUT under
its lock, re-use complete shards under --resume, write the rest in a pool, write the manifest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from converters.chestxray import ChestXray14, read_chestxray14
from converters.chestxray_layout import DatasetError
from converters.lock import LOCK_NAME, exclusive
from converters.manifest import (
    Manifest,
    ManifestError,
    load_manifest,
    manifest_path,
    write_manifest,
)
from converters.manifest_document import build_manifest_document
from converters.options import ConversionOptions
from converters.output_folder import prepare_output
from converters.pool import Progress, default_workers, run_tasks
from converters.resume import check_resume, record_options
from converters.shard_plan import plan_tasks
from converters.shards import JOURNAL_DIR, ShardTask, reusable_result
from converters.skips import missing_images, refuse_skips_under_strict, rejected_rows


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
    progress = Progress(sum(len(task.items) for task in tasks), enabled=options.progress)
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
