"""The tuned pipeline's host decoder: a whole batch read, decoded, resized and flipped in one
call, with OpenCV and libjpeg-turbo (simplejpeg), outside TensorFlow's per-record stages.

Why: timed stage by stage (bench.measure.bound, docs/pipelines.md), tf.data's own cost per
record (reading a record through TFRecordDataset, zipping, shuffling, interleaving: ~40 us
of CPU) and TensorFlow's resize (~50 us for 256 -> 224 px) are each larger than everything
a 256 px raw uint8 image needs (~40 us), and TensorFlow decodes JPEG slower than
libjpeg-turbo straight to one channel. So where it can, the tuned pipeline streams only
(file index, record index) pairs through tf.data, and one `tf.numpy_function` per batch
does the rest on the host (bench.input.host_batch), with the fastest implementation of
each stage. It runs in decode worker processes (bench.input.decode_pool; PipelineOptions.
decode_processes), as PyTorch's DataLoader and DALI do: in the pipeline's own threads the
per-record Python (read, CRC, protobuf parse) holds the GIL, and two threads decoded raw
uint8 records only 1.25x faster than one.

    host_batches(source, plan,   numbered batches of {source_id, record}: sharded, shuffled
                 batch_size)     whole (a true shuffle per epoch: records are read by index)
    HostDecoder(source, size,    (source ids, records, flips) -> (uint8 [B, S, S, 1],
                processes=N)     float32 labels [B, 14], int32 problem codes [B])

A bad example never fails the call: it comes back zeroed with its problem code
(unreadable: missing, truncated or with a bad CRC; undecodable: not an Example, not an
image, not the source's format), and the bad-data guard names it (bench.input.guard).

Not used through a tf.data service (a Python function cannot run on a remote worker), for
gzip shards (no random access), by the naive pipeline (TensorFlow's per-image reference),
or where OpenCV is missing; `decoder_name` says which decoder a pipeline uses.
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any

import numpy as np
import tensorflow as tf

from bench.input import decode_pool, host_batch
from bench.input.host_batch import BatchReader, BatchSource
from bench.input.sources import Element, ReadPlan, Source, uses_file_sharding
from converters.labels import NUM_LABELS

__all__ = ["HostDecoder", "available", "batch_source", "host_batches", "implementation"]


def available() -> bool:
    """Whether the host decoder can run here (OpenCV installed)."""
    return host_batch.available()


def implementation(processes: int = 0) -> str:
    """The libraries the host decoder uses, with versions, and where it runs."""
    where = f"in {processes} decode processes" if processes else "in the pipeline's threads"
    return f"host per batch {where}: {host_batch.implementation()}"


def host_batches(
    source: Source, plan: ReadPlan, batch_size: int, *, finite: bool, drop_remainder: bool
) -> tf.data.Dataset:
    """(seq [n], {source_id [n], record [n]}) batches of this worker's examples (whole
    shards or every n-th element, as bench.input.sources shards them), numbered from 0 as
    bench.input.guard numbers elements: evaluation in a stable order, training shuffled
    whole each epoch (records are read by index: no shard order or shuffle buffer limits
    the mixing), repeated unless `finite`; a finite stream ends with the guard's sentinel
    (source_id -1). Never served by a tf.data service (see above).

    Built per epoch, numbered there and cut into batches (`rebatch`), with no per-example
    dataset stage and no stage of its own for the numbers: slicing, shuffling, numbering
    and batching example by example cost 3.5 us of CPU per image, this 1.9, each timed
    alone with its consumer (docs/pipelines.md); a numbering map after the batching cost
    another stage's thread hand-offs per batch.
    """
    source_ids, records = _worker_examples(source, plan)
    count = len(source_ids)
    sentinel = tf.constant([-1], tf.int64), tf.constant([0], tf.int64)
    all_ids, all_records = tf.constant(source_ids), tf.constant(records)
    shuffle_seed = tf.constant(plan.shuffle_seed, tf.int64)

    def epoch(index: tf.Tensor) -> tuple[tf.Tensor, Element]:
        ids, numbers = all_ids, all_records
        if plan.training:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count, dtype=tf.int64), seed=tf.stack([shuffle_seed, index])
            )
            ids, numbers = tf.gather(ids, order), tf.gather(numbers, order)
        if finite:
            ids, numbers = tf.concat([ids, sentinel[0]], 0), tf.concat([numbers, sentinel[1]], 0)
        # Every epoch but a finite stream's only one holds `count` elements: epoch e holds
        # numbers e * count onwards, one after another across epochs as rebatch joins them.
        seq = index * count + tf.range(tf.size(ids, out_type=tf.int64))
        return seq, {"source_id": ids, "record": numbers}

    # An endless stream of empty epochs would never yield: a worker without examples has one.
    epochs = 1 if finite or not plan.repeat or count == 0 else None
    indices = tf.data.Dataset.range(epochs) if epochs else tf.data.Dataset.range(2**62)
    return indices.map(epoch).rebatch(batch_size, drop_remainder=drop_remainder)


def examples(source: Source) -> tuple[np.ndarray, np.ndarray]:
    """(source ids, records) of every example of `source`, in stored order (record -1: a
    raw file)."""
    if source.format == "raw":
        count = len(source.files)
        return np.arange(count, dtype=np.int64), np.full(count, -1, np.int64)
    source_ids = np.repeat(np.arange(len(source.files)), source.record_counts).astype(np.int64)
    records = np.concatenate([np.arange(count) for count in source.record_counts])
    return source_ids, records.astype(np.int64)


def _worker_examples(source: Source, plan: ReadPlan) -> tuple[np.ndarray, np.ndarray]:
    """(source ids, records) of this worker's examples, in stored order."""
    source_ids, records = examples(source)
    if source.format == "tfrecord" and uses_file_sharding(source, plan):
        # Whole shards per worker, as TensorFlow's road reads them (a node may hold its own).
        mine = source_ids % plan.num_workers == plan.worker_index
    else:
        mine = np.arange(len(source_ids)) % plan.num_workers == plan.worker_index
    return source_ids[mine], records[mine]


