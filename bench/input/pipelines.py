"""The input pipelines the benchmark compares: raw files or TFRecords, naive or tuned.

    source stage (bench.input.sources) -> enumerate -> decode + resize to uint8, per image
      (order-preserving; bench.input.guard numbers each image first) -> ignore_errors -> batch
      -> guard check, per batch -> [resize, per batch] -> [cache] -> flip, per batch
      -> [prefetch]

The tuned pipeline decodes on the host where it can (bench.input.host_decode, `decoder`
"auto"): (file, record) pairs -> enumerate -> batch -> one call per batch (per chunk of
whole batches in processes: host_chunk) reads, decodes, resizes and flips with OpenCV and
libjpeg-turbo, in decode worker processes (`decode_processes`; bench.input.decode_pool)
-> guard check -> [rebatch] -> prefetch; tf.data's own
per-record stages and TensorFlow's resize cost more CPU than a small image's decoding.
With TensorFlow's ops (`decoder` "tensorflow", and always through a tf.data service), raw
uint8 records take a shorter road: enumerate -> batch -> parse and check the batch's
records at once (bench.input.decoders.batch_loader) -> guard check -> ...

Only the source stage knows whether it reads image files or shards, and the two
structures differ only in how the stages run:

- `naive`: one element at a time, nothing overlapped: shards read one after another,
  sequential maps, no prefetch, tf.data's autotuning and its automatic parallelisation
  and prefetch injection switched off.
- `tuned` (TF's official-models recipe and the poster's): shards sharded by worker before
  shuffling, parallel interleave, parallel maps, parallel batching, prefetch; every knob
  AUTOTUNE unless set.

Both yield (uint8 images [B, S, S, 1], float32 labels [B, 14]); the model's first layer
widens, normalises and casts on the device (bench.input.preprocess.to_model_input). Everything
after decoding that can be done per batch is: per-image tf.data stages cost more CPU than
decoding a small image.

Training pipelines shuffle (files, then a buffer of records), flip, drop the last partial
batch and repeat forever; evaluation pipelines read every example exactly once across
workers in a stable order, unflipped, keeping the last partial batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from bench.contract.config import PIPELINES
from bench.input import host_decode
from bench.input.decoders import batch_loader, loader
from bench.input.guard import BadDataGuard
from bench.input.host_sizing import cores, decode_processes, host_calls_in_flight, host_chunk
from bench.input.preprocess import flip_batch, resize, resize_batch
from bench.input.sources import (
    Element,
    ReadPlan,
    Source,
    encoded_elements,
    plain,
    raw_source,
    tfrecord_source,
)

__all__ = [
    "DECODERS",
    "PipelineOptions",
    "Source",
    "build_dataset",
    "decode_processes",
    "decoder_name",
    "host_chunk",
    "raw_source",
    "skipped_count",
    "tfrecord_source",
]

# auto: the host decoder where it can run (tuned, in this process, OpenCV installed,
# uncompressed), else TensorFlow's ops; host: that or an error saying why not.
DECODERS = ("auto", "tensorflow", "host")
# The dataset carries its own guard, so that its skip count is asked of the dataset itself.
GUARD_ATTRIBUTE = "chexbench_guard"


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """How to build a pipeline. None for a tuned knob means AUTOTUNE (or tf.data's default)."""

    kind: str  # "naive" | "tuned"
    image_size: int = 224
    batch_size: int = 64  # per worker
    training: bool = True
    parallel_calls: int | None = None  # decode/preprocess maps and batching (tuned)
    cycle_length: int | None = None  # shards read at once (tuned, tfrecord)
    shuffle_buffer: int = 1024  # records (tfrecord; raw files are shuffled whole)
    prefetch: int | None = None  # batches (tuned)
    cache: bool = False  # keep decoded, resized images in memory after the first pass
    private_threads: int | None = None  # tf.data's own thread pool size (tuned)
    seed: int = 0
    skip_bad: bool = False  # drop, count and name bad examples instead of failing
    decoder: str = "auto"  # one of DECODERS (tuned only; naive is TensorFlow per image)
    # Host decoder only: worker processes (0: the pipeline's own threads; None: for
    # images of one stored size the cores this process may use, shared by `local_ranks`
    # pipelines built at once on the host, else 0; see decode_processes).
    decode_processes: int | None = None
    local_ranks: int = 1
    # Host decoder in processes only: images per call (None: see host_chunk).
    decode_chunk: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in PIPELINES:
            raise ValueError(f"kind must be naive or tuned, got {self.kind!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.decoder == "host" and self.kind != "tuned":
            raise ValueError("decoder 'host' is for the tuned pipeline only")
        if self.decode_processes is not None and self.decode_processes < 0:
            raise ValueError(f"decode_processes must be 0 or more, got {self.decode_processes}")
        for name in ("image_size", "batch_size", "shuffle_buffer", "local_ranks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("parallel_calls", "cycle_length", "prefetch", "private_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None (AUTOTUNE), got {value}")
        if self.decode_chunk is not None and self.decode_chunk < 1:
            raise ValueError(f"decode_chunk must be at least 1 or None, got {self.decode_chunk}")


def build_dataset(
    source: Source,
    options: PipelineOptions,
    *,
    worker_index: int = 0,
    num_workers: int = 1,
    epoch: int = 0,
    service_workers: int = 0,
) -> tf.data.Dataset:
    """Batches of (images uint8 [B, S, S, 1], gray 0..255; labels float32 [B, 14]) for
    worker `worker_index` of `num_workers`.

    Training repeats forever; evaluation passes over the worker's share once. `epoch`
    offsets the shuffle and flip seeds, for callers that build one dataset per epoch.
    With `service_workers` > 0 the dataset is meant for a tf.data service of that many
    workers (bench.service.pool): each takes a disjoint part of this worker's share.
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
        service_workers=service_workers,
    )
    guard = BadDataGuard(source.files, skip_bad=options.skip_bad, batch_size=options.batch_size)
    parallel = (options.parallel_calls or tf.data.AUTOTUNE) if tuned else None
    batch_size = options.batch_size
    on_host = uses_host_decoder(source, options, service_workers=service_workers)
    # The host decoder flips as it writes, unless a cache must keep images unflipped.
    flipped_on_host = on_host and options.training and not options.cache

    # Images of one known stored size are resized per batch, after the check.
    batch_resize = not on_host and source.stored_size not in (None, options.image_size)
    decoded_size = source.stored_size if batch_resize else options.image_size
    finite = not repeat_at_source
    # An endless stream without skip_bad holds nothing to drop: a bad element fails it.
    drop_marked = options.skip_bad or finite
    # Order-preserving maps, so that the guard can see which elements failed to decode.
    batch_decode = batch_loader(source) if tuned and not options.skip_bad else None
    # Decode processes work on chunks of whole batches, cut into batches at the end.
    chunk = host_chunk(source, options) if on_host else batch_size
    if on_host:
        # Every element comes back, bad ones marked: no ignore_errors, no end batch.
        batches = host_decode.host_batches(
            source, plan, chunk, finite=finite, drop_remainder=not drop_marked
        )
        decoder = host_decode.HostDecoder(
            source,
            options.image_size,
            processes=decode_processes(source, options),
            batch_size=chunk,
        ).tf_decoder()
        flip_seed = seed if flipped_on_host else None
        decode = guard.marking_batch(decoder, flip_seed=flip_seed)
        # Calls into decode processes wait, holding a tf.data thread: enough of them in
        # flight to keep every worker's slots full (AUTOTUNE sizes for CPU-bound calls).
        in_flight = host_calls_in_flight(source, options) or parallel
        batches = batches.map(decode, **_parallel(in_flight, True))
    elif batch_decode is None:
        numbered = guard.numbered(encoded_elements(source, plan), finite=finite)
        decode = guard.decoding(_decoder(source, decoded_size), decoded_size)
        decoded = numbered.map(decode, **_parallel(parallel, True)).ignore_errors()
        batches = decoded.batch(
            batch_size, drop_remainder=not drop_marked, **_parallel(parallel, True)
        )
    else:
        # Nothing to decode per image (raw uint8 records): batch first, decode per batch.
        # Not under skip_bad: a record that is no tf.train.Example fails its whole batch,
        # which is named, but would be dropped with it.
        numbered = guard.numbered(encoded_elements(source, plan), finite=False)
        batches = numbered.batch(
            batch_size, drop_remainder=not drop_marked, **_parallel(parallel, True)
        )
        decode = guard.decoding_batch(batch_decode, decoded_size)
        batches = batches.map(decode, **_parallel(parallel, True)).ignore_errors()
        if finite:
            batches = batches.concatenate(guard.end_batch(decoded_size))
    flips_later = options.training and not flipped_on_host

    def model_input(batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        images = batch["image"]
        if flips_later:
            images = flip_batch(images, batch["seq"], seed)
        return images, batch["label"]

    # With nothing left to compute per batch, the guard's scan picks the model's inputs
    # itself: a map stage of its own cost its threads' hand-offs per batch.
    picked_in_check = not (flips_later or batch_resize or options.cache or options.skip_bad)
    checked = guard.check(
        batches,
        drop_marked=drop_marked,
        output=model_input if picked_in_check else None,
        marked=on_host,
    )
    if batch_resize:
        checked = checked.map(
            plain(
                lambda batch: {**batch, "image": resize_batch(batch["image"], options.image_size)}
            ),
            **_parallel(parallel, True),
        )
    if options.cache:
        images = checked.unbatch().map(plain(_image_and_label)).cache()
        if options.training:
            images = images.shuffle(options.shuffle_buffer, seed=seed + 2).repeat()
        # Running numbers after the cache: flips differ between epochs.
        checked = images.enumerate().map(plain(_numbered_pair))
        checked = checked.batch(batch_size, drop_remainder=options.training)
    elif options.skip_bad:
        # Dropped elements leave short batches: regroup into full ones (evaluation keeps
        # its last partial batch).
        checked = checked.unbatch().batch(batch_size, drop_remainder=options.training)
    elif chunk != batch_size:
        # The same elements in the same batches as batch-sized calls would give.
        checked = checked.rebatch(batch_size, drop_remainder=not drop_marked)

    if picked_in_check:
        batches = checked
    else:
        batches = checked.map(plain(model_input), **_parallel(parallel, True))
    if tuned:
        batches = batches.prefetch(options.prefetch or tf.data.AUTOTUNE)
    threads = host_calls_in_flight(source, options) if on_host else 0
    batches = batches.with_options(_tuned_options(options, threads) if tuned else _naive_options())
    setattr(batches, GUARD_ATTRIBUTE, guard)
    return batches


def uses_host_decoder(
    source: Source, options: PipelineOptions, *, service_workers: int = 0
) -> bool:
    """Whether build_dataset decodes on the host (bench.input.host_decode); raises
    ValueError where options.decoder is "host" and it cannot."""
    if options.kind != "tuned" or options.decoder == "tensorflow":
        return False
    why_not = None
    if not host_decode.available():
        why_not = "OpenCV (opencv-python-headless) is not installed"
    elif service_workers:
        why_not = "a tf.data service worker cannot run this process's Python decoder"
    elif source.format == "tfrecord" and source.compression != "none":
        why_not = f"{source.compression} shards cannot be read by record index"
    if why_not is not None and options.decoder == "host":
        raise ValueError(f"decoder 'host' cannot be used: {why_not}")
    return why_not is None


def decoder_name(source: Source, options: PipelineOptions, *, service_workers: int = 0) -> str:
    """Which decoder build_dataset uses for these arguments, for the result files."""
    if uses_host_decoder(source, options, service_workers=service_workers):
        return host_decode.implementation(decode_processes(source, options))
    if options.kind == "tuned" and not options.skip_bad and batch_loader(source) is not None:
        return f"TensorFlow {tf.__version__} per batch (raw uint8 records)"
    return f"TensorFlow {tf.__version__} per image"


def skipped_count(dataset: tf.data.Dataset) -> int | None:
    """Examples dropped as bad so far by a dataset from build_dataset with skip_bad=True.

    None when the dataset did not come from build_dataset or does not skip (it fails).
    """
    guard = getattr(dataset, GUARD_ATTRIBUTE, None)
    if guard is None or not guard.skip_bad:
        return None
    return guard.skipped_count()


def _decoder(source: Source, image_size: int) -> Callable[[Element], tuple[tf.Tensor, tf.Tensor]]:
    """Decode to uint8 [image_size, image_size, 1]: resized, or checked to be that size
    when the source states it (an image of another size then fails like a corrupt one)."""
    load = loader(source)

    def decode(element: Element) -> tuple[tf.Tensor, tf.Tensor]:
        image, label = load(element)
        if source.stored_size == image_size:
            return tf.ensure_shape(image, [image_size, image_size, 1]), label
        return resize(image, image_size), label

    return decode


def _parallel(calls: int | None, deterministic: bool) -> dict[str, object]:
    """Keyword arguments for a map or batch: sequential (naive) or parallel (tuned)."""
    if calls is None:
        return {}
    return {"num_parallel_calls": calls, "deterministic": deterministic}


def _numbered_pair(index: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> Element:
    image, label = pair
    return {"seq": index, "image": image, "label": label}


def _image_and_label(element: Element) -> tuple[tf.Tensor, tf.Tensor]:
    return element["image"], element["label"]


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


def _tuned_options(pipeline: PipelineOptions, waiting_calls: int = 0) -> tf.data.Options:
    """AUTOTUNE; with `waiting_calls` (host decoder calls that wait on decode processes)
    a private thread pool that many threads larger than the cores, since tf.data's
    shared pool has one thread per core and waiting calls would occupy them all."""
    options = tf.data.Options()
    options.autotune.enabled = True
    if pipeline.private_threads is not None:
        options.threading.private_threadpool_size = pipeline.private_threads
    elif waiting_calls:
        options.threading.private_threadpool_size = cores() + waiting_calls
    return options
