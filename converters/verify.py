"""Check a conversion against its manifest: `python -m converters.verify OUT [--sample K]`.

Reads every record of every shard with TensorFlow's own reader (so the TFRecord CRCs are
checked exactly as training will check them), compares record counts, byte sizes and
sha256 with the manifest, parses every record with the manifest's feature spec, checks the
label vector and the stored shape, and decodes every image (or a deterministic sample of K).
Shards are checked in parallel processes (`--workers`, default all cores), with a progress
bar on stderr; the report lists problems in shard order whatever the worker count.

Exit codes: 0 all good; 1 a problem (the first bad shard and record are named first);
2 OUT is not a conversion (no or invalid manifest.json).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters import features
from converters.manifest import Manifest, ManifestError, ShardInfo, load_manifest
from converters.shards import file_sha256

_SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (shard file, record index) and what."""

    shard: str | None
    record: int | None
    message: str

    def __str__(self) -> str:
        where = self.shard or "conversion"
        if self.record is not None:
            where += f": record {self.record}"
        return f"{where}: {self.message}"


@dataclass
class VerifyReport:
    """What was checked and every problem found, in shard order."""

    directory: Path
    shards_checked: int = 0
    records_read: int = 0
    images_decoded: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def first_failure(self) -> str:
        """The first bad shard, its first bad record, and what is wrong with that shard."""
        shard = self.problems[0].shard
        in_shard = [problem for problem in self.problems if problem.shard == shard]
        records = [problem.record for problem in in_shard if problem.record is not None]
        where = (shard or "conversion") + (f": record {records[0]}" if records else "")
        return f"{where}: " + "; ".join(problem.message for problem in in_shard)

    def lines(self) -> list[str]:
        counts = (
            f"{self.shards_checked} shard(s), {self.records_read} record(s) read, "
            f"{self.images_decoded} image(s) decoded"
        )
        if self.ok:
            return [f"OK: {self.directory}: {counts}"]
        lines = [
            f"FAILED: {self.first_failure()}",
            f"  {self.directory}: {counts}, {len(self.problems)} problem(s):",
        ]
        lines += [f"  - {problem}" for problem in self.problems[:_SHOWN_PROBLEMS]]
        if len(self.problems) > _SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(self.problems) - _SHOWN_PROBLEMS} more")
        return lines


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
class ShardTask:
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


# Below this many records one process checks everything: starting TensorFlow in each worker
# (seconds per process) would cost more than the parallel decoding saves.
POOL_MIN_RECORDS = 1000
# (records read since the last report) -> None; a worker reports through a queue.
ProgressCallback = Callable[[int], None]
_REPORT_EVERY = 16


def check_shard(tf: Any, task: ShardTask, report: ProgressCallback | None = None) -> ShardCheck:
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


def shard_tasks(manifest: Manifest, *, sample: int | None, seed: int) -> list[ShardTask]:
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
            tasks.append(ShardTask(manifest=manifest, shard=shard, decode=decode))
            first_index += shard.records
    return tasks


# --- workers -------------------------------------------------------------------------------

_worker_queue: Any = None


def _import_tensorflow() -> Any:
    # converters/ never imports bench/; the same settings bench/__init__.py makes.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _init_worker(progress_queue: Any) -> None:
    global _worker_queue
    _worker_queue = progress_queue
    # One decode thread per process: the processes are the parallelism.
    tf = _import_tensorflow()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised


def _pool_check_shard(task: ShardTask) -> ShardCheck:
    return check_shard(_import_tensorflow(), task, _worker_queue.put)


def run_checks(
    tasks: list[ShardTask], *, workers: int, progress: ProgressCallback
) -> Iterator[ShardCheck]:
    """Check every shard, in `workers` processes when more than one; yields in task order."""
    if workers <= 1 or len(tasks) <= 1:
        tf = _import_tensorflow()
        for task in tasks:
            yield check_shard(tf, task, progress)
        return
    from converters.tfrecord import pool_start_method

    context = multiprocessing.get_context(pool_start_method())
    progress_queue = context.Queue()
    with ProcessPoolExecutor(
        min(workers, len(tasks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(progress_queue,),
    ) as pool:
        futures = [pool.submit(_pool_check_shard, task) for task in tasks]
        try:
            for future in futures:
                while True:
                    try:
                        result = future.result(timeout=0.2)
                        break
                    except FuturesTimeout:
                        _drain(progress_queue, progress)
                _drain(progress_queue, progress)
                yield result
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    _drain(progress_queue, progress)


def _drain(progress_queue: Any, progress: ProgressCallback) -> None:
    while True:
        try:
            progress(progress_queue.get_nowait())
        except queue.Empty:
            return


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def verify(
    directory: Path,
    *,
    sample: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Check the conversion in `directory`, shards in parallel (`workers`; by default all
    cores, or one process under POOL_MIN_RECORDS records). Raises ManifestError when it is
    not one."""
    manifest = load_manifest(Path(directory))  # before TensorFlow: "not a conversion" is quick
    report = VerifyReport(directory=manifest.directory)
    tasks = shard_tasks(manifest, sample=sample, seed=seed)
    total = sum(shard.records for shard in (task.shard for task in tasks))
    from tqdm import tqdm

    bar = tqdm(total=total, unit="rec", disable=not progress, file=sys.stderr, desc="verifying")
    if workers is None:
        workers = default_workers() if total >= POOL_MIN_RECORDS else 1
    seen_files: dict[str, str] = {}
    try:
        for check in run_checks(tasks, workers=workers, progress=bar.update):
            report.shards_checked += 1
            report.records_read += check.records_read
            report.images_decoded += check.images_decoded
            report.problems.extend(check.problems)
            for index, name in check.filenames:
                if name in seen_files:
                    report.problems.append(
                        Problem(
                            check.shard, index, f"image {name!r} also stored in {seen_files[name]}"
                        )
                    )
                seen_files[name] = check.shard
    finally:
        bar.close()
    listed = {task.shard.file for task in tasks}
    for stray in sorted(manifest.directory.glob("*-of-*.tfrecord")):
        if stray.name not in listed:  # a glob-based reader would read it as data
            report.problems.append(Problem(stray.name, None, "shard file not in the manifest"))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.verify",
        description="Check a TFRecord conversion against its manifest.json.",
    )
    parser.add_argument("directory", type=Path, help="conversion folder (holds manifest.json)")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="K",
        help="decode K records chosen at random (default: decode all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --sample")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"processes checking shards in parallel (default: all cores, here "
        f"{default_workers()}; one under {POOL_MIN_RECORDS} records)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.sample is not None and args.sample < 0:
        print("error: --sample must be >= 0", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2
    try:
        report = verify(
            args.directory,
            sample=args.sample,
            seed=args.seed,
            workers=args.workers,
            progress=not args.quiet,
        )
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stream = sys.stdout if report.ok else sys.stderr
    print("\n".join(report.lines()), file=stream)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
