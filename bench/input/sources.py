"""The source stage: where examples come from (raw image files or TFRecord shards).

This is the only stage in which raw files and TFRecords differ (the structure of
official/core/input_reader.py: source -> decode -> parse -> preprocess). A source stage
turns a `Source` into a dataset of *encoded elements*, one per example:

    payload   string   the file path (raw) or the serialized tf.train.Example (tfrecord);
                       "" where a shard's record could not be read (`known_problem`)
    source_id int64    index into Source.files (the image file, or the shard)
    record    int64    record index inside the shard; -1 for raw files
    label     float32 [14]  raw only, from the CSV (records carry theirs inside)

and `bench.input.decoders.loader(source)` gives the function that turns one such element into
(uint8 image [H, W, 1], float32 label [14]). A TFRecord element is built by zipping
datasets, with no function call per record: at a few thousand records/s per core,
per-record map and filter calls cost more CPU than reading the records.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from bench.contract.config import DATA_FORMATS
from bench.input.problems import (  # noqa: F401 - re-exported: the pipelines' names
    PROBLEM_NONE,
    PROBLEM_UNDECODABLE,
    PROBLEM_UNREADABLE,
    PROBLEMS,
)

READ_BUFFER_BYTES = 8 * 1024 * 1024
# Every tf.data function here is plain TensorFlow: skipping AutoGraph conversion
# saves seconds of dataset construction.
plain = tf.autograph.experimental.do_not_convert

Element = dict[str, tf.Tensor]
# Replaced by (service workers, this worker's index) on each tf.data service worker.
SHARD_HINT = tf.data.experimental.SHARD_HINT


@dataclass(frozen=True, kw_only=True)
class Source:
    """What a pipeline reads: the files of one split, and how to read them."""

    format: str  # "raw" | "tfrecord"
    split: str
    num_examples: int
    files: tuple[str, ...]  # raw: one image per file; tfrecord: the shards
    description: dict[str, Any]  # JSON-able, stored in result["dataset"]
    labels: tuple[tuple[int, ...], ...] = ()  # raw only: per file, multi-hot
    record_counts: tuple[int, ...] = ()  # tfrecord only: per shard, from the manifest
    compression: str = "none"  # tfrecord only: "none" | "gzip"
    encoding: str | None = "png"  # every image's format; None: mixed (raw files only)
    stored_size: int | None = None  # every image is stored_size squared (tfrecord --resize)
    channels: int | None = None  # every image's channels, when the manifest says (tfrecord)

    def __post_init__(self) -> None:
        if self.format not in DATA_FORMATS:
            raise ValueError(f"source format must be raw or tfrecord, got {self.format!r}")


@dataclass(frozen=True, kw_only=True)
class ReadPlan:
    """How the source stage reads, decided by the pipeline structure (bench.input.pipelines)."""

    training: bool
    parallel: bool  # tuned: interleave shards in parallel
    worker_index: int
    num_workers: int
    repeat: bool
    shuffle_seed: int
    cycle_length: int | None = None
    shuffle_buffer: int = 1024
    # > 0: read by that many tf.data service workers (bench.service.pool), each taking
    # its own part of this worker's share through a SHARD_HINT the service fills in.
    service_workers: int = 0


def raw_source(data_dir: Path, split: str, *, val_fraction: float = 0.1, seed: int = 0) -> Source:
    """The split's image files from a ChestX-ray14 folder (via the data layer), CSV order."""
    from converters.chestxray import read_chestxray14

    dataset = read_chestxray14(Path(data_dir))
    records = [
        r for r in dataset.split(split, val_fraction=val_fraction, seed=seed) if r.path is not None
    ]
    if not records:
        raise ValueError(f"{data_dir}: split {split!r} has no images on disk")
    encoding = _file_encoding(str(r.path) for r in records)
    description = {
        "source": "raw",
        "path": str(data_dir),
        "split": split,
        "images": len(records),
        "encoding": encoding or "mixed",
        "compression": None,
        "records_dir": None,
        "image_size": None,
        "files": len(records),
        "val_fraction": val_fraction,
        "split_seed": seed,
    }
    return Source(
        format="raw",
        split=split,
        num_examples=len(records),
        files=tuple(str(r.path) for r in records),
        labels=tuple(tuple(r.labels) for r in records),
        encoding=encoding,
        description=description,
    )


