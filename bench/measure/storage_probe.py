"""The storage probe: how fast this file system gives the raw files and the shards, cold.

The poster's question (many small PNG files or a few large TFRecord shards?) is a
storage question as much as a CPU one. Once per sweep, on the data folder, this reads a
sample of the raw image files and a sample of the shards with the page cache emptied
first (per-file `posix_fadvise(DONTNEED)`, bench.input.page_cache), in the way the tuned
pipeline reads them:

- raw files: in a shuffled order (the training pipeline shuffles file names), each file
  read whole, `parallelism` at a time (the pipeline's parallel map; default: one per core);
- shards: in a shuffled order, each read sequentially in 8 MiB chunks (the pipeline's read
  buffer), `shard_parallelism` shards at a time (the interleave's cycle length).

Then it reads the same files again, now cached, for the warm figure. MB/s counts 10^6
bytes. No decoding: only the bytes, so the figures bound what the storage can supply and
say nothing about the CPUs. Run it with
`python -m bench.measure.storage_probe --data-dir D [--records-dir R] --out probe.json`.

Record (JSON): {unit_note, data_dir, records_dir, mounts, raw: null | Read, tfrecord:
null | Read, raw_over_tfrecord_cold_mb_per_sec} where Read = {files, bytes, order,
parallelism, chunk_bytes, cold: Pass, warm: Pass} and Pass = {seconds, mb_per_sec,
files_per_sec, resident_at_start (fraction or null where hidden from this user),
problems}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.input import page_cache

SHARD_CHUNK_BYTES = 8 << 20  # the tuned pipeline's TFRecord read buffer
DEFAULT_MAX_BYTES = 512 << 20  # per kind: enough for a steady rate, short on slow storage
MB = 1e6


@dataclass(frozen=True, kw_only=True)
class ReadPlan:
    """How one kind of file is read: which files, in what order, how many at a time."""

    files: tuple[str, ...]
    parallelism: int
    chunk_bytes: int | None  # None: each file in one read (tf.io.read_file)
    order: str


def sample(paths: Sequence[str], *, max_bytes: int, seed: int) -> list[str]:
    """A shuffled prefix of `paths` holding at most `max_bytes` (at least one file)."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    chosen, total = [], 0
    for path in shuffled:
        size = os.path.getsize(path)
        if chosen and total + size > max_bytes:
            break
        chosen.append(path)
        total += size
    return chosen


def _read_whole(path: str) -> int:
    with open(path, "rb", buffering=0) as handle:
        return len(handle.read())


def _read_chunked(path: str, chunk_bytes: int) -> int:
    read = 0
    buffer = bytearray(chunk_bytes)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            read += count
    return read


def timed_pass(plan: ReadPlan) -> dict[str, Any]:
    """Read every file of `plan` once with its parallelism: seconds, MB/s, files/s."""
    before = page_cache.residency(plan.files)
    problems: list[str] = []

    def read(path: str) -> int:
        try:
            if plan.chunk_bytes is None:
                return _read_whole(path)
            return _read_chunked(path, plan.chunk_bytes)
        except OSError as error:
            problems.append(f"{path}: {error.strerror or error}")
            return 0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=plan.parallelism) as pool:
        total = sum(pool.map(read, plan.files))
    seconds = time.perf_counter() - started
    files_read = len(plan.files) - len(problems)
    return {
        "seconds": seconds,
        "bytes": total,
        "mb_per_sec": total / MB / seconds if seconds > 0 and total else None,
        "files_per_sec": files_read / seconds if seconds > 0 and files_read else None,
        "resident_at_start": before.fraction,
        "problems": problems[:10],
    }


def probe_files(plan: ReadPlan) -> dict[str, Any]:
    """The cold pass (page cache emptied of these files first), then the warm pass."""
    eviction_problems = page_cache.evict(plan.files)
    cold = timed_pass(plan)
    cold["eviction_problems"] = eviction_problems[:10]
    warm = timed_pass(plan)
    return {
        "files": len(plan.files),
        "bytes": sum(os.path.getsize(path) for path in plan.files),
        "order": plan.order,
        "parallelism": plan.parallelism,
        "chunk_bytes": plan.chunk_bytes,
        "cold": cold,
        "warm": warm,
    }


