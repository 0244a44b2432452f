"""`python -m bench.pipeline_benchmark`: what each input format and pipeline can supply here.

For full-size PNG files (the NIH layout), a lossless TFRecord conversion of them, and
256-px TFRecords in png, jpeg and raw uint8, it measures the naive and the tuned training
pipeline with the pipeline-only probe, and the bare-decoder ceiling (PIL, one process per
core) on the same images, then prints one table. Each figure is measured for at least
--seconds. A last column shows the tuned pipeline when it also does the model's input
step on the host (float32, 3 channels, normalised): what the harness saves by leaving that
to the device. All ratios come from one run; it asserts nothing. The synthetic data set
and its conversions are kept in --work-dir and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.input.pipelines import (
    PipelineOptions,
    Source,
    build_dataset,
    raw_source,
    tfrecord_source,
)
from bench.input.preprocess import to_model_input
from bench.measure.probe import decoder_ceiling, probe


@dataclass(frozen=True)
class Format:
    """One row of the table: a source, and the conversion that makes it (None: raw files)."""

    name: str
    encoding: str | None = None
    resize: int | None = None


FORMATS = (
    Format("raw PNG files"),
    Format("TFRecord png (lossless, full size)", "png"),
    Format("TFRecord png 256px", "png", 256),
    Format("TFRecord jpeg 256px", "jpeg", 256),
    Format("TFRecord raw uint8 256px", "raw", 256),
)


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m bench.pipeline_benchmark", description=__doc__.splitlines()[0]
    )
    result.add_argument("--work-dir", type=Path, default=Path("/tmp/chexbench-pipelines"))
    result.add_argument("--images", type=int, default=300, help="synthetic images in all")
    result.add_argument("--source-size", type=int, default=1024)
    result.add_argument("--image-size", type=int, default=224, help="the model input")
    result.add_argument("--batch-size", type=int, default=32)
    result.add_argument("--batches", type=int, default=20, help="measured batches, at least")
    result.add_argument(
        "--seconds", type=float, default=3.0, help="each measurement lasts at least this long"
    )
    result.add_argument("--warmup-batches", type=int, default=3)
    result.add_argument("--rounds", type=int, default=3, help="interleaved repeats; best shown")
    result.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="bare-decoder processes (default: one per core)",
    )
    result.add_argument("--json", type=Path, help="also write every figure to this file")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sources = prepare(args)
    rows, details = [], []
    for fmt, source in sources:
        print(f"measuring {fmt.name} ...", file=sys.stderr, flush=True)
        figures = measure(source, args)
        details.append({"format": fmt.name, "dataset": source.description, **figures})
        rows.append(_row(fmt, figures))
    print(machine_line(args))
    print(tabulate(rows, headers=HEADERS, tablefmt="github", floatfmt=".2f"))
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine_line(args), "rows": details}, indent=2) + "\n"
        )
    return 0


HEADERS = [
    "format",
    "naive img/s",
    "tuned img/s",
    "ceiling img/s",
    "tuned / ceiling",
    "(rounds)",
    "naive / ceiling",
    "tuned first batch s",
    "tuned, normalised on host img/s",
]
KINDS = ("naive", "tuned", "tuned+host")


def prepare(args: argparse.Namespace) -> list[tuple[Format, Source]]:
    """The synthetic set (train split) and its conversions, made once and reused."""
    from converters.synth import generate
    from converters.tfrecord import ConversionOptions, convert

    root = args.work_dir / f"synth-{args.images}-{args.source_size}"
    print(f"synthetic data set in {root} ...", file=sys.stderr, flush=True)
    generate(root, images=args.images, size=args.source_size, seed=3, progress=True)
    sources = []
    for fmt in FORMATS:
        if fmt.encoding is None:
            sources.append((fmt, raw_source(root, "train")))
            continue
        out = args.work_dir / f"records-{fmt.encoding}-{fmt.resize or 'full'}"
        if not (out / "manifest.json").is_file():
            print(f"converting to {out} ...", file=sys.stderr, flush=True)
            convert(
                ConversionOptions(
                    source=root,
                    out=out,
                    splits=("train",),
                    encoding=fmt.encoding,
                    resize=fmt.resize,
                    shard_count=4,
                    progress=True,
                )
            )
        sources.append((fmt, tfrecord_source(out, "train")))
    return sources


def measure(source: Source, args: argparse.Namespace) -> dict[str, Any]:
    """`rounds` rounds of ceiling, naive, tuned, interleaved so that load from other work on
    the machine hits all three alike; every round is kept, the table shows the best.

    The ceiling goes first: its warm-up pass also warms the page cache for the pipelines.
    """
    figures: dict[str, Any] = {"ceiling": [], **{kind: [] for kind in KINDS}}
    for round_index in range(args.rounds):
        figures["ceiling"].append(
            decoder_ceiling(
                source,
                processes=args.processes,
                image_size=args.image_size,
                seconds=args.seconds,
            )
        )
        _progress(round_index, "ceiling", figures["ceiling"][-1]["images_per_sec"])
        for kind in KINDS:
            result = probe(
                _dataset(source, kind, args),
                batch_size=args.batch_size,
                batches=args.batches,
                warmup_batches=args.warmup_batches,
                min_seconds=args.seconds,
            )
            figures[kind].append(result.to_dict())
            _progress(round_index, kind, result.images_per_sec)
    return figures


def _dataset(source: Source, kind: str, args: argparse.Namespace) -> Any:
    import tensorflow as tf  # loaded by bench.input.pipelines already, after bench set it up

    options = PipelineOptions(
        kind=kind.split("+")[0],
        image_size=args.image_size,
        batch_size=args.batch_size,
        training=True,
    )
    dataset = build_dataset(source, options)
    if kind.endswith("+host"):  # the model's first layer, run by tf.data on the host
        dataset = dataset.map(
            lambda images, labels: (to_model_input(images, "float32"), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).prefetch(tf.data.AUTOTUNE)
    return dataset


def _progress(round_index: int, what: str, images_per_sec: float | None) -> None:
    rate = "no rate" if images_per_sec is None else f"{images_per_sec:.1f} images/s"
    print(f"  round {round_index + 1}: {what}: {rate}", file=sys.stderr, flush=True)


def _best(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the highest rate: the least disturbed by other work on the machine."""
    return max(samples, key=lambda sample: sample["images_per_sec"] or 0.0)


