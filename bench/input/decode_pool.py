"""Decode worker processes for the tuned pipeline's host decoder.

    pool = acquire(BatchSource(...), processes=2, batch_size=64)
    images, labels, problems = pool(source_ids, records, flips)   # any thread, in parallel

Each worker (`python -m bench.input.decode_worker`, no TensorFlow) decodes whole batches
into slots of a shared memory region; a call takes a free slot of any worker, sends the
batch's (source id, record, flip) triples and waits (the GIL released). The images are
then lent to TensorFlow from the slot itself, which comes back when the batch is gone
(`LEASED_SLOTS_PER_PROCESS` such slots per worker; past them, a copy); labels and problem
codes are copied out. The tuned pipeline keeps `SLOTS_PER_PROCESS` calls in flight per
worker. Workers start on the first call, not when a
pipeline is built; a worker that dies fails the calls that needed it, naming it and its
exit code (its traceback is on standard error), and the pool does not restart it.

Pools are shared within a process by (source, processes, batch size): a fit builds an
evaluation pipeline per epoch, and starting workers for each would cost more than the
epoch. At most MAX_LIVE_POOLS pools have workers at once: starting another ends the least
recently used idle ones (they restart if called again). Every pool is closed at exit, and
workers also end when this process does (their input closes).
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import bench
from bench.input import decode_worker
from bench.input.batch_arrays import RecycledArrays, aligned_empty
from bench.input.host_batch import BatchSource

__all__ = [
    "DecodePool",
    "WorkerFailed",
    "acquire",
    "child_environment",
    "close_all",
    "live_workers",
    "workers_cpu_s",
]

SLOTS_PER_PROCESS = 3  # calls in flight per worker
# Slots per worker beyond those, which a batch may keep while TensorFlow uses it: the
# images go to TensorFlow straight from shared memory (no copy out: that copy, from
# memory another core has just written, cost ~6 us per 224 px image of the training
# process's CPU). When all are taken (a consumer that keeps batches, as a cache does),
# batches are copied out instead.
LEASED_SLOTS_PER_PROCESS = 4
CLOSE_WAIT_S = 5.0


class WorkerFailed(RuntimeError):
    """A decode worker died, or failed a batch as a whole."""


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class _Worker:
    """One worker process, its shared memory and its replies, read by a thread."""

    def __init__(self, index: int, source: BatchSource, batch_size: int, slots: int) -> None:
        self.index = index
        self.batch_size = batch_size
        memory_fd, self.memory = _shared_memory(
            decode_worker.memory_bytes(batch_size, source.image_size, slots)
        )
        self.views = [
            decode_worker.slot_views(self.memory, slot, batch_size, source.image_size)
            for slot in range(slots)
        ]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.input.decode_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(memory_fd,),
                env=child_environment(),
            )
        finally:
            os.close(memory_fd)  # the child holds its own copy; the mapping stays valid
        setup = pickle.dumps(decode_worker.WorkerSetup(source, batch_size, slots, memory_fd))
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._failure: str | None = None
        self.cpu_s = 0.0  # the worker's own CPU as of its last reply
        self._send(decode_worker.LENGTH.pack(len(setup)) + setup)
        self._replies = threading.Thread(
            target=self._read_replies, name=f"chexbench-decode-{index}", daemon=True
        )
        self._replies.start()

    def decode(self, slot: int, source_ids: np.ndarray, records: np.ndarray, flips: np.ndarray):
        """Decode into `slot`; returns once the worker has (raises WorkerFailed)."""
        count = len(source_ids)
        if count > self.batch_size:
            raise ValueError(f"a batch of {count} is larger than the pool's {self.batch_size}")
        pending = _Pending()
        body = b"".join(
            (
                decode_worker.REQUEST.pack(slot, count),
                np.ascontiguousarray(source_ids, np.int64).tobytes(),
                np.ascontiguousarray(records, np.int64).tobytes(),
                np.ascontiguousarray(flips, np.uint8).tobytes(),
            )
        )
        with self._write_lock:
            if self._failure is not None:
                raise WorkerFailed(self._failure)
            self._pending[slot] = pending
            try:
                self._send(body)
            except OSError:
                self._pending.pop(slot, None)
                raise WorkerFailed(self._describe_exit()) from None
        pending.done.wait()
        if pending.error is not None:
            raise WorkerFailed(pending.error)

    def close(self) -> None:
        try:
            with self._write_lock:
                self._send(decode_worker.REQUEST.pack(0, -1))
                self.process.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._replies.join(CLOSE_WAIT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def _read_replies(self) -> None:
        assert self.process.stdout is not None
        replies = self.process.stdout.fileno()
        while True:
            header = decode_worker.read_exactly(replies, decode_worker.REPLY.size)
            if header is None:
                break
            slot, status, length, cpu_ns = decode_worker.REPLY.unpack(header)
            self.cpu_s = cpu_ns / 1e9
            message = decode_worker.read_exactly(replies, length) if length else b""
            with self._write_lock:
                pending = self._pending.pop(slot, None)
            if pending is None:
                continue
            if status != 0:
                pending.error = (
                    f"decode worker {self.index} (pid {self.process.pid}) failed a batch: "
                    + (message or b"").decode(errors="replace").strip()
                )
            pending.done.set()
        with self._write_lock:
            self._failure = self._describe_exit()
            waiting, self._pending = list(self._pending.values()), {}
        for pending in waiting:
            pending.error = self._failure
            pending.done.set()

    def _describe_exit(self) -> str:
        try:
            code = self.process.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            code = None
        return (
            f"decode worker {self.index} (pid {self.process.pid}) exited"
            + (f" with code {code}" if code is not None else "")
            + "; its own error, if any, is on standard error"
        )


class DecodePool:
    """Worker processes decoding batches of one source; callable from many threads.
    `stop_if_idle` ends the workers when no call is in flight; the next call starts
    them again."""

    def __init__(self, source: BatchSource, *, processes: int, batch_size: int) -> None:
        if processes < 1:
            raise ValueError(f"a decode pool needs at least one process, got {processes}")
        self.source = source
        self.processes = processes
        self.batch_size = batch_size
        self.last_used = 0.0
        self._workers: list[_Worker] = []
        self._free: queue.Queue[tuple[_Worker, int]] = queue.Queue()
        # Reentrant: a lease's finaliser may run wherever its last view is dropped.
        self._lock = threading.RLock()
        self._in_flight = 0
        self._leased = 0
        self._images = RecycledArrays((source.image_size, source.image_size, 1), np.uint8)

    def __call__(
        self, source_ids: np.ndarray, records: np.ndarray, flips: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        started = False
        with self._lock:
            if not self._workers:
                self._start()
                started = True
            self._in_flight += 1
            self.last_used = time.monotonic()
        if started:
            _limit_live_pools(self)
        try:
            worker, slot = self._free.get()
            leased = False
            try:
                worker.decode(slot, source_ids, records, flips)
                count = len(source_ids)
                images, labels, problems = worker.views[slot]
                # Labels and problem codes are copied out (small), into arrays
                # TensorFlow can take as they are (64-byte aligned).
                out_labels = aligned_empty((count, *labels.shape[1:]), labels.dtype)
                out_problems = aligned_empty((count,), problems.dtype)
                np.copyto(out_labels, labels[:count])
                np.copyto(out_problems, problems[:count])
                out_images = self._lease(worker, slot, images[:count])
                leased = out_images is not None
                if out_images is None:
                    out_images = self._images.take(count)
                    np.copyto(out_images, images[:count])
                return out_images, out_labels, out_problems
            finally:
                if not leased:
                    self._free.put((worker, slot))
        finally:
            with self._lock:
                self._in_flight -= 1

    def _lease(self, worker: _Worker, slot: int, images: np.ndarray) -> np.ndarray | None:
        """`images` of `slot` as an array that hands the slot back once it and every view
        of it are gone; None when this pool's leasable slots are all out."""
        with self._lock:
            if self._leased >= self.processes * LEASED_SLOTS_PER_PROCESS:
                return None
            self._leased += 1
        # Over a buffer object of its own, which every view (numpy's, or TensorFlow's
        # tensor) keeps alive: it dies with the last of them.
        handed = np.frombuffer(memoryview(images.reshape(-1)), images.dtype)
        weakref.finalize(handed.base, self._hand_back, worker, slot)
        return handed.reshape(images.shape)

    def _hand_back(self, worker: _Worker, slot: int) -> None:
        with self._lock:
            self._leased -= 1
            if worker in self._workers:  # else ended since: its slots are gone with it
                self._free.put((worker, slot))

    @property
    def leased(self) -> int:
        """Slots whose images a live batch still uses."""
        with self._lock:
            return self._leased

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def cpu_s(self) -> dict[int, float]:
        """Each live worker's CPU seconds, as of its last reply."""
        return {worker.process.pid: worker.cpu_s for worker in list(self._workers)}

    def stop_if_idle(self) -> bool:
        """End the workers unless a call is in flight; whether they were ended."""
        with self._lock:
            if self._in_flight:
                return False
            workers, self._workers = self._workers, []
            self._free = queue.Queue()
        for worker in workers:
            worker.close()
        return True

    def close(self) -> None:
        """End the workers (waiting for none: at exit, or once nothing calls)."""
        with self._lock:
            workers, self._workers = self._workers, []
            self._free = queue.Queue()
        for worker in workers:
            worker.close()

    def _start(self) -> None:
        slots = SLOTS_PER_PROCESS + LEASED_SLOTS_PER_PROCESS
        workers = [
            _Worker(index, self.source, self.batch_size, slots) for index in range(self.processes)
        ]
        for slot in range(slots):  # interleaved: load spreads over workers
            for worker in workers:
                self._free.put((worker, slot))
        self._workers = workers