def storage_probe(
    *,
    raw_files: Sequence[str],
    shard_files: Sequence[str],
    parallelism: int | None = None,
    shard_parallelism: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    seed: int = 0,
    data_dir: str | Path | None = None,
    records_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Cold and warm read rates of a sample of the raw files and of the shards."""
    cores = os.cpu_count() or 1
    record: dict[str, Any] = {
        "unit_note": "MB = 10^6 bytes; seconds of wall time; bytes only, nothing decoded",
        "data_dir": None if data_dir is None else str(data_dir),
        "records_dir": None if records_dir is None else str(records_dir),
        "mounts": page_cache.storage_facts({"data_dir": data_dir, "records_dir": records_dir}),
        "max_bytes": max_bytes,
        "raw": None,
        "tfrecord": None,
    }
    if raw_files:
        plan = ReadPlan(
            files=tuple(sample(raw_files, max_bytes=max_bytes, seed=seed)),
            parallelism=parallelism or cores,
            chunk_bytes=None,
            order="shuffled",
        )
        record["raw"] = probe_files(plan)
    if shard_files:
        plan = ReadPlan(
            files=tuple(sample(shard_files, max_bytes=max_bytes, seed=seed)),
            parallelism=shard_parallelism or parallelism or cores,
            chunk_bytes=SHARD_CHUNK_BYTES,
            order="shuffled",
        )
        record["tfrecord"] = probe_files(plan)
    record["raw_over_tfrecord_cold_mb_per_sec"] = _ratio(record)
    return record


def _ratio(record: dict[str, Any]) -> float | None:
    if record["raw"] is None or record["tfrecord"] is None:
        return None
    raw = record["raw"]["cold"]["mb_per_sec"]
    shards = record["tfrecord"]["cold"]["mb_per_sec"]
    return raw / shards if raw and shards else None


def summary_lines(record: dict[str, Any]) -> list[str]:
    """The probe as a few lines of text, for the terminal."""
    lines = []
    for kind, name in (("raw", "raw files"), ("tfrecord", "TFRecord shards")):
        read = record[kind]
        if read is None:
            lines.append(f"{name}: not probed")
            continue
        cold, warm = read["cold"], read["warm"]
        lines.append(
            f"{name}: {read['files']} files, {read['bytes'] / MB:.1f} MB, "
            f"{read['parallelism']} at a time: cold {_rate(cold)}, warm {_rate(warm)}"
        )
    return lines


def _rate(figures: dict[str, Any]) -> str:
    if figures["mb_per_sec"] is None:
        return "n/a"
    return f"{figures['mb_per_sec']:.1f} MB/s ({figures['files_per_sec']:.1f} files/s)"


def probe_folders(
    *,
    data_dir: str | Path | None,
    records_dir: str | Path | None,
    split: str = "train",
    val_fraction: float = 0.1,
    seed: int = 0,
    parallelism: int | None = None,
    shard_parallelism: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """The probe on a ChestX-ray14 folder and/or a conversion; ValueError/OSError if unreadable."""
    raw_files = (
        page_cache.cell_files(
            data_format="raw",
            splits=(split,),
            data_dir=data_dir,
            val_fraction=val_fraction,
            seed=seed,
        )
        if data_dir
        else []
    )
    shard_files = (
        page_cache.cell_files(data_format="tfrecord", splits=(split,), records_dir=records_dir)
        if records_dir
        else []
    )
    record = storage_probe(
        raw_files=raw_files,
        shard_files=shard_files,
        parallelism=parallelism,
        shard_parallelism=shard_parallelism,
        max_bytes=max_bytes,
        seed=seed,
        data_dir=data_dir,
        records_dir=records_dir,
    )
    record["split"] = split
    return record


def write_record(path: Path, record: dict[str, Any]) -> None:
    from converters.manifest import write_text_atomic

    write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m bench.measure.storage_probe", description=__doc__.splitlines()[0]
    )
    result.add_argument("--data-dir", type=Path, help="the ChestX-ray14 folder (raw files)")
    result.add_argument("--records-dir", type=Path, help="a conversion (manifest.json)")
    result.add_argument("--split", default="train")
    result.add_argument("--parallelism", type=int, default=None, help="default: CPU cores")
    result.add_argument("--shard-parallelism", type=int, default=None)
    result.add_argument("--max-mb", type=float, default=DEFAULT_MAX_BYTES / (1 << 20))
    result.add_argument("--seed", type=int, default=0)
    result.add_argument("--out", type=Path, help="write the record here (JSON)")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.data_dir is None and args.records_dir is None:
        parser().error("give --data-dir, --records-dir or both")
    for name in ("parallelism", "shard_parallelism"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser().error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        record = probe_folders(
            data_dir=args.data_dir,
            records_dir=args.records_dir,
            split=args.split,
            seed=args.seed,
            parallelism=args.parallelism,
            shard_parallelism=args.shard_parallelism,
            max_bytes=int(args.max_mb * (1 << 20)),
        )
    except (OSError, ValueError, KeyError) as error:
        print(f"storage probe: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(record)))
    if args.out:
        write_record(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