def is_jpeg_name(path: str) -> bool:
    """A raw file's encoding by its name, for folders of mixed files."""
    return path.lower().endswith((".jpg", ".jpeg"))


def _file_encoding(paths: Any) -> str | None:
    """jpeg when every file is named .jpg/.jpeg, png when none is; None when mixed."""
    kinds = {is_jpeg_name(path) for path in paths}
    if kinds == {True}:
        return "jpeg"
    return "png" if kinds == {False} else None


def tfrecord_source(records_dir: Path, split: str) -> Source:
    """The split's shards from a conversion (its manifest.json), in order."""
    from converters.manifest import load_manifest

    manifest = load_manifest(Path(records_dir))
    paths = manifest.shard_paths(split)
    counts = tuple(shard.records for shard in manifest.shards[split])
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{records_dir}: split {split!r}: missing shards: {missing}")
    _check_record_counts(manifest, split)
    total = manifest.record_count(split)
    if total == 0:
        raise ValueError(f"{records_dir}: split {split!r} has no records")
    description = {
        "source": "tfrecord",
        "path": str(records_dir),
        "records_dir": str(records_dir),
        "split": split,
        "images": total,
        "encoding": manifest.encoding,
        "compression": manifest.compression,
        "image_size": manifest.image_size,
        "shards": len(paths),
        "format_version": manifest.format_version,
    }
    return Source(
        format="tfrecord",
        split=split,
        num_examples=total,
        files=tuple(str(path) for path in paths),
        record_counts=counts,
        compression=manifest.compression,
        encoding=manifest.encoding,
        stored_size=manifest.image_size,
        channels=manifest.data.get("channels"),
        description=description,
    )


def _check_record_counts(manifest: Any, split: str) -> None:
    """Raise ValueError naming a shard whose record count is not its manifest's.

    The pipelines read exactly the listed records (evaluation counts on it), so neither a
    shard that grew after conversion nor a manifest that lists fewer or more records than an
    intact shard holds may be trusted: every shard is counted (framing only; uncompressed
    shards are seeked over, gzip ones decompressed, in threads). A shard that is shorter
    and whose size differs from the manifest's (truncated, corrupt) is left to the
    pipeline's guard, which names its first unreadable record and lets --skip-bad skip it.
    """
    from converters.records import count_records

    pairs = list(zip(manifest.shards[split], manifest.shard_paths(split), strict=True))

    def count(pair: tuple[Any, Path]) -> int:
        return count_records(pair[1], compression=manifest.compression)

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(pairs)))) as pool:
        found_counts = list(pool.map(count, pairs))
    for (shard, path), found in zip(pairs, found_counts, strict=True):
        if found == shard.records:
            continue
        size = path.stat().st_size
        check = f"check it with python -m converters.verify {manifest.directory}"
        if found > shard.records:
            raise ValueError(
                f"{path}: holds {found} records where its manifest lists {shard.records} "
                f"({size} bytes, manifest says {shard.bytes}): the shard changed "
                f"after conversion; {check}"
            )
        if size == shard.bytes:
            raise ValueError(
                f"{path}: holds {found} records where its manifest lists {shard.records}, "
                f"with the size the manifest lists ({size} bytes): the manifest does not "
                f"match this shard (edited or from another conversion); {check}"
            )


def encoded_elements(source: Source, plan: ReadPlan) -> tf.data.Dataset:
    """The source stage: encoded elements, sharded, shuffled and repeated as `plan` says."""
    if source.format == "raw":
        return _raw_elements(source, plan)
    return _tfrecord_elements(source, plan)


def uses_file_sharding(source: Source, plan: ReadPlan) -> bool:
    """Training shards whole files by worker; evaluation (and too few files) shards elements.

    For raw sources a file is an element, so both are the same thing.
    """
    return plan.training and len(source.files) >= plan.num_workers


