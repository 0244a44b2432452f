"""Check a conversion against its manifest: `python -m converters.verify OUT [--sample K]`.

Reads every record of every shard with TensorFlow's own reader (so the TFRecord CRCs are
checked exactly as training will check them), compares record counts, byte sizes and
sha256 with the manifest, parses every record with the manifest's feature spec, checks the
label vector and the stored shape, and decodes every image (or a deterministic sample of K).

Exit codes: 0 all good; 1 a problem (the first bad shard and record are named first);
2 OUT is not a conversion (no or invalid manifest.json).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
from collections.abc import Iterator, Sequence
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


def check_shard(
    tf: Any,
    manifest: Manifest,
    shard: ShardInfo,
    *,
    first_index: int,
    decode_indices: set[int] | None,
    report: VerifyReport,
    seen_files: dict[str, str],
) -> None:
    """Check one shard's file and every record in it; append problems to `report`."""
    path = manifest.directory / shard.file
    report.shards_checked += 1

    def problem(message: str, record: int | None = None) -> None:
        report.problems.append(Problem(shard.file, record, message))

    if not path.is_file():
        problem("missing")
        return
    size = path.stat().st_size
    if size != shard.bytes:
        problem(f"{size} bytes, manifest says {shard.bytes} (truncated or changed)")
    if file_sha256(path) != shard.sha256:
        problem("sha256 differs from the manifest")
    spec = features.tf_feature_spec(manifest.feature_spec)
    index = 0
    try:
        for record in _read_records(tf, path, manifest):
            decode = decode_indices is None or first_index + index in decode_indices
            for message in check_record(
                tf,
                record,
                spec,
                manifest,
                decode=decode,
                seen_files=seen_files,
                shard_file=shard.file,
            ):
                problem(message, index)
            report.images_decoded += int(decode)
            report.records_read += 1
            index += 1
    except tf.errors.OpError as error:  # DataLossError: a bad CRC or a truncated record
        first_line = _tf_message(error)
        problem(f"unreadable ({type(error).__name__}): {first_line}", index)
        return
    if index != shard.records:
        problem(f"{index} records, manifest says {shard.records}")


def check_record(
    tf: Any,
    record: Any,
    spec: dict[str, Any],
    manifest: Manifest,
    *,
    decode: bool,
    seen_files: dict[str, str],
    shard_file: str,
) -> list[str]:
    """Problems with one serialized record: parse, contents, decode, duplicate file names."""
    try:
        parsed = tf.io.parse_single_example(record, spec)
    except tf.errors.InvalidArgumentError as error:
        return [f"does not parse: {_tf_message(error)}"]
    problems = check_example(tf, parsed, manifest, decode=decode)
    name = parsed[features.IMAGE_FILENAME].numpy().decode(errors="replace")
    if name in seen_files:
        problems.append(f"image {name!r} also stored in {seen_files[name]}")
    seen_files[name] = shard_file
    return problems


def verify(directory: Path, *, sample: int | None = None, seed: int = 0) -> VerifyReport:
    """Check the conversion in `directory`. Raises ManifestError when it is not one."""
    # converters/ never imports bench/; the same settings bench/__init__.py makes.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    manifest = load_manifest(Path(directory))  # before TensorFlow: "not a conversion" is quick
    import tensorflow as tf

    report = VerifyReport(directory=manifest.directory)
    decode_indices = _sampled(manifest, sample, seed)
    seen_files: dict[str, str] = {}
    first_index = 0
    for split in manifest.splits:
        for shard in manifest.shards[split]:
            check_shard(
                tf,
                manifest,
                shard,
                first_index=first_index,
                decode_indices=decode_indices,
                report=report,
                seen_files=seen_files,
            )
            first_index += shard.records
    listed = {shard.file for split in manifest.splits for shard in manifest.shards[split]}
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
    args = parser.parse_args(argv)
    if args.sample is not None and args.sample < 0:
        print("error: --sample must be >= 0", file=sys.stderr)
        return 2
    try:
        report = verify(args.directory, sample=args.sample, seed=args.seed)
    except ManifestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stream = sys.stdout if report.ok else sys.stderr
    print("\n".join(report.lines()), file=stream)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
