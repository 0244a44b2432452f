"""Verify speed beside conversion speed: `python -m converters.verify_benchmark`.

Per round, interleaved: convert a synthetic set (or `--source`), verify it with one process,
verify it with `--workers` processes. Prints each row's median records/s with every round's
figure and the load average; asserts nothing. Wall-clock as a user runs each command: the
verifies run as `python -m converters.verify` (starting TensorFlow included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from converters.conversion import convert
from converters.manifest import load_manifest
from converters.options import ConversionOptions
from converters.pool import default_workers
from converters.synth import generate


def _timed(action: Callable[[], int]) -> float:
    """Records per second of `action`, which returns the records it handled."""
    started = time.perf_counter()
    records = action()
    return records / (time.perf_counter() - started)


def _verify_command(out: Path, workers: int) -> int:
    argv = [sys.executable, "-m", "converters.verify", str(out), "--quiet"]
    done = subprocess.run(
        [*argv, "--workers", str(workers)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"verify failed: {done.stderr[-2000:]}")
    return load_manifest(out).stats["images"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converters.verify_benchmark")
    parser.add_argument("--source", type=Path, default=None, help="ChestX-ray14 folder")
    parser.add_argument("--images", type=int, default=400, help="synthetic images")
    parser.add_argument("--size", type=int, default=1024, help="synthetic image size")
    parser.add_argument("--encoding", default="png", choices=("png", "jpeg", "raw"))
    parser.add_argument("--resize", type=int, default=None)
    parser.add_argument("--shards", type=int, default=None, help="shards per split")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as scratch:
        source = args.source or generate(
            Path(scratch) / "source", images=args.images, size=args.size, seed=1
        )
        out = Path(scratch) / "records"
        options = ConversionOptions(
            source=source,
            out=out,
            splits=("train", "val", "test"),
            encoding=args.encoding,
            resize=args.resize,
            shard_count=args.shards or args.workers,
            workers=args.workers,
            overwrite=True,
        )
        rows: dict[str, list[float]] = {
            f"convert ({args.workers} workers)": [],
            "verify (1 process)": [],
            f"verify ({args.workers} processes)": [],
        }
        for _ in range(args.repeats):
            names = list(rows)
            rows[names[0]].append(_timed(lambda: convert(options).stats["images"]))
            rows[names[1]].append(_timed(lambda: _verify_command(out, 1)))
            rows[names[2]].append(_timed(lambda: _verify_command(out, args.workers)))
    what = f"{args.encoding}" + (f" {args.resize} px" if args.resize else " source size")
    print(f"records/s, {what}, {args.repeats} round(s) interleaved; load {os.getloadavg()}")
    for name, rates in rows.items():
        rounds = " / ".join(f"{rate:.1f}" for rate in rates)
        print(f"  {name:26s} median {statistics.median(rates):8.1f}   rounds {rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
