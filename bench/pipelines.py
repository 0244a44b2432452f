"""The input pipelines the benchmark compares: raw files or TFRecords, naive or tuned.

    source stage (bench.sources)  ->  guard.register  ->  decode + resize (order-preserving)
      -> ignore_errors + guard.check (bench.guard)  ->  [cache]  ->  flip, normalise, cast
      -> batch  ->  [prefetch]

Only the source stage knows whether it reads image files or shards, and the two
structures differ only in how the stages run:

- `naive`: one element at a time, nothing overlapped: shards read one after another,
  sequential maps, no prefetch, tf.data's autotuning and its automatic parallelisation
  and prefetch injection switched off.
- `tuned` (TF's official-models recipe and the poster's): shards sharded by worker before
  shuffling, parallel interleave, parallel maps, parallel batching, prefetch; every knob
  AUTOTUNE unless set.

Training pipelines shuffle (files, then a buffer of records), flip, drop the last partial
batch and repeat forever; evaluation pipelines read every example exactly once across
workers in a stable order, unflipped, keeping the last partial batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from bench.guard import BadDataGuard
from bench.preprocess import DTYPES, finish, resize
from bench.sources import (
    PROBLEM_NONE,
    Element,
    ReadPlan,
    Source,
    encoded_elements,
    loader,
    plain,
    raw_source,
    tfrecord_source,
)

__all__ = [
    "KINDS",
    "PipelineOptions",
    "Source",
    "build_dataset",
    "raw_source",
    "skipped_count",
    "tfrecord_source",
]

KINDS = ("naive", "tuned")
_GUARDS: weakref.WeakKeyDictionary[tf.data.Dataset, BadDataGuard] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """How to build a pipeline. None for a tuned knob means AUTOTUNE (or tf.data's default)."""

    kind: str  # "naive" | "tuned"
    image_size: int = 224
    batch_size: int = 64  # per worker
    training: bool = True
    dtype: str = "float32"  # "float32" | "float16" | "bfloat16"
    parallel_calls: int | None = None  # decode/preprocess maps and batching (tuned)
    cycle_length: int | None = None  # shards read at once (tuned, tfrecord)
    shuffle_buffer: int = 1024  # records (tfrecord; raw files are shuffled whole)
    prefetch: int | None = None  # batches (tuned)
    cache: bool = False  # keep decoded, resized images in memory after the first pass
    private_threads: int | None = None  # tf.data's own thread pool size (tuned)
    seed: int = 0
    skip_bad: bool = False  # drop, count and name bad examples instead of failing

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be naive or tuned, got {self.kind!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("image_size", "batch_size", "shuffle_buffer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("parallel_calls", "cycle_length", "prefetch", "private_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None (AUTOTUNE), got {value}")


def build_dataset(
    source: Source,
    options: PipelineOptions,
    *,
    worker_index: int = 0,
    num_workers: int = 1,
    epoch: int = 0,
) -> tf.data.Dataset:
    """Batches of (images [B, S, S, 3] in options.dtype, ImageNet-normalised; labels
    float32 [B, 14]) for worker `worker_index` of `num_workers`.

    Training repeats forever; evaluation passes over the worker's share once. `epoch`
    offsets the shuffle and flip seeds, for callers that build one dataset per epoch.
    """
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index {worker_index} is not in 0..{num_workers - 1}")
    tuned = options.kind == "tuned"
    seed = options.seed * 1_000_003 + epoch * 7919
    repeat_at_source = options.training and not options.cache
    plan = ReadPlan(
        training=options.training,
        parallel=tuned,
        worker_index=worker_index,
        num_workers=num_workers,
        repeat=repeat_at_source,
        shuffle_seed=seed,
        cycle_length=options.cycle_length,
        shuffle_buffer=options.shuffle_buffer,
    )
    guard = BadDataGuard(source.files, skip_bad=options.skip_bad)
    parallel = (options.parallel_calls or tf.data.AUTOTUNE) if tuned else None

    elements = guard.register(encoded_elements(source, plan), finite=not repeat_at_source)
    # Order-preserving, so that the guard can see which elements failed to decode.
    decoded = elements.map(plain(_decoder(source, options.image_size)), **_parallel(parallel, True))
    decoded = decoded.ignore_errors()
    images = guard.check(decoded)
    if options.cache:
        images = images.map(plain(_image_and_label)).cache()
        if options.training:
            images = images.shuffle(options.shuffle_buffer, seed=seed + 2).repeat()

    def model_input(*item: Any) -> tuple[tf.Tensor, tf.Tensor]:
        # Training items are (running index, element): the index seeds the flip, so that a
        # flip differs between epochs (also after a cache) and never depends on threads.
        # An element is a checked dict, or an (image, label) pair from the cache, which
        # tf.data passes as two arguments when it is the whole item.
        index, rest = (item[0], item[1:]) if options.training else (None, item)
        image, label = _image_and_label(rest[0] if len(rest) == 1 else rest)
        flip_seed = None if index is None else tf.stack([tf.constant(seed, tf.int64), index])
        image = finish(image, training=options.training, dtype=options.dtype, flip_seed=flip_seed)
        return image, label

    in_order = not options.training
    if options.training:
        images = images.enumerate()
    batches = images.map(plain(model_input), **_parallel(parallel, in_order))
    batches = batches.batch(
        options.batch_size, drop_remainder=options.training, **_parallel(parallel, in_order)
    )
    if tuned:
        batches = batches.prefetch(options.prefetch or tf.data.AUTOTUNE)
    batches = batches.with_options(_tuned_options(options) if tuned else _naive_options())
    _GUARDS[batches] = guard
    return batches


def skipped_count(dataset: tf.data.Dataset) -> int | None:
    """Examples dropped as bad so far by a dataset from build_dataset with skip_bad=True.

    None when the dataset did not come from build_dataset or does not skip (it fails).
    """
    guard = _GUARDS.get(dataset)
    if guard is None or not guard.skip_bad:
        return None
    return guard.skipped_count()


def _decoder(source: Source, image_size: int) -> Callable[[Element], Element]:
    load = loader(source)

    def decode(element: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        def real() -> tuple[tf.Tensor, tf.Tensor]:
            image, label = load(element)
            return resize(image, image_size), label

        def placeholder() -> tuple[tf.Tensor, tf.Tensor]:
            return tf.zeros([image_size, image_size, 1]), tf.zeros_like(element["label"])

        skip = tf.logical_or(element["end"], element["problem"] != PROBLEM_NONE)
        image, label = tf.cond(skip, placeholder, real)
        kept = {name: element[name] for name in ("seq", "problem", "end")}
        return {**kept, "image": image, "label": label}

    return decode


def _parallel(calls: int | None, deterministic: bool) -> dict[str, object]:
    """Keyword arguments for a map or batch: sequential (naive) or parallel (tuned)."""
    if calls is None:
        return {}
    return {"num_parallel_calls": calls, "deterministic": deterministic}


def _parallel(calls: int | None, deterministic: bool) -> dict[str, object]:
    """Keyword arguments for a map or batch: sequential (naive) or parallel (tuned)."""
    if calls is None:
        return {}
    return {"num_parallel_calls": calls, "deterministic": deterministic}


def _image_and_label(element: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """The (image, label) of a checked element (a dict), or of a cached pair."""
    if isinstance(element, dict):
        return element["image"], element["label"]
    return element


def _naive_options() -> tf.data.Options:
    """Everything sequential: no autotuning, no automatic parallelism or prefetch."""
    options = tf.data.Options()
    options.autotune.enabled = False
    options.deterministic = True
    options.threading.max_intra_op_parallelism = 1
    optimization = options.experimental_optimization
    optimization.map_parallelization = False
    optimization.inject_prefetch = False
    optimization.parallel_batch = False
    optimization.map_and_batch_fusion = False
    return options


def _tuned_options(pipeline: PipelineOptions) -> tf.data.Options:
    options = tf.data.Options()
    options.autotune.enabled = True
    if pipeline.private_threads is not None:
        options.threading.private_threadpool_size = pipeline.private_threads
    return options
