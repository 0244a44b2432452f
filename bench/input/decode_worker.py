"""`python -m bench.input.decode_worker`: one decode worker process of a
bench.input.decode_pool.DecodePool. It never imports TensorFlow (about 0.2 s to start).

Why processes: the host decoder's per-record Python (read, CRC, protobuf parse, copies)
holds the GIL, so threads of one process decode small records barely faster than one
thread (bench.measure.bound and docs/pipelines.md have the figures); processes do not
share a GIL.

Protocol, over the worker's standard input and output (binary, little-endian):

    start:    u32 length, then a pickled WorkerSetup
    request:  i32 slot, i32 count, then count source ids (i64), records (i64), flips (u8);
              a negative count asks the worker to exit
    reply:    i32 slot, i32 status (0: the slot holds the batch), u32 length, u64 the
              worker's CPU so far (ns, time.process_time_ns: no 10 ms ticks), then
              `length` bytes of UTF-8 (why the batch failed; bad examples are not failures)

The batch goes into slot `slot` of the shared memory the parent passed (file descriptor
WorkerSetup.memory_fd): images uint8 [B, S, S, 1], labels float32 [B, 14], problem codes
int32 [B], each at the offsets `slot_layout` gives. End of input (the parent gone) ends
the worker.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import sys
import time
import traceback
from dataclasses import dataclass

import numpy as np

from bench.input.host_batch import BatchReader, BatchSource
from converters.labels import NUM_LABELS

REQUEST = struct.Struct("<ii")
REPLY = struct.Struct("<iiIQ")
LENGTH = struct.Struct("<I")
ALIGN = 64


@dataclass(frozen=True)
class WorkerSetup:
    source: BatchSource
    batch_size: int
    slots: int
    memory_fd: int


def slot_layout(batch_size: int, image_size: int) -> tuple[int, int, int, int]:
    """(images offset, labels offset, problems offset, slot bytes) within one slot."""
    images = batch_size * image_size * image_size
    labels_at = _aligned(images)
    problems_at = _aligned(labels_at + batch_size * NUM_LABELS * 4)
    return 0, labels_at, problems_at, _aligned(problems_at + batch_size * 4)


def slot_views(
    memory: mmap.mmap | memoryview, slot: int, batch_size: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot `slot`'s (images, labels, problems) arrays over the shared memory."""
    images_at, labels_at, problems_at, size = slot_layout(batch_size, image_size)
    base = slot * size
    images = np.frombuffer(
        memory, np.uint8, batch_size * image_size * image_size, base + images_at
    ).reshape(batch_size, image_size, image_size, 1)
    labels = np.frombuffer(memory, np.float32, batch_size * NUM_LABELS, base + labels_at)
    problems = np.frombuffer(memory, np.int32, batch_size, base + problems_at)
    return images, labels.reshape(batch_size, NUM_LABELS), problems


def memory_bytes(batch_size: int, image_size: int, slots: int) -> int:
    return slots * slot_layout(batch_size, image_size)[3]


def _aligned(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at end of input."""
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(requests: int, replies: int) -> int:
    header = read_exactly(requests, LENGTH.size)
    if header is None:
        return 0
    setup: WorkerSetup = pickle.loads(read_exactly(requests, LENGTH.unpack(header)[0]) or b"")
    size = setup.source.image_size
    memory = mmap.mmap(setup.memory_fd, memory_bytes(setup.batch_size, size, setup.slots))
    slots = [slot_views(memory, slot, setup.batch_size, size) for slot in range(setup.slots)]
    reader = BatchReader(setup.source)
    while True:
        request = read_exactly(requests, REQUEST.size)
        if request is None:
            return 0
        slot, count = REQUEST.unpack(request)
        if count < 0:
            return 0
        body = read_exactly(requests, count * 17)
        if body is None:
            return 0
        source_ids = np.frombuffer(body, np.int64, count, 0)
        records = np.frombuffer(body, np.int64, count, count * 8)
        flips = np.frombuffer(body, np.uint8, count, count * 16)
        status, message = 0, b""
        try:
            if not 0 <= slot < setup.slots or count > setup.batch_size:
                raise ValueError(f"slot {slot} or batch of {count} out of range")
            reader(source_ids, records, flips, out=slots[slot])
        except Exception:  # a failed batch is reported, the worker goes on
            status, message = 1, traceback.format_exc().encode()
        cpu_ns = time.process_time_ns()
        write_all(replies, REPLY.pack(slot, status, len(message), cpu_ns) + message)


def main() -> int:
    # The protocol owns the original standard output; stray prints go to stderr.
    replies = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        return serve(sys.stdin.fileno(), replies)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
