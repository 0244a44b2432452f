"""`python -m bench.pipeline_benchmark`: what each input format and pipeline can supply here.

For full-size PNG files (the NIH layout), a lossless TFRecord conversion of them, and
256-px TFRecords in png, jpeg and raw uint8, it measures the naive and the tuned training
pipeline with the pipeline-only probe, and the pipeline bound (bench.measure.bound: the
unavoidable per-image work, each stage timed single-threaded with the fastest
implementation here, scaled by the cores) on the same images, then prints one table with
the per-stage CPU cost per image and the targets (tuned / bound <= 1.05 everywhere, >= 0.85
for the decoding formats, >= 0.5 for raw uint8 records). Each probe lasts at least
--seconds; rounds interleave bound, the reader alone (bench.measure.sustained: the tuned
pipeline's own decoding on every core, no tf.data; tuned / it is what tf.data adds), the
core scaling (that reader on the bound's sample, every core against one: what the bound's
linear scaling assumes), naive and tuned. A column shows the tuned pipeline when it also
does the model's input step on the host (float32, 3 channels, normalised). A row whose
bound, timed afresh each round, varied by more than the report's noise threshold (the
coefficient of variation of repeats, bench.contract.noise) is flagged NOISY: the machine's
speed moved during the run. It asserts nothing; `--json FILE` writes every figure. The
synthetic data set and its conversions are kept in --work-dir and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bench.contract.noise import CV_REPEATS_NOISY, cv
from bench.input.pipelines import PipelineOptions, Source, build_dataset, decoder_name
from bench.input.preprocess import to_model_input
from bench.measure import benchmark_table as table
from bench.measure.bound import SAMPLE, StageTimes, bound_figures, cores, time_stages
from bench.measure.formats import BOUND_SLACK, DECODING_TARGET, FORMATS, RAW_TARGET, Format, prepare
from bench.measure.probe import MAX_WINDOW_FACTOR, MIN_STALLS, probe
from bench.measure.sustained import reader_alone


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m bench.pipeline_benchmark", description=__doc__.splitlines()[0]
    )
    result.add_argument("--work-dir", type=Path, default=Path("/tmp/chexbench-pipelines"))
    result.add_argument("--images", type=int, default=300, help="synthetic images in all")
    result.add_argument("--source-size", type=int, default=1024)
    result.add_argument("--image-size", type=int, default=224, help="the model input")
    result.add_argument(
        "--batch-size", type=int, default=64, help="per batch (64: the poster's per GPU)"
    )
    result.add_argument("--batches", type=int, default=20, help="measured batches, at least")
    result.add_argument(
        "--seconds", type=float, default=3.0, help="each measurement lasts at least this long"
    )
    result.add_argument("--warmup-batches", type=int, default=3)
    result.add_argument("--rounds", type=int, default=3, help="interleaved repeats; best shown")
    result.add_argument(
        "--cores",
        type=int,
        default=cores(),
        help="cores the bound scales to (default: those this process may use)",
    )
    result.add_argument(
        "--formats",
        nargs="+",
        choices=[fmt.key for fmt in FORMATS],
        default=[fmt.key for fmt in FORMATS],
        help="the formats to measure (default: all)",
    )
    result.add_argument("--json", type=Path, help="also write every figure to this file")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sources = prepare(args)
    rows, stage_rows, details = [], [], []
    load_before = os.getloadavg()
    for fmt, source in sources:
        print(f"measuring {fmt.name} ...", file=sys.stderr, flush=True)
        figures = measure(source, args)
        summary = summarise(fmt, source, figures, args)
        details.append({**summary, "dataset": source.description, "rounds": figures})
        rows.append(table.row(summary))
        stage_rows.append(table.stage_row(summary))
    load_after = os.getloadavg()
    print(machine_line(args))
    print(f"load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}")
    print(tabulate(rows, headers=table.HEADERS, tablefmt="github", floatfmt=".2f"))
    note = table.noise_note(details)
    if note:
        print(note)
    print()
    print(
        "CPU ms per image of each stage, fastest implementation; the stages' sum counts flip "
        "at half (half the images are mirrored) and leaves batch out; the bound takes it, or "
        "decode, resize and flip run one image at a time where that is cheaper:"
    )
    print(tabulate(stage_rows, headers=table.STAGE_HEADERS, tablefmt="github", floatfmt=".3f"))
    print()
    for summary in details:
        names = ", ".join(f"{k}: {v}" for k, v in summary["stage_implementation"].items())
        print(
            f"{summary['format']}: {names}; bound: {summary['bound_work']}; "
            f"tuned decoder: {summary['tuned_decoder']}"
        )
    if args.json:
        document = {
            "machine": machine_line(args),
            "load_average": {"before": load_before, "after": load_after},
            "targets": {
                "tuned_over_bound_max": BOUND_SLACK,
                "decoding_min": DECODING_TARGET,
                "raw_uint8_min": RAW_TARGET,
            },
            "rows": details,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


# tuned: the default decoder (on the host where it can, bench.input.host_decode, in decode
# processes); tuned-threads: the host decoder in the pipeline's own threads;
# tuned-tensorflow: TensorFlow's ops; +host: the model's normalisation run by tf.data too.
KINDS = ("naive", "tuned", "tuned-threads", "tuned-tensorflow", "tuned+host")


def measure(source: Source, args: argparse.Namespace) -> dict[str, Any]:
    """`rounds` rounds of bound stages, the reader alone on every core, naive, tuned,
    interleaved so that load from other work on the machine hits all alike; every round is
    kept.

    The bound's stage timing goes first: its warm-up also warms the page cache.
    """
    figures: dict[str, Any] = {"stage_times": StageTimes()}
    figures.update({key: [] for key in (ROUND_BOUNDS, READER, SCALING, *KINDS)})
    for round_index in range(args.rounds):
        # Each round's own timings are kept too: the host drifts between rounds.
        timed = time_stages(source, image_size=args.image_size)
        figures["stage_times"].merge(timed)
        bound = bound_figures(timed, core_count=args.cores)["bound_images_per_sec"]
        figures[ROUND_BOUNDS].append(bound)
        _progress(round_index, "bound this round", bound)
        alone = _reader_alone(source, args)
        figures[READER].append(alone)
        _progress(round_index, READER, alone["images_per_sec"])
        scaling = _core_scaling(source, args)
        figures[SCALING].append(scaling)
        _progress(round_index, "core scaling on the bound's sample", scaling["core_scaling"], "")
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


READER = "reader alone"
ROUND_BOUNDS = "bound_images_per_sec_rounds"
SCALING = "core scaling"


def _reader_alone(source: Source, args: argparse.Namespace) -> dict[str, Any]:
    """The host decoder's reader in one process per core; none without OpenCV."""
    from bench.input import host_decode

    if not host_decode.available():
        return {"images_per_sec": None, "why": "no host decoder here (OpenCV missing)"}
    return reader_alone(
        source,
        image_size=args.image_size,
        batch_size=args.batch_size,
        seconds=args.seconds,
        processes=args.cores,
        warmup_batches=args.warmup_batches,
    )


