"""Check a conversion against its manifest: `python -m converters.verify OUT [--sample K]`.

Reads every record of every shard with TensorFlow's own reader (so the TFRecord CRCs are
checked exactly as training will check them), compares record counts, byte sizes and
sha256 with the manifest, parses every record with the manifest's feature spec, checks the
label vector and the stored shape, and decodes every image (or a deterministic sample of K).
Shards are checked in parallel processes (`--workers`, default all cores), with a progress
bar on stderr; the report lists problems in shard order whatever the worker count.

Exit codes: 0 all good; 1 a problem (the first bad shard and record are named first);
2 OUT is not a conversion (no or invalid manifest.json).

The parts: converters.verify_shards (one shard, record by record), converters.verify_pool
(shards in parallel processes), converters.verify_report (the problems and the report).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from converters.manifest import ManifestError, load_manifest
from converters.pool import default_workers
from converters.verify_pool import POOL_MIN_RECORDS, run_checks
from converters.verify_report import Problem, VerifyReport
from converters.verify_shards import shard_tasks


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