def _row(fmt: Format, figures: dict[str, Any]) -> list[Any]:
    """Rates: each kind's best round. Ratios: the median over rounds of the ratio within
    a round (measured back to back, so a slow spell on the machine hits both sides)."""
    tuned_ratios = _round_ratios(figures["tuned"], figures["ceiling"])
    return [
        fmt.name,
        _best(figures["naive"])["images_per_sec"],
        _best(figures["tuned"])["images_per_sec"],
        _best(figures["ceiling"])["images_per_sec"],
        statistics.median(tuned_ratios) if tuned_ratios else None,
        " ".join(f"{ratio:.2f}" for ratio in tuned_ratios),
        _median_ratio(figures["naive"], figures["ceiling"]),
        _best(figures["tuned"])["time_to_first_batch_s"],
        _best(figures["tuned+host"])["images_per_sec"],
    ]


def _round_ratios(values: list[dict[str, Any]], references: list[dict[str, Any]]) -> list[float]:
    pairs = zip(values, references, strict=True)
    ratios = [_ratio(value["images_per_sec"], ref["images_per_sec"]) for value, ref in pairs]
    return [ratio for ratio in ratios if ratio is not None]


def _median_ratio(values: list[dict[str, Any]], references: list[dict[str, Any]]) -> float | None:
    ratios = _round_ratios(values, references)
    return statistics.median(ratios) if ratios else None


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value and reference else None


def machine_line(args: argparse.Namespace) -> str:
    import tensorflow as tf

    return (
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"TensorFlow {tf.__version__}; {args.images} synthetic {args.source_size}px images "
        f"(train split), model input {args.image_size}px, batch {args.batch_size}, "
        f"at least {args.batches} batches and {args.seconds:g} s after {args.warmup_batches} "
        f"warm-up batches, best of {args.rounds} interleaved rounds; ceiling: "
        f"{args.processes} PIL processes for {args.seconds:g} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
