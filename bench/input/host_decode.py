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

    host_elements(source, plan)  {source_id, record} per example: sharded, shuffled whole
                                 (a true shuffle per epoch: records are read by index), repeated
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

from typing import Any

import numpy as np
import tensorflow as tf

from bench.input import decode_pool, host_batch
from bench.input.host_batch import BatchReader, BatchSource
from bench.input.sources import Element, ReadPlan, Source, uses_file_sharding
from converters.labels import NUM_LABELS

__all__ = ["HostDecoder", "available", "batch_source", "host_elements", "implementation"]


def available() -> bool:
    """Whether the host decoder can run here (OpenCV installed)."""
    return host_batch.available()


def implementation(processes: int = 0) -> str:
    """The libraries the host decoder uses, with versions, and where it runs."""
    where = f"in {processes} decode processes" if processes else "in the pipeline's threads"
    return f"host per batch {where}: {host_batch.implementation()}"


def host_elements(source: Source, plan: ReadPlan) -> tf.data.Dataset:
    """{source_id, record} for this worker's examples (whole shards or every n-th element,
    as bench.input.sources shards them): evaluation in a stable order, training shuffled
    whole each epoch and repeated (records are read by index: no shard order or shuffle
    buffer limits the mixing). Never served by a tf.data service (see above)."""
    if source.format == "raw":
        source_ids = np.arange(len(source.files), dtype=np.int64)
        records = np.full(len(source.files), -1, np.int64)
    else:
        source_ids = np.repeat(np.arange(len(source.files)), source.record_counts).astype(np.int64)
        records = np.concatenate([np.arange(count) for count in source.record_counts])
    records = records.astype(np.int64)
    if source.format == "tfrecord" and uses_file_sharding(source, plan):
        # Whole shards per worker, as TensorFlow's road reads them (a node may hold its own).
        mine = source_ids % plan.num_workers == plan.worker_index
    else:
        mine = np.arange(len(source_ids)) % plan.num_workers == plan.worker_index
    source_ids, records = source_ids[mine], records[mine]
    elements = tf.data.Dataset.from_tensor_slices({"source_id": source_ids, "record": records})
    if plan.training:
        elements = elements.shuffle(
            max(len(source_ids), 1), seed=plan.shuffle_seed, reshuffle_each_iteration=True
        )
    return elements.repeat() if plan.repeat else elements


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
        return self._decode(source_ids, records, flips)

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