def _raw_elements(source: Source, plan: ReadPlan) -> tf.data.Dataset:
    paths = tf.constant(source.files)
    labels = tf.constant(source.labels, tf.float32)
    ids = tf.data.Dataset.range(len(source.files)).shard(plan.num_workers, plan.worker_index)
    if plan.service_workers:
        ids = ids.shard(SHARD_HINT, SHARD_HINT)
    if plan.training:
        ids = ids.shuffle(len(source.files), seed=plan.shuffle_seed, reshuffle_each_iteration=True)
    if plan.repeat:
        ids = ids.repeat()

    def element(index: tf.Tensor) -> Element:
        return {
            "payload": paths[index],
            "source_id": index,
            "record": tf.constant(-1, tf.int64),
            "label": labels[index],
        }

    return ids.map(plain(element))


def _tfrecord_elements(source: Source, plan: ReadPlan) -> tf.data.Dataset:
    file_sharding = uses_file_sharding(source, plan)
    shard_ids = tf.data.Dataset.range(len(source.files))
    # Service workers split whole shards too where every one gets some, else records.
    service_files = file_sharding and len(source.files) >= plan.num_workers * plan.service_workers
    if file_sharding:
        shard_ids = shard_ids.shard(plan.num_workers, plan.worker_index)
    if plan.service_workers and service_files:
        shard_ids = shard_ids.shard(SHARD_HINT, SHARD_HINT)
    if plan.training:
        shard_ids = shard_ids.shuffle(
            len(source.files), seed=plan.shuffle_seed, reshuffle_each_iteration=True
        )
    if plan.repeat:
        shard_ids = shard_ids.repeat()
    read = _shard_reader(source, buffer_size=READ_BUFFER_BYTES if plan.parallel else None)
    if plan.parallel:
        # Element sharding needs every worker to see the same order before it shards.
        deterministic = not (
            plan.training and file_sharding and (service_files or not plan.service_workers)
        )
        records = shard_ids.interleave(
            plain(read),
            cycle_length=plan.cycle_length or tf.data.AUTOTUNE,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )
    else:
        records = shard_ids.flat_map(plain(read))
    if not file_sharding:
        records = records.shard(plan.num_workers, plan.worker_index)
    if plan.service_workers and not service_files:
        records = records.shard(SHARD_HINT, SHARD_HINT)
    if plan.training and plan.shuffle_buffer > 1:
        records = records.shuffle(
            plan.shuffle_buffer, seed=plan.shuffle_seed + 1, reshuffle_each_iteration=True
        )
    return records


def _shard_reader(source: Source, *, buffer_size: int | None) -> Callable[[tf.Tensor], Any]:
    """shard id -> its records as elements, with unreadable records kept, as "" payloads.

    TensorFlow's reader errors (truncated or corrupt data) do not name the file. Each shard
    is read with errors caught and padded with "" up to the record count its manifest
    lists: a "" where a record should be marks one that could not be read, and the guard
    names it with the shard and record index. (No real record is empty: it holds an image.)
    More records than the manifest lists are caught before reading (`tfrecord_source`).
    """
    paths = tf.constant(source.files)
    counts = tf.constant(source.record_counts, tf.int64)
    compression = "GZIP" if source.compression == "gzip" else ""

    def read(shard_id: tf.Tensor) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(
            paths[shard_id], compression_type=compression, buffer_size=buffer_size
        )
        padding = tf.data.Dataset.from_tensors(tf.constant("")).repeat()
        expected = counts[shard_id]
        return tf.data.Dataset.zip(
            {
                "payload": records.ignore_errors().concatenate(padding).take(expected),
                "source_id": tf.data.Dataset.from_tensors(shard_id).repeat(),
                "record": tf.data.Dataset.range(expected),
            }
        )

    return read


def known_problem(element: Element) -> tf.Tensor:
    """The element's problem code before decoding: PROBLEM_UNREADABLE for a shard's
    unreadable record (an empty payload; a raw element's payload is a path), else none."""
    unreadable = tf.equal(tf.strings.length(element["payload"]), 0)
    return tf.where(unreadable, PROBLEM_UNREADABLE, PROBLEM_NONE)
