"""The rank's input: checks that need no TensorFlow, the source, the rank's dataset.

`check_inputs` rejects what cannot work before anything heavy starts (exit 2 with the
reason); `make_source` and `rank_dataset` build this rank's share through bench/input/.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.contract.config import RunConfig

# Data-reading modes: the split to read and whether it needs a "val" split too.
DATA_MODES = ("pipeline", "train", "fit")


class InputError(ValueError):
    """Bad configuration or input data: exit 2, the message says what and where."""


def check_inputs(config: RunConfig, *, ranks: int) -> dict[str, Any] | None:
    """Reject what cannot work before anything heavy starts; returns the manifest summary."""
    if "global_batch" in config.extra:
        wanted = config.extra["global_batch"]
        if not wanted.isdigit() or int(wanted) % ranks:
            raise InputError(f"global batch {wanted} does not divide over {ranks} rank(s)")
        if int(wanted) // ranks != config.batch_per_gpu:
            raise InputError(
                f"global batch {wanted} over {ranks} rank(s) is "
                f"{int(wanted) // ranks} per GPU, but --batch-per-gpu is "
                f"{config.batch_per_gpu}"
            )
    if config.mode not in DATA_MODES:
        return None
    if config.data_format == "raw":
        _check_raw(config)
        return None
    return _check_records(config)


def _splits_needed(config: RunConfig) -> tuple[str, ...]:
    return ("train", "val") if config.mode == "fit" else (config.split,)


def _check_raw(config: RunConfig) -> None:
    if config.data_dir is None:
        raise InputError(f"--data-dir is required for --data-format raw in mode {config.mode}")
    if not Path(config.data_dir).is_dir():
        raise InputError(f"--data-dir {config.data_dir}: no such folder")


def _check_records(config: RunConfig) -> dict[str, Any]:
    from converters.features import ENCODINGS, FORMAT_VERSION
    from converters.manifest import ManifestError, load_manifest

    if config.records_dir is None:
        raise InputError(
            f"--records-dir is required for --data-format tfrecord in mode " f"{config.mode}"
        )
    if not Path(config.records_dir).is_dir():
        raise InputError(f"--records-dir {config.records_dir}: no such folder")
    try:
        manifest = load_manifest(Path(config.records_dir))
    except ManifestError as error:
        raise InputError(str(error)) from error
    where = f"{Path(config.records_dir) / 'manifest.json'}"
    if manifest.format_version != FORMAT_VERSION:
        raise InputError(
            f"{where}: format_version {manifest.format_version}, this harness "
            f"reads {FORMAT_VERSION}; convert again"
        )
    if manifest.encoding not in ENCODINGS:
        raise InputError(f"{where}: encoding {manifest.encoding!r} is not one of {ENCODINGS}")
    expected = config.extra.get("encoding")
    if expected is not None and expected != manifest.encoding:
        raise InputError(
            f"{where}: encoding {manifest.encoding!r}, but the cell expects " f"{expected!r}"
        )
    if manifest.image_size is not None and manifest.image_size < config.image_size:
        raise InputError(
            f"{where}: images stored at {manifest.image_size} px, smaller than "
            f"--image-size {config.image_size}: the pipeline would upscale them"
        )
    for split in _splits_needed(config):
        if split not in manifest.splits:
            raise InputError(f"{where}: no split {split!r} (has: {', '.join(manifest.splits)})")
        if manifest.record_count(split) == 0:
            raise InputError(f"{where}: split {split!r} has no records")
    return {"encoding": manifest.encoding, "image_size": manifest.image_size}


def pipeline_options(config: RunConfig, *, training: bool, local_ranks: int = 1) -> Any:
    from bench.input.pipelines import PipelineOptions

    return PipelineOptions(
        kind=config.pipeline,
        image_size=config.image_size,
        batch_size=config.batch_per_gpu,
        training=training,
        parallel_calls=config.parallel_calls,
        cycle_length=config.cycle_length,
        shuffle_buffer=config.shuffle_buffer,
        prefetch=config.prefetch,
        cache=config.cache,
        private_threads=config.private_threads,
        decode_processes=config.decode_processes,
        local_ranks=local_ranks,
        seed=config.seed,
        skip_bad=config.skip_bad,
    )


# The input-service pool this process's job reads through (bench.job.main sets it for
# the duration of the job with `reading_through`); None: the pipeline runs in-process.
_SERVICE: list[Any] = []


@contextlib.contextmanager
def reading_through(service: Any) -> Iterator[None]:
    """Make `rank_dataset` read through `service` (a bench.job.service.JobService,
    or None for in-process) while inside."""
    _SERVICE.append(service)
    try:
        yield
    finally:
        _SERVICE.pop()


def rank_dataset(
    config: RunConfig, engine: Any, source: Any, *, training: bool, epoch: int = 0
) -> Any:
    """This rank's share of `source` through the configured pipeline: built here, or on
    the input-service workers (each a disjoint part of the share) and read from them."""
    from bench.input.pipelines import build_dataset

    service = _SERVICE[-1] if _SERVICE else None
    dataset = build_dataset(
        source,
        pipeline_options(config, training=training, local_ranks=engine.local_size),
        worker_index=engine.rank,
        num_workers=engine.size,
        epoch=epoch,
        service_workers=service.workers if service is not None else 0,
    )
    if service is None:
        return dataset
    return service.read(dataset, rank=engine.rank, part="train" if training else f"val-{epoch}")


def dataset_description(config: RunConfig, source: Any, *, local_ranks: int = 1) -> dict[str, Any]:
    """The source's description for result["dataset"], with the decoder the rank's
    pipeline uses (`decoder`: the host decoder's libraries, or TensorFlow's ops)."""
    from bench.input.pipelines import decoder_name

    service = _SERVICE[-1] if _SERVICE else None
    decoder = decoder_name(
        source,
        pipeline_options(config, training=True, local_ranks=local_ranks),
        service_workers=service.workers if service is not None else 0,
    )
    return {**source.description, "decoder": decoder}


def make_source(config: RunConfig, split: str) -> Any:
    from bench.input.pipelines import raw_source, tfrecord_source

    try:
        if config.data_format == "raw":
            return raw_source(
                Path(config.data_dir), split, val_fraction=config.val_fraction, seed=config.seed
            )
        return tfrecord_source(Path(config.records_dir), split)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise InputError(str(error)) from error


def check_enough(source: Any, global_batch: int) -> None:
    if source.num_examples < global_batch:
        raise InputError(
            f"split {source.split!r} holds {source.num_examples} images, fewer than one "
            f"global batch ({global_batch}); lower --batch-per-gpu or use more data"
        )


def first_batch_iterator(dataset: Any) -> tuple[Iterator[tuple[Any, Any]], float]:
    """The dataset's iterator with its first batch already read, and how long that took."""
    began = time.perf_counter()
    iterator = iter(dataset)
    first = next(iterator)
    elapsed = time.perf_counter() - began

    def chained() -> Iterator[tuple[Any, Any]]:
        yield first
        yield from iterator

    return chained(), elapsed
