"""The pipeline benchmark's formats (bench.measure.pipeline_benchmark), their targets, and the
synthetic data set and conversions it measures them on (made once in --work-dir, reused)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from bench.input.pipelines import Source, raw_source, tfrecord_source

__all__ = ["BOUND_SLACK", "DECODING_TARGET", "FORMATS", "RAW_TARGET", "Format", "prepare"]


@dataclass(frozen=True)
class Format:
    """One row of the table: a source, and the conversion that makes it (None: raw files)."""

    key: str  # what --formats names it by
    name: str
    encoding: str | None = None
    resize: int | None = None

    @property
    def target(self) -> float:
        """The least tuned / bound to aim for: raw uint8 decodes nothing, so tf.data's own
        per-element cost dominates there."""
        return RAW_TARGET if self.encoding == "raw" else DECODING_TARGET


FORMATS = (
    Format("files", "raw PNG files"),
    Format("png-full", "TFRecord png (lossless, full size)", "png"),
    Format("png-256", "TFRecord png 256px", "png", 256),
    Format("jpeg-256", "TFRecord jpeg 256px", "jpeg", 256),
    Format("raw-256", "TFRecord raw uint8 256px", "raw", 256),
)
DECODING_TARGET = 0.85
RAW_TARGET = 0.5
BOUND_SLACK = 1.05  # tuned / bound above this: the bound is wrong


def prepare(args: argparse.Namespace) -> list[tuple[Format, Source]]:
    """The synthetic set (train split) and its conversions, made once and reused."""
    from converters.synth import generate
    from converters.tfrecord import ConversionOptions, convert

    root = args.work_dir / f"synth-{args.images}-{args.source_size}"
    print(f"synthetic data set in {root} ...", file=sys.stderr, flush=True)
    generate(root, images=args.images, size=args.source_size, seed=3, progress=True)
    sources = []
    for fmt in (fmt for fmt in FORMATS if fmt.key in args.formats):
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