def batch_source(source: Source, image_size: int) -> BatchSource:
    """What the host decoder's reader needs of `source`, written at `image_size`."""
    return BatchSource(
        format=source.format,
        files=source.files,
        image_size=image_size,
        labels=source.labels,
        record_counts=source.record_counts,
        encoding=source.encoding,
        compression=source.compression,
    )


class _CallGate:
    """Counts host decoder calls in flight, and refuses new ones once the process exits.

    Why: tf.data runs the calls in its own threads. An iterator still alive when the
    interpreter finalises is destroyed holding the GIL and waits for the calls in flight,
    which need the GIL to return: the process hung at exit (any script that kept an
    iterator in a global). At exit, while Python still runs, `drain` fails every new call
    at once, ends the decode workers (calls waiting on them fail) and waits until no call
    has been in flight for a moment, so that the pipeline's buffers fill and it goes quiet
    before finalisation.
    """

    QUIET_S = 0.2
    LIMIT_S = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_end = 0.0
        self._closed = False

    def enter(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the host decoder is closed: the process is exiting")
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._last_end = time.monotonic()

    def drain(self) -> None:
        with self._lock:
            self._closed = True
        decode_pool.close_all()
        deadline = time.monotonic() + self.LIMIT_S
        while time.monotonic() < deadline:
            with self._lock:
                quiet = self._in_flight == 0 and time.monotonic() - self._last_end > self.QUIET_S
            if quiet:
                return
            time.sleep(0.01)  # releases the GIL: the calls in flight can return


_GATE = _CallGate()
atexit.register(_GATE.drain)  # after decode_pool's own: atexit runs the later first


class HostDecoder:
    """Reads, decodes, resizes and flips one batch (bench.input.host_batch), in the calling
    thread or, with `processes`, in that many decode worker processes
    (bench.input.decode_pool); thread-safe (tf.data runs batches in parallel)."""

    def __init__(
        self, source: Source, image_size: int, *, processes: int = 0, batch_size: int = 64
    ) -> None:
        if not available():
            raise RuntimeError("the host decoder needs OpenCV (opencv-python-headless)")
        if source.format == "tfrecord" and source.compression != "none":
            raise ValueError("the host decoder reads uncompressed shards only")
        self.size = image_size
        spec = batch_source(source, image_size)
        if processes:
            self._decode: Any = decode_pool.acquire(
                spec, processes=processes, batch_size=batch_size
            )
        else:
            self._decode = BatchReader(spec)

    def __call__(
        self, source_ids: np.ndarray, records: np.ndarray, flips: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _GATE.enter()
        try:
            return self._decode(source_ids, records, flips)
        finally:
            _GATE.leave()

    def tf_decoder(self) -> Any:
        """The batch decoder for bench.input.guard: (elements, flips) -> (images, labels,
        problems) tensors, through one numpy_function call per batch."""

        def decode(elements: Element, flips: tf.Tensor) -> tuple[tf.Tensor, ...]:
            images, labels, problems = tf.numpy_function(
                self,
                [elements["source_id"], elements["record"], flips],
                [tf.uint8, tf.float32, tf.int32],
                stateful=False,
            )
            return (
                tf.ensure_shape(images, [None, self.size, self.size, 1]),
                tf.ensure_shape(labels, [None, NUM_LABELS]),
                tf.ensure_shape(problems, [None]),
            )

        return decode