def _core_scaling(source: Source, args: argparse.Namespace) -> dict[str, Any]:
    """The reader on the bound's sample (in cache) in one process, then in one per core:
    every core's images/s over `cores` x one core's. The bound scales one core's cost by
    the cores, as if they scaled linearly; below 1 they do not here (shared caches and
    memory bandwidth, lower clocks with more cores busy, vCPUs that are SMT siblings on
    the host), and no pipeline can make up that part of its gap to the bound."""
    from bench.input import host_decode

    if not host_decode.available() or args.cores < 2:
        why = "no host decoder here (OpenCV missing)" if args.cores >= 2 else "one core"
        return {"core_scaling": None, "why": why}
    settings = {
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "seconds": args.seconds / 2,  # a tight loop over images in cache: steady sooner
        "warmup_batches": args.warmup_batches,
        "sample": SAMPLE,
    }
    one = reader_alone(source, processes=1, **settings)["images_per_sec"]
    every = reader_alone(source, processes=args.cores, **settings)["images_per_sec"]
    return {
        "one_core_images_per_sec": one,
        "every_core_images_per_sec": every,
        "core_scaling": _ratio(every, one * args.cores if one else None),
    }


def _dataset(source: Source, kind: str, args: argparse.Namespace) -> Any:
    import tensorflow as tf  # loaded by bench.input.pipelines already, after bench set it up

    dataset = build_dataset(source, _options(kind, args))
    if kind.endswith("+host"):  # the model's first layer, run by tf.data on the host
        dataset = dataset.map(
            lambda images, labels: (to_model_input(images, "float32"), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).prefetch(tf.data.AUTOTUNE)
    return dataset


def _options(kind: str, args: argparse.Namespace) -> PipelineOptions:
    structure = kind.split("+")[0]
    return PipelineOptions(
        kind="naive" if structure == "naive" else "tuned",
        image_size=args.image_size,
        batch_size=args.batch_size,
        training=True,
        decoder="tensorflow" if structure == "tuned-tensorflow" else "auto",
        decode_processes=0 if structure == "tuned-threads" else None,
    )


def _progress(round_index: int, what: str, value: float | None, unit: str = " images/s") -> None:
    figure = "n/a" if value is None else f"{value:.2f}{unit}"
    print(f"  round {round_index + 1}: {what}: {figure}", file=sys.stderr, flush=True)


def _best(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the highest rate: the least disturbed by other work on the machine."""
    return max(samples, key=lambda sample: sample["images_per_sec"] or 0.0)


def summarise(
    fmt: Format, source: Source, figures: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """One format's figures: each pipeline's best round (the least disturbed), the bound
    from the least disturbed stage timings, and their ratios."""
    bound = bound_figures(figures.pop("stage_times"), core_count=args.cores)
    round_bounds = figures.pop(ROUND_BOUNDS)
    bound_rate = bound["bound_images_per_sec"]
    naive = _best(figures["naive"])["images_per_sec"]
    tuned = _best(figures["tuned"])["images_per_sec"]
    alone = _best(figures[READER])
    scaling = [round_["core_scaling"] for round_ in figures[SCALING]]
    scaled = [ratio for ratio in scaling if ratio is not None]
    bound_cv = cv([rate for rate in round_bounds if rate])
    return {
        "format": fmt.name,
        "naive_images_per_sec": naive,
        "tuned_images_per_sec": tuned,
        "tuned_decoder": decoder_name(source, _options("tuned", args)),
        "tuned_threads_images_per_sec": _best(figures["tuned-threads"])["images_per_sec"],
        "tuned_tensorflow_images_per_sec": _best(figures["tuned-tensorflow"])["images_per_sec"],
        "tuned_host_normalised_images_per_sec": _best(figures["tuned+host"])["images_per_sec"],
        "tuned_first_batch_s": _best(figures["tuned"])["time_to_first_batch_s"],
        **bound,
        "tuned_over_bound": _ratio(tuned, bound_rate),
        # Load-independent: the bound's CPU per image over what the tuned pipeline spent
        # per image (this process's and its decode workers' CPU over the probe's window);
        # at most 1 for a bound.
        "tuned_cpu_s_per_image": _cpu_per_image(_best(figures["tuned"])),
        "bound_over_tuned_cpu": _ratio(
            bound["bound_cpu_s_per_image"], _cpu_per_image(_best(figures["tuned"]))
        ),
        "naive_over_bound": _ratio(naive, bound_rate),
        # Not a bound: the tuned pipeline's own reader with no tf.data, no training process
        # and no hand-off, on every core; tuned / it is what those cost.
        "reader_alone_images_per_sec": alone["images_per_sec"],
        "reader_alone_cpu_s_per_image": alone.get("cpu_s_per_image"),
        "tuned_over_reader_alone": _ratio(tuned, alone["images_per_sec"]),
        "reader_alone_over_bound": _ratio(alone["images_per_sec"], bound_rate),
        "tuned_over_bound_rounds": [
            _ratio(round_["images_per_sec"], bound_rate) for round_ in figures["tuned"]
        ],
        # Each round's bound from its own stage timings (the bound above takes the fastest
        # of every round's), and the tuned rate over it: how far the host drifted.
        ROUND_BOUNDS: round_bounds,
        # The bound is one workload timed the same way each round: when its rate moves
        # between rounds, the machine's speed moved, and every ratio to it with it.
        "bound_cv_rounds": bound_cv,
        "noisy": bound_cv is not None and bound_cv > CV_REPEATS_NOISY,
        "tuned_over_round_bound": [
            _ratio(round_["images_per_sec"], round_bound)
            for round_, round_bound in zip(figures["tuned"], round_bounds, strict=True)
        ],
        # The reader on the bound's sample, every core against one core x cores, per round:
        # how far this machine's cores fall short of the linear scaling the bound assumes.
        "core_scaling_rounds": scaling,
        "core_scaling": statistics.median(scaled) if scaled else None,
        "target_tuned_over_bound": fmt.target,
    }


def _cpu_per_image(probed: dict[str, Any]) -> float | None:
    """CPU seconds the pipeline's processes (this one, its decode workers) spent per image
    in a probe's measured window."""
    cpu_pct, rate = probed.get("process_cpu_pct"), probed.get("images_per_sec")
    return (cpu_pct / 100.0) / rate if cpu_pct and rate else None


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in load)


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value and reference else None


def machine_line(args: argparse.Namespace) -> str:
    import tensorflow as tf

    return (
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"TensorFlow {tf.__version__}; {args.images} synthetic {args.source_size}px images "
        f"(train split), model input {args.image_size}px, batch {args.batch_size}, "
        f"at least {args.batches} batches and {args.seconds:g} s (then on to {MIN_STALLS} "
        f"stalls, up to {MAX_WINDOW_FACTOR * args.seconds:g} s) after {args.warmup_batches} "
        f"warm-up batches, best of {args.rounds} interleaved rounds; bound: fastest "
        f"single-threaded stage costs x {args.cores} cores"
    )


if __name__ == "__main__":
    raise SystemExit(main())
