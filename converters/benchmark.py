"""Conversion benchmark: `python -m converters.benchmark [--images N --size S --workers W]`.

Prints how fast this machine converts full-size ChestX-ray14 PNGs into TFRecords, for
lossless PNG (the copy path), and resize-256 PNG, JPEG and raw, and beside them, in the
same run and with the same number of processes, the rate of just reading the files, of
reading and decoding them, and of reading, decoding and resizing them: the ceilings a
conversion cannot beat. It asserts nothing; it prints figures and the machine's load.

Conversion rates are wall-clock for the whole conversion as a user runs it (reading the
data set, starting the workers, writing, fsync, the manifest); ceilings are measured on a
pool already started. The source files are in the page cache (just generated or read).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from converters.chestxray import read_chestxray14
from converters.conversion import convert
from converters.options import ConversionOptions
from converters.pool import default_workers, pool_start_method

CEILING_SIZE = 256


@dataclass(frozen=True)
class Conversion:
    name: str
    encoding: str
    resize: int | None


CONVERSIONS: tuple[Conversion, ...] = (
    Conversion("lossless png (copy)", "png", None),
    Conversion(f"png {CEILING_SIZE}", "png", CEILING_SIZE),
    Conversion(f"jpeg {CEILING_SIZE} q95", "jpeg", CEILING_SIZE),
    Conversion(f"raw {CEILING_SIZE}", "raw", CEILING_SIZE),
)


@dataclass(frozen=True)
class Row:
    """One measured line of the table."""

    name: str
    kind: str  # "ceiling" or "conversion"
    images: int
    wall_seconds: float
    images_per_sec: float
    megabytes_in: float
    megabytes_out: float | None


def _read_only(path: str) -> int:
    return len(Path(path).read_bytes())


def _copy_into(folder: str, path: str) -> int:
    return len(shutil.copyfile(path, os.path.join(folder, os.path.basename(path))))


def _read_decode(path: str) -> int:
    with Image.open(path) as image:
        return int(np.asarray(image.convert("L")).size)


def _read_decode_resize(path: str) -> int:
    with Image.open(path) as image:
        gray = image.convert("L").resize((CEILING_SIZE, CEILING_SIZE), Image.Resampling.BILINEAR)
        return int(np.asarray(gray).size)


def measure_ceilings(files: list[str], workers: int, scratch: Path) -> list[Row]:
    """Images/s of bare read / copy / decode / decode+resize of `files` on `workers` processes.

    The copy goes into `scratch` (the same file system as the conversions' output).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    method = pool_start_method()  # the converter's own choice, for a like-for-like ceiling
    megabytes = sum(os.path.getsize(path) for path in files) / 1e6
    rows = []
    with multiprocessing.get_context(method).Pool(workers) as pool:
        pool.map(_read_only, files[: workers * 2])  # start every worker before timing
        ceilings: list[tuple[str, Callable[[str], int]]] = [
            ("read files only", _read_only),
            ("copy files (read + write)", functools.partial(_copy_into, str(scratch))),
            ("read + decode PNG", _read_decode),
            (f"read + decode + resize {CEILING_SIZE}", _read_decode_resize),
        ]
        for name, function in ceilings:
            started = time.perf_counter()
            pool.map(function, files, chunksize=4)
            wall = time.perf_counter() - started
            rows.append(Row(name, "ceiling", len(files), wall, len(files) / wall, megabytes, None))
    return rows


def measure_conversion(
    conversion: Conversion, source: Path, out: Path, workers: int, limit: int | None = None
) -> Row:
    manifest = convert(
        ConversionOptions(
            source=source,
            out=out,
            encoding=conversion.encoding,
            resize=conversion.resize,
            workers=workers,
            shard_count=2 * workers,
            limit=limit,
            overwrite=True,
        )
    )
    stats = manifest.stats
    return Row(
        conversion.name,
        "conversion",
        stats["images"],
        stats["wall_seconds"],
        stats["images_per_sec"],
        stats["bytes_in"] / 1e6,
        stats["bytes_out"] / 1e6,
    )


def machine_lines(workers: int) -> list[str]:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return [
        f"machine: {platform.node()}, {os.cpu_count()} CPUs ({model}), "
        f"{workers} worker process(es); load average now {load}"
    ]


def format_table(rows: list[Row]) -> str:
    from tabulate import tabulate

    decode = next((r.images_per_sec for r in rows if r.name == "read + decode PNG"), None)
    table = [
        [
            row.name,
            row.images,
            f"{row.wall_seconds:.2f}",
            f"{row.images_per_sec:.1f}",
            f"{row.megabytes_in:.1f}",
            "" if row.megabytes_out is None else f"{row.megabytes_out:.1f}",
            f"{row.images_per_sec / decode:.2f}x" if decode else "n/a",
        ]
        for row in rows
    ]
    headers = ["what", "images", "wall s", "images/s", "MB in", "MB out", "vs decode"]
    return tabulate(table, headers=headers, tablefmt="github")


def run(
    *,
    images: int,
    size: int,
    workers: int,
    source: Path | None,
    work: Path,
    limit: int | None = None,
    repeats: int = 1,
) -> list[list[Row]]:
    if source is None:
        source = work / f"synth-{images}x{size}"
        print(f"generating {images} synthetic {size}px images in {source} ...", file=sys.stderr)
        from converters.synth import generate

        generate(source, images=images, size=size, seed=0, workers=workers, progress=True)
    dataset = read_chestxray14(source)
    files = [
        str(record.path)
        for split in ("train", "val", "test")
        for record in dataset.split(split)[:limit]
    ]
    rounds: list[list[Row]] = []
    for round_index in range(repeats):
        # Ceilings and conversions alternate within each round, so that a change in the
        # machine's load hits both sides of a ratio alike.
        rows = measure_ceilings(files, workers, work / "copy")
        for conversion in CONVERSIONS:
            print(f"round {round_index + 1}/{repeats}: {conversion.name} ...", file=sys.stderr)
            rows.append(measure_conversion(conversion, source, work / "out", workers, limit))
        rounds.append(rows)
    return rounds


def median_rows(rounds: list[list[Row]]) -> list[Row]:
    """Per row, the round with the median wall time (raw rounds stay in the JSON)."""
    medians = []
    for position in range(len(rounds[0])):
        samples = sorted(
            (round_rows[position] for round_rows in rounds), key=lambda row: row.wall_seconds
        )
        medians.append(samples[(len(samples) - 1) // 2])
    return medians


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--images", type=int, default=200, help="synthetic images (default 200)")
    parser.add_argument("--size", type=int, default=1024, help="their size in px (default 1024)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"processes (default: all cores, here {default_workers()})",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="use this ChestX-ray14 folder instead of a synthetic one",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the synthetic set and outputs (default: a temporary one)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="at most N images per split (a real data set)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds; the table shows each row's median"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    if min(args.images, workers, args.limit or 1, args.repeats) < 1 or args.size < 8:
        print("error: --images, --workers, --limit, --repeats >= 1; --size >= 8", file=sys.stderr)
        return 2
    header = machine_lines(workers)
    with tempfile.TemporaryDirectory(prefix="chexbench-convbench-") as temporary:
        work = args.work or Path(temporary)
        rounds = run(
            images=args.images,
            size=args.size,
            workers=workers,
            source=args.source,
            work=work,
            limit=args.limit,
            repeats=args.repeats,
        )
    print("\n".join(header))
    if args.repeats > 1:
        print(f"median of {args.repeats} rounds (by wall time) per row:")
    print(format_table(median_rows(rounds)))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"load average at the end: {load}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": header, "rounds": [[asdict(r) for r in rows] for rows in rounds]},
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