def child_environment() -> dict[str, str]:
    """This process's environment for a `python -m bench...` child: the child imports bench
    from where this process did, whatever its working folder."""
    environment = dict(os.environ)
    root = str(Path(bench.__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (root, environment.get("PYTHONPATH", "")) if part
    )
    return environment


def _shared_memory(size: int):
    """(file descriptor, mapping) of `size` bytes of anonymous shared memory."""
    import mmap

    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("chexbench-decode", 0)
    else:  # pragma: no cover - not Linux: an unlinked temporary file
        descriptor, path = tempfile.mkstemp(prefix="chexbench-decode-")
        os.unlink(path)
    os.ftruncate(descriptor, size)
    return descriptor, mmap.mmap(descriptor, size)


# -- pools shared within the process --------------------------------------------------
PoolKey = tuple[BatchSource, int, int]
_POOLS: dict[PoolKey, DecodePool] = {}
_LOCK = threading.Lock()
# Pools with live workers at once; the least recently used idle ones beyond it are ended
# (a pipeline that calls one again restarts it). tf.data keeps a pipeline's Python
# function alive as long as its function library, so pools cannot follow pipelines' lives.
MAX_LIVE_POOLS = 2


def acquire(source: BatchSource, *, processes: int, batch_size: int) -> DecodePool:
    """The process's pool for these arguments, made if need be (workers start on use)."""
    key = (source, processes, batch_size)
    with _LOCK:
        if key not in _POOLS:
            _POOLS[key] = DecodePool(source, processes=processes, batch_size=batch_size)
        return _POOLS[key]


def _limit_live_pools(current: DecodePool) -> None:
    with _LOCK:
        live = [pool for pool in _POOLS.values() if pool.pids and pool is not current]
    live.sort(key=lambda pool: pool.last_used, reverse=True)
    for pool in live[MAX_LIVE_POOLS - 1 :]:
        pool.stop_if_idle()


def workers_cpu_s() -> dict[int, float]:
    """CPU seconds of each live decode worker of this process, as each last reported it
    (with every batch: exact, where tick-counted process times are 10 ms coarse)."""
    with _LOCK:
        pools = list(_POOLS.values())
    return {pid: spent for pool in pools for pid, spent in pool.cpu_s().items()}


def live_workers() -> list[int]:
    """The pids of this process's decode workers (started pools only)."""
    with _LOCK:
        return [pid for pool in _POOLS.values() for pid in pool.pids]


@atexit.register
def close_all() -> None:
    """End every pool's workers (at exit; calls waiting on them fail with WorkerFailed)."""
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()
